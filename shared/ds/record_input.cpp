// Decoding the contract's records with simdjson On Demand, in place over the reader's buffer, and the
// per-stage input loop: forward what the stage does not consume, report and count bad lines.
#include "ds/record_input.hpp"

#include <algorithm>
#include <climits>

#include <spdlog/spdlog.h>

#include "ds/json_writer.hpp"
#include "ds/log.hpp"
#include "ds/shard.hpp"

namespace ds {
namespace {

using simdjson::ondemand::object;
using simdjson::ondemand::value;

// A decoding failure with the field it concerns; caught in RecordDecoder::decode.
struct FieldError {
  std::string what;
};

[[noreturn]] void fail(std::string what) { throw FieldError{std::move(what)}; }

// Invalid UTF-8 is named as such: "malformed JSON" would send the reader looking for a syntax error.
std::string json_problem(simdjson::error_code err) {
  if (err == simdjson::UTF8_ERROR) return "invalid UTF-8";
  return std::string("malformed JSON (") + simdjson::error_message(err) + ")";
}

std::string_view get_string(value v, std::string_view field) {
  std::string_view s;
  if (v.get_string().get(s)) fail("field \"" + std::string(field) + "\" must be a string");
  return s;
}

// Identifiers (did, uri, handle) must be non-empty and free of control characters.
std::string get_identifier(value v, std::string_view field) {
  const std::string_view s = get_string(v, field);
  if (s.empty()) fail("field \"" + std::string(field) + "\" is empty");
  for (const char c : s)
    if (static_cast<unsigned char>(c) < 0x20)
      fail("field \"" + std::string(field) + "\" holds a control character");
  return std::string(s);
}

// JSON null (an optional field written as null); a read error counts as not null, for the getter
// that follows to report.
bool is_json_null(value& v) {
  bool null = false;
  return !v.is_null().get(null) && null;
}

std::optional<std::string> get_optional_text(value v, std::string_view field) {
  if (is_json_null(v)) return std::nullopt;
  return sanitize_utf8(get_string(v, field));
}

std::int64_t get_count(value v, std::string_view field) {
  std::int64_t n;
  if (v.get_int64().get(n)) fail("field \"" + std::string(field) + "\" must be an integer in range");
  if (n < 0) fail("field \"" + std::string(field) + "\" must not be negative");
  return n;
}

Micros get_time(value v, std::string_view field) {
  const std::string_view s = get_string(v, field);
  const auto t = parse_timestamp(s);
  if (!t) fail("field \"" + std::string(field) + "\" is not an RFC 3339 timestamp");
  return *t;
}

// The engagement counts that totals, posts and snapshots all carry; false when `k` is none of them.
template <class Counted>
bool get_engagement(std::string_view k, value v, Counted& r) {
  if (k == "likes") r.likes = get_count(v, k);
  else if (k == "replies") r.replies = get_count(v, k);
  else if (k == "quotes") r.quotes = get_count(v, k);
  else if (k == "reposts") r.reposts = get_count(v, k);
  else return false;
  return true;
}

Totals get_totals(value v, std::string_view field) {
  object o;
  if (v.get_object().get(o)) fail("field \"" + std::string(field) + "\" must be an object");
  Totals t;
  for (auto f : o) {
    const std::string_view k = f.unescaped_key();
    if (k == "posts") t.posts = get_count(f.value(), "posts");
    else get_engagement(k, f.value(), t);
  }
  return t;
}

// A UTC date, YYYY-MM-DD.
std::string get_date(value v, std::string_view field) {
  std::string d = get_identifier(v, field);
  if (!parse_date(d))
    fail("field \"" + std::string(field) + "\" must be a YYYY-MM-DD date");
  return d;
}

// `lastSnapshot`: {date, posts}; null or absent is none.
std::optional<LastSnapshot> get_last_snapshot(value v) {
  if (is_json_null(v)) return std::nullopt;
  object o;
  if (v.get_object().get(o)) fail("field \"lastSnapshot\" must be an object");
  LastSnapshot last;
  bool have_date = false;
  for (auto f : o) {
    const std::string_view k = f.unescaped_key();
    if (k == "date") {
      last.date = get_date(f.value(), "lastSnapshot.date");
      have_date = true;
    } else if (k == "posts") last.posts = get_count(f.value(), "lastSnapshot.posts");
  }
  if (!have_date) fail("field \"lastSnapshot.date\" must be a YYYY-MM-DD date");
  return last;
}

// `windowUris`: an array of post URIs; null or absent is none (not the same as empty).
std::optional<std::vector<std::string>> get_uri_list(value v, std::string_view field) {
  if (is_json_null(v)) return std::nullopt;
  const std::string what = "field \"" + std::string(field) + "\" must be an array of post URIs";
  simdjson::ondemand::array a;
  if (v.get_array().get(a)) fail(what);
  std::vector<std::string> uris;
  for (auto item : a) {
    value iv;
    if (item.get(iv)) fail(what);
    uris.push_back(get_identifier(iv, std::string(field) + "[]"));
  }
  return uris;
}

ProfileStatus parse_profile_status(std::string_view s) {
  if (s == "ok") return ProfileStatus::ok;
  if (s == "gone") return ProfileStatus::gone;
  if (s == "failed") return ProfileStatus::failed;
  fail("unknown profileStatus \"" + std::string(s) + "\"");
}

FeedStatus parse_feed_status(std::string_view s) {
  if (s == "complete") return FeedStatus::complete;
  if (s == "capped") return FeedStatus::capped;
  if (s == "gone") return FeedStatus::gone;
  if (s == "failed") return FeedStatus::failed;
  if (s == "skipped") return FeedStatus::skipped;
  if (s == "partial") return FeedStatus::partial;
  fail("unknown feed status \"" + std::string(s) + "\"");
}

void decode_selection(object o, SelectionRecord& r) {
  r = SelectionRecord{};
  bool have_shard = false;
  for (auto f : o) {
    const std::string_view k = f.unescaped_key();
    if (k != "shard") continue;
    have_shard = true;
    value v = f.value();
    if (is_json_null(v)) continue;
    // ds-load locks by it: a shard it cannot parse must not pass for another one.
    const std::string_view s = get_string(v, k);
    if (!parse_shard(s)) fail("field \"shard\" is not K/N (0 <= K < N)");
    r.shard = std::string(s);
  }
  if (!have_shard) fail("missing field \"shard\" (null when unsharded)");
}

void decode_user(object o, UserRecord& r) {
  r = UserRecord{};
  bool have_as_of = false, have_since = false, have_profile_status = false, have_feed_status = false;
  for (auto f : o) {
    const std::string_view k = f.unescaped_key();
    value v = f.value();
    if (k == "did") r.did = get_identifier(v, k);
    else if (k == "handle") r.handle = get_identifier(v, k);
    else if (k == "displayName") r.display_name = get_optional_text(v, k);
    else if (k == "avatar") r.avatar = get_optional_text(v, k);
    else if (k == "asOf") { r.as_of = get_time(v, k); have_as_of = true; }
    else if (k == "since") {
      have_since = true;
      if (is_json_null(v)) r.since.reset();
      else r.since = get_time(v, k);
    } else if (k == "baseline") r.baseline = get_totals(v, k);
    else if (k == "lastSnapshot") r.last_snapshot = get_last_snapshot(v);
    else if (k == "windowUris") r.window_uris = get_uri_list(v, k);
    else if (k == "profileStatus") {
      r.profile_status = parse_profile_status(get_string(v, k));
      have_profile_status = true;
    }
    else if (k == "profileError") r.profile_error = get_optional_text(v, k);
    else if (k == "backfillCursor") r.backfill_cursor = get_optional_text(v, k);
    else if (k == "backfillPosts") r.backfill_posts = get_count(v, k);
    else if (k == "refreshClock") {
      if (is_json_null(v)) r.refresh_clock.reset();
      else r.refresh_clock = get_date(v, k);
    }
    else if (k == "profile") {
      if (is_json_null(v)) continue;
      object p;
      if (v.get_object().get(p)) fail("field \"profile\" must be an object");
      Profile prof;
      for (auto pf : p) {
        const std::string_view pk = pf.unescaped_key();
        value pv = pf.value();
        if (pk == "handle") prof.handle = get_identifier(pv, "profile.handle");
        else if (pk == "displayName") prof.display_name = get_optional_text(pv, "profile.displayName");
        else if (pk == "avatar") prof.avatar = get_optional_text(pv, "profile.avatar");
        else if (pk == "followers") prof.followers = get_count(pv, "profile.followers");
        else if (pk == "following") prof.following = get_count(pv, "profile.following");
        else if (pk == "posts") prof.posts = get_count(pv, "profile.posts");
        else if (pk == "postsKnown") {
          if (pv.get_bool().get(prof.posts_known)) fail("field \"profile.postsKnown\" must be true or false");
        }
      }
      if (prof.handle.empty()) fail("field \"profile.handle\" is missing");
      r.profile = std::move(prof);
    } else if (k == "feed") {
      object fo;
      if (v.get_object().get(fo)) fail("field \"feed\" must be an object");
      for (auto ff : fo) {
        const std::string_view fk = ff.unescaped_key();
        value fv = ff.value();
        if (fk == "status") {
          r.feed.status = parse_feed_status(get_string(fv, "feed.status"));
          have_feed_status = true;
        }
        else if (fk == "path") r.feed.path = get_identifier(fv, "feed.path");
        else if (fk == "reason") r.feed.reason = get_identifier(fv, "feed.reason");
        else if (fk == "pages") r.feed.pages = get_count(fv, "feed.pages");
        else if (fk == "posts") r.feed.posts = get_count(fv, "feed.posts");
        else if (fk == "requests") r.feed.requests = get_count(fv, "feed.requests");
        else if (fk == "error") r.feed.error = get_optional_text(fv, "feed.error");
        else if (fk == "cursor") r.feed.cursor = get_optional_text(fv, "feed.cursor");
      }
      // Without a status the rest of the outcome means nothing (and would not be re-emitted).
      if (!have_feed_status) fail("field \"feed.status\" is missing");
    }
  }
  if (r.did.empty()) fail("missing field \"did\"");
  if (r.handle.empty()) fail("missing field \"handle\"");
  if (!have_profile_status && (r.profile || r.profile_error))
    fail("\"profile\" or \"profileError\" without \"profileStatus\"");
  if (!have_as_of) fail("missing field \"asOf\"");
  if (!have_since) fail("missing field \"since\" (null for a backfill)");
  if (r.backfill_cursor && !r.since) fail("\"backfillCursor\" needs a \"since\" (a backfill in progress)");
  if (r.profile_status == ProfileStatus::ok && !r.profile) fail("profileStatus is ok but \"profile\" is missing");
}

void decode_post(object o, PostRecord& r) {
  r = PostRecord{};
  bool have_created = false, have_sort = false;
  for (auto f : o) {
    const std::string_view k = f.unescaped_key();
    value v = f.value();
    if (k == "uri") r.uri = get_identifier(v, k);
    else if (k == "did") r.did = get_identifier(v, k);
    else if (k == "createdAt") { r.created_at = get_time(v, k); have_created = true; }
    else if (k == "sortAt") { r.sort_at = get_time(v, k); have_sort = true; }
    else get_engagement(k, v, r);
  }
  if (r.uri.empty()) fail("missing field \"uri\"");
  if (r.did.empty()) fail("missing field \"did\"");
  if (!have_created) fail("missing field \"createdAt\"");
  if (!have_sort) r.sort_at = r.created_at;
}

void decode_snapshot(object o, SnapshotRecord& r) {
  r = SnapshotRecord{};
  for (auto f : o) {
    const std::string_view k = f.unescaped_key();
    value v = f.value();
    if (k == "did") r.did = get_identifier(v, k);
    else if (k == "date") {
      r.date = std::string(get_string(v, k));
      if (!parse_date(r.date)) fail("field \"date\" is not YYYY-MM-DD");
    } else if (k == "followers") r.followers = get_count(v, k);
    else if (k == "following") r.following = get_count(v, k);
    else if (k == "posts") r.posts = get_count(v, k);
    else get_engagement(k, v, r);
  }
  if (r.did.empty()) fail("missing field \"did\"");
  if (r.date.empty()) fail("missing field \"date\"");
}

void decode_end(object o, EndRecord& r) {
  r = EndRecord{};
  r.contract = 0;
  for (auto f : o) {
    const std::string_view k = f.unescaped_key();
    value v = f.value();
    if (k == "stage") r.stage = get_identifier(v, k);
    else if (k == "contract") {
      std::int64_t c;
      if (v.get_int64().get(c)) fail("field \"contract\" must be an integer");
      r.contract = static_cast<int>(std::clamp<std::int64_t>(c, INT_MIN, INT_MAX));
    } else if (k == "elapsed_s") {
      double d;
      if (v.get_double().get(d)) fail("field \"elapsed_s\" must be a number");
      r.elapsed_s = d;
    } else if (k == "counters") {
      object c;
      if (v.get_object().get(c)) fail("field \"counters\" must be an object");
      for (auto cf : c) {
        const std::string_view ck = cf.unescaped_key();
        std::int64_t n;
        if (cf.value().get_int64().get(n)) fail("counter \"" + std::string(ck) + "\" must be an integer");
        r.counters.emplace_back(std::string(ck), n);
      }
    }
  }
  if (r.stage.empty()) fail("missing field \"stage\"");
  if (r.contract < oldest_record_contract_version || r.contract > record_contract_version)
    fail("end record of contract " + std::to_string(r.contract) + ", this program reads contracts " +
         std::to_string(oldest_record_contract_version) + " to " + std::to_string(record_contract_version));
}

}  // namespace

std::string RecordDecoder::decode(std::string_view line, std::size_t capacity, unsigned mask,
                                  InputRecord& out, EndRecord* end) {
  try {
    simdjson::ondemand::document doc;
    if (auto err = parser_.iterate(simdjson::padded_string_view(line.data(), line.size(), capacity)).get(doc))
      return json_problem(err);
    object o;
    if (auto err = doc.get_object().get(o)) {
      return err == simdjson::INCORRECT_TYPE ? "not a JSON object" : json_problem(err);
    }
    std::string_view type;
    auto tf = o.find_field_unordered("type");
    if (tf.error() == simdjson::NO_SUCH_FIELD) return "record has no \"type\"";
    if (tf.get_string().get(type)) return "field \"type\" must be a string";
    if (type == "selection") out.type = RecordType::selection;
    else if (type == "user") out.type = RecordType::user;
    else if (type == "post") out.type = RecordType::post;
    else if (type == "snapshot") out.type = RecordType::snapshot;
    else if (type == "end") out.type = RecordType::end;
    else out.type = RecordType::other;

    const bool wanted = (out.type == RecordType::selection && (mask & want_selection)) ||
                        (out.type == RecordType::user && (mask & want_user)) ||
                        (out.type == RecordType::post && (mask & want_post)) ||
                        (out.type == RecordType::snapshot && (mask & want_snapshot)) ||
                        (out.type == RecordType::end && end);
    if (wanted) {
      o.reset();
      switch (out.type) {
        case RecordType::selection: decode_selection(o, out.selection); break;
        case RecordType::user: decode_user(o, out.user); break;
        case RecordType::post: decode_post(o, out.post); break;
        case RecordType::snapshot: decode_snapshot(o, out.snapshot); break;
        case RecordType::end: decode_end(o, *end); break;
        case RecordType::other: break;
      }
      // The fields were read one by one; anything after the object would otherwise go unseen.
      if (doc.current_location().error() != simdjson::OUT_OF_BOUNDS) return "malformed JSON (text after the object)";
      // An end record is re-emitted byte for byte by every later stage, and On Demand skips the
      // fields it does not read without validating them: validate the whole line (one per stage).
      if (out.type == RecordType::end)
        if (auto err = validator_.parse(line.data(), line.size(), false).error()) return json_problem(err);
    } else {
      // Lines we only forward go downstream byte for byte, so they must be whole JSON: On Demand
      // has only looked as far as "type", the DOM parser validates the rest (such lines are rare:
      // the types a stage does not consume, and nothing in a stage's hot path).
      if (auto err = validator_.parse(line.data(), line.size(), false).error()) return json_problem(err);
    }
  } catch (const FieldError& e) {
    return e.what;
  } catch (const simdjson::simdjson_error& e) {
    return json_problem(e.error());
  }
  return {};
}

RecordInput::RecordInput(std::string stage, LineReader& reader, OutputWriter& out, unsigned mask,
                         bool strict)
    : stage_(std::move(stage)), reader_(reader), out_(out), mask_(mask), strict_(strict) {
  reader_.set_before_read(&OutputWriter::flush_hook, &out_);
}

void RecordInput::bad_line(const Line& line, const std::string& what) {
  ++bad_lines_;
  const std::string msg = reader_.name() + ":" + std::to_string(line.number) + ": " + what + ": " +
                          excerpt(line.text);
  if (strict_) throw BadInputError(msg);
  spdlog::error("{} (line skipped)", msg);
}

bool RecordInput::next(InputRecord& rec) {
  Line line;
  EndRecord end;
  while (reader_.next(line)) {
    ++lines_;
    if (line.too_long) {
      bad_line(line, "line longer than 1 MiB");
      continue;
    }
    if (line.text.empty() && !line.unterminated) {
      continue;  // blank lines carry nothing; tolerate them
    }
    if (line.text.find('\0') != std::string_view::npos) {
      bad_line(line, "NUL byte in line");
      continue;
    }
    rec.line_number = line.number;
    rec.raw = line.text;
    std::string err = decoder_.decode(line.text, line.text.size() + 64, mask_, rec, &end);
    if (!err.empty()) {
      // One line per bad line: the missing newline is part of the same story.
      if (line.unterminated) err += " (last line, no newline: truncated stream?)";
      bad_line(line, err);
      continue;
    }
    if (line.unterminated)
      spdlog::warn("{}:{}: last line has no newline (truncated stream?); it parsed and was kept",
                   reader_.name(), line.number);
    switch (rec.type) {
      case RecordType::selection:
        if (mask_ & want_selection) return true;
        break;
      case RecordType::end:
        upstream_end_lines_.emplace_back(line.text);
        upstream_ends_.push_back(std::move(end));
        continue;
      case RecordType::user:
        if (mask_ & want_user) return true;
        break;
      case RecordType::post:
        if (mask_ & want_post) return true;
        break;
      case RecordType::snapshot:
        if (mask_ & want_snapshot) return true;
        break;
      case RecordType::other:
        break;
    }
    out_.write_line(line.text);
  }
  return false;
}

void RecordInput::write_upstream_ends() {
  for (const auto& l : upstream_end_lines_) out_.write_line(l);
}

}  // namespace ds
