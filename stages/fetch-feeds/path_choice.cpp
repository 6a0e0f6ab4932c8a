// The request-economy rule for one account: the checks that make the cheap path safe, each a
// reason to take the feed instead (docs/request-economy.md, "When the feed is taken").
#include "path_choice.hpp"

#include <algorithm>

#include "ds/clock.hpp"
#include "ds/shard.hpp"

namespace ds::feeds {

bool full_refresh_day(std::string_view did, Micros as_of, int days) {
  if (days <= 1) return true;
  const auto day = static_cast<std::uint64_t>(as_of / micros_per_day);
  return fnv1a64(did) % static_cast<std::uint64_t>(days) == day % static_cast<std::uint64_t>(days);
}

bool full_refresh_due(const UserRecord& u, int days) {
  if (days <= 1) return true;
  if (!u.refresh_clock) return full_refresh_day(u.did, u.as_of, days);
  const auto clock = parse_date(*u.refresh_clock);
  if (!clock) return true;
  return u.as_of / micros_per_day - *clock / micros_per_day >= days;
}

int refresh_period_days(const UserRecord& u, int full_refresh_days) {
  if (full_refresh_days <= 1 || !u.since || u.as_of <= *u.since) return full_refresh_days;
  const auto window_days = (u.as_of - *u.since) / micros_per_day;
  return static_cast<int>(std::clamp<std::int64_t>(window_days, 1, full_refresh_days));
}

PathChoice choose_path(const UserRecord& u, const EconomyOptions& o) {
  const auto feed = [](PathReason why) { return PathChoice{FeedPath::feed, why}; };
  if (!u.since || u.backfill_cursor) return feed(PathReason::backfill);  // fresh or resumed
  if (!o.enabled) return feed(PathReason::economy_off);
  if (!u.last_snapshot) return feed(PathReason::no_previous_snapshot);
  const int period = refresh_period_days(u, o.full_refresh_days);
  const auto last_day = parse_date(u.last_snapshot->date);
  if (!last_day || u.as_of - *last_day > static_cast<Micros>(period) * micros_per_day)
    return feed(PathReason::stale_snapshot);
  if (!u.profile) return feed(PathReason::posts_count_changed);
  const std::int64_t drop = u.last_snapshot->posts - u.profile->posts;
  const bool refresh_day = full_refresh_due(u, period);
  // Only deletions, if getPosts misses exactly `drop` stored window posts: a new post would need
  // as many older deletions to hide, the blind spot the full refresh covers for quiet accounts.
  if (drop > 0 && u.profile->posts_known && u.window_uris && drop <= static_cast<std::int64_t>(u.window_uris->size()) &&
      !refresh_day)
    return {FeedPath::posts, PathReason::posts_dropped};
  if (drop != 0) return feed(PathReason::posts_count_changed);
  // An absent postsCount reads as 0 and proves nothing: such an account takes its feed.
  if (!u.profile->posts_known) return feed(PathReason::posts_count_unknown);
  // The one blind spot (a new post and an older one deleted the same day) needs a post to delete:
  // an account that had none and has none needs no full refresh.
  const bool nothing_to_delete = u.profile->posts == 0;
  if (!nothing_to_delete && refresh_day) return feed(PathReason::full_refresh);
  if (!u.window_uris) return feed(PathReason::many_window_posts);
  return {u.window_uris->empty() ? FeedPath::none : FeedPath::posts, PathReason::quiet};
}

std::int64_t expected_missing(const UserRecord& u, const PathChoice& c) {
  if (c.reason != PathReason::posts_dropped || !u.profile || !u.last_snapshot) return 0;
  return u.last_snapshot->posts - u.profile->posts;
}

const char* to_string(FeedPath p) {
  switch (p) {
    case FeedPath::feed: return "feed";
    case FeedPath::posts: return "posts";
    case FeedPath::none: return "none";
  }
  return "feed";
}

const char* to_string(PathReason r) {
  switch (r) {
    case PathReason::backfill: return "backfill";
    case PathReason::economy_off: return "economy_off";
    case PathReason::no_previous_snapshot: return "no_previous_snapshot";
    case PathReason::stale_snapshot: return "stale_snapshot";
    case PathReason::posts_count_changed: return "posts_count_changed";
    case PathReason::posts_count_unknown: return "posts_count_unknown";
    case PathReason::full_refresh: return "full_refresh";
    case PathReason::many_window_posts: return "many_window_posts";
    case PathReason::quiet: return "quiet";
    case PathReason::posts_dropped: return "posts_dropped";
    case PathReason::post_missing: return "post_missing";
    case PathReason::posts_failed: return "posts_failed";
    case PathReason::drop_unexplained: return "drop_unexplained";
  }
  return "feed";
}

}  // namespace ds::feeds
