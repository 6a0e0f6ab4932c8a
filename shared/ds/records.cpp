// Encoding of the contract's records (docs/records.md): one line per record, fields in a fixed
// order with "type" first, so saved files diff cleanly and decoders find the type at once.
#include "ds/records.hpp"

#include "ds/json_writer.hpp"

namespace ds {

const char* to_string(ProfileStatus s) {
  switch (s) {
    case ProfileStatus::ok: return "ok";
    case ProfileStatus::gone: return "gone";
    case ProfileStatus::failed: return "failed";
    case ProfileStatus::not_fetched: break;
  }
  return "not_fetched";
}

const char* to_string(FeedStatus s) {
  switch (s) {
    case FeedStatus::complete: return "complete";
    case FeedStatus::capped: return "capped";
    case FeedStatus::gone: return "gone";
    case FeedStatus::failed: return "failed";
    case FeedStatus::skipped: return "skipped";
    case FeedStatus::partial: return "partial";
    case FeedStatus::not_fetched: break;
  }
  return "not_fetched";
}

bool restarts_refresh_clock(std::string_view reason) {
  // The names of ds::feeds::PathReason (stages/fetch-feeds/path_choice.hpp) that say the feed was
  // taken for something this account did, on a day of its own.
  for (const std::string_view own : {"posts_count_changed", "post_missing", "drop_unexplained", "full_refresh",
                                     "many_window_posts"})
    if (reason == own) return true;
  return false;
}

std::int64_t EndRecord::counter(std::string_view name) const {
  for (const auto& [k, v] : counters)
    if (k == name) return v;
  return 0;
}

void EndRecord::set(std::string_view name, std::int64_t value) {
  for (auto& [k, v] : counters)
    if (k == name) {
      v = value;
      return;
    }
  counters.emplace_back(std::string(name), value);
}

void EndRecord::add(std::string_view name, std::int64_t delta) { set(name, counter(name) + delta); }

namespace {
// The four engagement counts in the contract's order: totals, posts and snapshots all end with them.
JsonWriter& engagement(JsonWriter& w, std::int64_t likes, std::int64_t replies, std::int64_t quotes,
                       std::int64_t reposts) {
  return w.field("likes", likes).field("replies", replies).field("quotes", quotes).field("reposts", reposts);
}

void write_totals(JsonWriter& w, const Totals& t) {
  engagement(w.begin_object().field("posts", t.posts), t.likes, t.replies, t.quotes, t.reposts).end_object();
}
}  // namespace

void encode(std::string& out, const SelectionRecord& r) {
  JsonWriter w(out);
  w.begin_object().field("type", "selection").field("shard", r.shard).end_object();
  out += '\n';
}

void encode(std::string& out, const UserRecord& r) {
  JsonWriter w(out);
  w.begin_object()
      .field("type", "user")
      .field("did", r.did)
      .field("handle", r.handle)
      .field("displayName", r.display_name)
      .field("avatar", r.avatar)
      .field("asOf", format_timestamp(r.as_of));
  w.key("since");
  if (r.since) w.string(format_timestamp(*r.since));
  else w.null();
  w.key("baseline");
  write_totals(w, r.baseline);
  // Written only when set, so a stream from a selection that does not set them reads as before.
  if (r.last_snapshot)
    w.key("lastSnapshot")
        .begin_object()
        .field("date", r.last_snapshot->date)
        .field("posts", r.last_snapshot->posts)
        .end_object();
  if (r.window_uris) {
    w.key("windowUris").begin_array();
    for (const auto& u : *r.window_uris) w.string(u);
    w.end_array();
  }
  if (r.backfill_cursor) w.field("backfillCursor", *r.backfill_cursor).field("backfillPosts", r.backfill_posts);
  if (r.refresh_clock) w.field("refreshClock", *r.refresh_clock);
  if (r.profile_status != ProfileStatus::not_fetched) {
    w.field("profileStatus", to_string(r.profile_status));
    if (r.profile) {
      const Profile& p = *r.profile;
      w.key("profile")
          .begin_object()
          .field("handle", p.handle)
          .field("displayName", p.display_name)
          .field("avatar", p.avatar)
          .field("followers", p.followers)
          .field("following", p.following)
          .field("posts", p.posts);
      if (!p.posts_known) w.field("postsKnown", false);  // written only when false: older records stay valid
      w.end_object();
    }
    if (r.profile_error) w.field("profileError", *r.profile_error);
  }
  if (r.feed.status != FeedStatus::not_fetched) {
    w.key("feed")
        .begin_object()
        .field("status", to_string(r.feed.status));
    if (!r.feed.path.empty()) w.field("path", r.feed.path);
    if (!r.feed.reason.empty()) w.field("reason", r.feed.reason);
    w.field("pages", r.feed.pages)
        .field("posts", r.feed.posts)
        .field("requests", r.feed.requests)
        .field("error", r.feed.error);
    if (r.feed.cursor) w.field("cursor", *r.feed.cursor);
    w.end_object();
  }
  w.end_object();
  out += '\n';
}

void encode(std::string& out, const PostRecord& r) {
  JsonWriter w(out);
  w.begin_object()
      .field("type", "post")
      .field("uri", r.uri)
      .field("did", r.did)
      .field("createdAt", format_timestamp(r.created_at))
      .field("sortAt", format_timestamp(r.sort_at));
  engagement(w, r.likes, r.replies, r.quotes, r.reposts).end_object();
  out += '\n';
}

void encode(std::string& out, const SnapshotRecord& r) {
  JsonWriter w(out);
  w.begin_object()
      .field("type", "snapshot")
      .field("did", r.did)
      .field("date", r.date)
      .field("followers", r.followers)
      .field("following", r.following)
      .field("posts", r.posts);
  engagement(w, r.likes, r.replies, r.quotes, r.reposts).end_object();
  out += '\n';
}

void encode(std::string& out, const EndRecord& r) {
  JsonWriter w(out);
  w.begin_object().field("type", "end").field("stage", r.stage).field("contract", r.contract);
  w.key("counters").begin_object();
  for (const auto& [k, v] : r.counters) w.field(k, v);
  w.end_object();
  w.key("elapsed_s").number(r.elapsed_s);
  w.end_object();
  out += '\n';
}

}  // namespace ds
