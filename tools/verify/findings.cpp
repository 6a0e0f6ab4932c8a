// ds-verify's findings and judging rules: the wording of every problem line and NDJSON object, and
// the rules for snapshots, run coverage and selection, kept apart from SQL so tests pin them.
#include "findings.hpp"

#include <algorithm>
#include <charconv>
#include <stdexcept>

#include "ds/clock.hpp"
#include "ds/json_writer.hpp"

namespace ds::verify {
namespace {

// Handles and DIDs come from the database: control bytes are shown escaped, so that a finding
// stays one line whatever a row holds.
std::string printable(std::string_view s) {
  std::string out;
  for (const unsigned char ch : sanitize_utf8(s)) {
    if (ch < 0x20 || ch == 0x7f) {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[ch >> 4];
      out += hex[ch & 15];
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out;
}

// "alice.test (did:plc:aaaa)", or the did alone when the account has no handle (not in users).
std::string name_of(const Account& a) {
  const std::string did = a.did.empty() ? std::string("no did") : printable(a.did);
  return a.handle ? printable(*a.handle) + " (" + did + ")" : did;
}

std::string line(Check c, std::string_view subject, std::string_view what) {
  std::string out = to_string(c);
  out += "  ";
  out += subject;
  out += "  ";
  out += what;
  return out;
}

// Starts {"type":"finding","check":...,"did":...,"handle":...}; the caller adds its fields and
// finish() closes it with the text line as "message".
JsonWriter& begin(JsonWriter& w, Check c, const Account* a) {
  w.begin_object().field("type", "finding").field("check", to_string(c));
  if (a) {
    w.key("did");
    if (a->did.empty()) w.null();
    else w.string(a->did);
    w.field("handle", a->handle);
  }
  return w;
}

void finish(JsonWriter& w, const std::string& text) { w.field("message", text).end_object(); }

void sums_object(JsonWriter& w, std::string_view key, const Sums& s) {
  w.key(key).begin_object();
  w.field("likes", s.likes).field("replies", s.replies).field("quotes", s.quotes).field("reposts", s.reposts);
  w.end_object();
}

}  // namespace

const char* to_string(Check c) {
  switch (c) {
    case Check::snapshot_sums: return "snapshot_sums";
    case Check::future_snapshot: return "future_snapshot";
    case Check::duplicate_snapshot: return "duplicate_snapshot";
    case Check::untracked_post: return "untracked_post";
    case Check::shared_handle: return "shared_handle";
    case Check::stale_run: return "stale_run";
    case Check::stale_account: return "stale_account";
  }
  return "?";
}

std::string format_day(Day d) { return format_date(static_cast<Micros>(d) * micros_per_day); }

Finding snapshot_sums_finding(const Account& a, Day date, const Sums& snapshot, const Sums& live) {
  std::string what = format_day(date) + ":";
  const struct {
    const char* name;
    std::int64_t s, l;
  } fields[] = {{"likes", snapshot.likes, live.likes},
                {"replies", snapshot.replies, live.replies},
                {"quotes", snapshot.quotes, live.quotes},
                {"reposts", snapshot.reposts, live.reposts}};
  bool first = true;
  for (const auto& f : fields) {
    if (f.s == f.l) continue;
    what += first ? " " : "; ";
    first = false;
    what += std::string(f.name) + " " + std::to_string(f.s) + " in the snapshot, " + std::to_string(f.l) +
            " over live posts";
  }
  Finding out{Check::snapshot_sums, line(Check::snapshot_sums, name_of(a), what), {}};
  JsonWriter w(out.json);
  begin(w, Check::snapshot_sums, &a).field("date", format_day(date));
  sums_object(w, "snapshot", snapshot);
  sums_object(w, "live", live);
  finish(w, out.text);
  return out;
}

Finding future_snapshot_finding(const Account& a, Day date, Day today) {
  Finding out{Check::future_snapshot,
              line(Check::future_snapshot, name_of(a),
                   "dated " + format_day(date) + ", after today " + format_day(today) + " (UTC)"),
              {}};
  JsonWriter w(out.json);
  begin(w, Check::future_snapshot, &a).field("date", format_day(date)).field("today", format_day(today));
  finish(w, out.text);
  return out;
}

Finding duplicate_snapshot_finding(const Account& a, Day date, std::int64_t rows) {
  Finding out{Check::duplicate_snapshot,
              line(Check::duplicate_snapshot, name_of(a),
                   format_day(date) + ": " + std::to_string(rows) + " snapshots of one day, want 1"),
              {}};
  JsonWriter w(out.json);
  begin(w, Check::duplicate_snapshot, &a).field("date", format_day(date)).field("rows", rows);
  finish(w, out.text);
  return out;
}

Finding untracked_post_finding(std::string_view uri, const std::optional<std::string>& did) {
  const Account a{did.value_or(""), std::nullopt};
  const std::string what = did ? "post " + std::string(uri) + ": its account is not in users"
                               : "post " + std::string(uri) + ": has no did (NULL), so no account";
  Finding out{Check::untracked_post, line(Check::untracked_post, name_of(a), what), {}};
  JsonWriter w(out.json);
  begin(w, Check::untracked_post, &a).field("uri", uri);
  finish(w, out.text);
  return out;
}

Finding shared_handle_finding(std::string_view handle, const std::vector<Account>& holders) {
  std::string what = "held by " + std::to_string(holders.size()) + " accounts, want 1:";
  for (std::size_t i = 0; i < holders.size(); ++i) what += (i ? ", " : " ") + name_of(holders[i]);
  Finding out{Check::shared_handle, line(Check::shared_handle, printable(handle), what), {}};
  JsonWriter w(out.json);
  begin(w, Check::shared_handle, nullptr).field("handle", handle);
  w.key("holders").raw("[");
  for (std::size_t i = 0; i < holders.size(); ++i) {
    std::string one;
    JsonWriter h(one);
    h.begin_object().field("did", holders[i].did).field("handle", holders[i].handle).end_object();
    out.json += (i ? "," : "") + one;
  }
  out.json += ']';
  finish(w, out.text);
  return out;
}

Finding stale_run_finding(std::int64_t id, const std::optional<std::string>& shard, std::string_view time_started,
                          std::int64_t lock_key) {
  std::string subject = "run " + std::to_string(id);
  if (shard) subject += " (shard " + *shard + ")";
  const std::string what = "started " + std::string(time_started) +
                           ": in_progress, but no session holds its run lock (advisory key " +
                           std::to_string(lock_key) + "); the run died without finishing";
  Finding out{Check::stale_run, line(Check::stale_run, subject, what), {}};
  JsonWriter w(out.json);
  begin(w, Check::stale_run, nullptr).field("run_id", id).field("shard", shard);
  w.field("time_started", time_started).field("status", "in_progress").field("lock_key", lock_key);
  finish(w, out.text);
  return out;
}

Finding stale_account_finding(const Account& a, const std::vector<Day>& selected_days,
                              std::optional<Day> last_snapshot) {
  std::string days;
  for (std::size_t i = 0; i < selected_days.size(); ++i) days += (i ? ", " : "") + format_day(selected_days[i]);
  const std::string what = "selected on the last " + std::to_string(selected_days.size()) + " run days (" + days +
                           ") without a snapshot; last snapshot " +
                           (last_snapshot ? format_day(*last_snapshot) : std::string("never"));
  Finding out{Check::stale_account, line(Check::stale_account, name_of(a), what), {}};
  JsonWriter w(out.json);
  begin(w, Check::stale_account, &a);
  w.key("selected_days").raw("[");
  for (std::size_t i = 0; i < selected_days.size(); ++i) {
    if (i) out.json += ',';
    JsonWriter(out.json).string(format_day(selected_days[i]));
  }
  out.json += ']';
  w.key("last_snapshot");
  if (last_snapshot) w.string(format_day(*last_snapshot));
  else w.null();
  finish(w, out.text);
  return out;
}

SnapshotVerdict judge_snapshot(const LatestSnapshot& s) {
  if (!s.written_by_pipeline) return SnapshotVerdict::not_ours;
  if (s.posts_changed_since) return SnapshotVerdict::changed_since;
  return s.snapshot == s.live ? SnapshotVerdict::ok : SnapshotVerdict::mismatch;
}

std::vector<Day> covering_days(const std::vector<RunDay>& runs, std::string_view did, int n) {
  std::vector<Day> days;
  for (const auto& r : runs)
    if (!r.shard || r.shard->contains(did)) days.push_back(r.day);
  std::sort(days.begin(), days.end(), std::greater<>());
  days.erase(std::unique(days.begin(), days.end()), days.end());
  if (days.size() > static_cast<std::size_t>(std::max(n, 0))) days.resize(static_cast<std::size_t>(std::max(n, 0)));
  return days;
}

// An account's covering days are the union of the unsharded runs' days and those of the shards
// that hold it. The n-th most recent day of a union is at least the n-th most recent day (or, with
// fewer than n, the earliest day) of the group its own day belongs to; the minimum over groups
// therefore bounds every account.
std::optional<Day> earliest_covering_day(const std::vector<RunDay>& runs, int n) {
  std::vector<std::pair<std::string, Day>> keyed;
  for (const auto& r : runs) keyed.emplace_back(r.shard ? r.shard->label() : std::string(), r.day);
  std::sort(keyed.begin(), keyed.end(), [](const auto& x, const auto& y) {
    return x.first != y.first ? x.first < y.first : x.second > y.second;
  });
  keyed.erase(std::unique(keyed.begin(), keyed.end()), keyed.end());
  std::optional<Day> bound;
  for (std::size_t i = 0; i < keyed.size();) {
    std::size_t j = i;
    while (j < keyed.size() && keyed[j].first == keyed[i].first) ++j;
    const std::size_t take = std::min(j - i, static_cast<std::size_t>(std::max(n, 1)));
    const Day group_bound = keyed[i + take - 1].second;
    bound = bound ? std::min(*bound, group_bound) : group_bound;
    i = j;
  }
  return bound;
}

bool selected_without_snapshot(const std::vector<Day>& days, const std::vector<Day>& views,
                               const std::vector<Day>& snapshots, int active_days) {
  if (days.empty()) return false;
  for (const Day d : days) {
    if (std::find(snapshots.begin(), snapshots.end(), d) != snapshots.end()) return false;
    // ds-select-users takes views dated on or after the run day minus ACTIVE_DAYS; views dated
    // after the run day did not exist then, so they do not count here.
    const bool active = std::any_of(views.begin(), views.end(),
                                    [&](Day v) { return v >= d - active_days && v <= d; });
    if (!active) return false;
  }
  return true;
}

std::vector<Day> parse_day_array(std::string_view text) {
  if (text.size() < 2 || text.front() != '{' || text.back() != '}')
    throw std::runtime_error("not an integer array: " + std::string(text));
  std::vector<Day> out;
  std::string_view body = text.substr(1, text.size() - 2);
  while (!body.empty()) {
    const auto comma = body.find(',');
    const std::string_view item = body.substr(0, comma);
    Day v = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (ec != std::errc() || end != item.data() + item.size())
      throw std::runtime_error("not an integer array: " + std::string(text));
    out.push_back(v);
    if (comma == std::string_view::npos) break;
    body.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace ds::verify
