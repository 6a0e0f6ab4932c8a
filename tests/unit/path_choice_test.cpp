// Tests for the request-economy rule of ds-fetch-feeds: which accounts may skip their feed, and
// the full-refresh days that bound what no cheap signal reveals.
#include <map>
#include <string>

#include <catch2/catch.hpp>

#include "ds/clock.hpp"
#include "path_choice.hpp"

namespace {

using namespace ds::feeds;

const ds::Micros as_of = *ds::parse_timestamp("2026-12-02T06:00:00Z");

// A backfilled account, quiet since yesterday's complete snapshot, whose full-refresh day is not
// today: the cheap path applies. Each test changes one thing.
ds::UserRecord quiet_user(std::vector<std::string> window_uris = {"at://did:plc:q/app.bsky.feed.post/1"}) {
  ds::UserRecord u;
  u.as_of = as_of;
  u.since = as_of - 7 * ds::micros_per_day;
  u.profile_status = ds::ProfileStatus::ok;
  u.profile = ds::Profile{"q.test", std::nullopt, std::nullopt, 10, 20, 131};
  u.last_snapshot = ds::LastSnapshot{"2026-12-01", 131};
  u.window_uris = std::move(window_uris);
  // A DID whose refresh day is not today (there are 6 in 7 of them; search is quick).
  for (int i = 0;; ++i) {
    u.did = "did:plc:q" + std::to_string(i);
    if (!full_refresh_day(u.did, as_of, 7)) break;
  }
  return u;
}

}  // namespace

TEST_CASE("path: a quiet backfilled account is refreshed by getPosts, or not at all", "[path_choice]") {
  const EconomyOptions on;
  CHECK(choose_path(quiet_user(), on).path == FeedPath::posts);
  CHECK(choose_path(quiet_user(), on).reason == PathReason::quiet);
  CHECK(choose_path(quiet_user({}), on).path == FeedPath::none);
}

TEST_CASE("path: every signal that the stored window may be wrong takes the feed", "[path_choice]") {
  const EconomyOptions on;
  std::map<std::string, std::pair<ds::UserRecord, PathReason>> cases;
  {
    auto u = quiet_user();
    u.since.reset();
    cases["backfill"] = {u, PathReason::backfill};
  }
  {
    auto u = quiet_user();
    u.last_snapshot.reset();
    cases["no previous snapshot"] = {u, PathReason::no_previous_snapshot};
  }
  {
    // postsCount absent reads as 0 on both days: equal, yet it proves nothing (the e2e account 17).
    auto u = quiet_user();
    u.profile->posts = 0;
    u.profile->posts_known = false;
    u.last_snapshot->posts = 0;
    cases["postsCount absent"] = {u, PathReason::posts_count_unknown};
  }
  {
    auto u = quiet_user();
    u.last_snapshot->date = "2026-11-24";  // 8 days before: older than the 7-day period
    cases["stale snapshot"] = {u, PathReason::stale_snapshot};
  }
  {
    auto u = quiet_user();
    u.profile->posts = 132;  // created one
    cases["a post created"] = {u, PathReason::posts_count_changed};
  }
  {
    auto u = quiet_user();
    u.profile->posts = 129;  // two fewer: more than the one stored window post getPosts could miss
    cases["more posts deleted than the window holds"] = {u, PathReason::posts_count_changed};
  }
  {
    auto u = quiet_user();
    u.window_uris.reset();  // the selection left them out: too many for getPosts to pay
    cases["many window posts"] = {u, PathReason::many_window_posts};
  }
  for (const auto& [name, c] : cases) {
    INFO(name);
    const PathChoice got = choose_path(c.first, on);
    CHECK(got.path == FeedPath::feed);
    CHECK(got.reason == c.second);
  }
  EconomyOptions off;
  off.enabled = false;
  CHECK(choose_path(quiet_user(), off).reason == PathReason::economy_off);
}

TEST_CASE("path: each account's full refresh comes once every N days, spread over the days", "[path_choice]") {
  const int days = 7;
  std::map<int, int> per_day;  // day offset -> accounts refreshed that day
  for (int a = 0; a < 700; ++a) {
    const std::string did = "did:plc:account" + std::to_string(a);
    int refreshed = 0;
    for (int d = 0; d < days; ++d)
      if (full_refresh_day(did, as_of + d * ds::micros_per_day, days)) {
        ++refreshed;
        ++per_day[d];
      }
    INFO(did);
    CHECK(refreshed == 1);  // exactly once per period
  }
  for (const auto& [d, n] : per_day) {
    INFO("day " << d << ": " << n << " of 700");
    CHECK(n > 50);   // spread: 100 expected per day, none carries them all
    CHECK(n < 150);
  }
  // On its day, a quiet account takes the feed.
  auto u = quiet_user();
  for (int d = 0; d < days; ++d) {
    u.as_of = as_of + d * ds::micros_per_day;
    u.last_snapshot->date = ds::format_date(u.as_of - ds::micros_per_day);
    if (full_refresh_day(u.did, u.as_of, days)) CHECK(choose_path(u, {}).reason == PathReason::full_refresh);
    else CHECK(choose_path(u, {}).path == FeedPath::posts);
  }
  CHECK(full_refresh_day("did:plc:any", as_of, 1));  // 1 day: every day is a full refresh
}

TEST_CASE("path: an account with no posts, known to have none, needs no request, even on its refresh day",
          "[path_choice]") {
  auto u = quiet_user({});
  u.profile->posts = 0;
  u.last_snapshot->posts = 0;
  for (int d = 0; d < 7; ++d) {
    u.as_of = as_of + d * ds::micros_per_day;
    u.last_snapshot->date = ds::format_date(u.as_of - ds::micros_per_day);
    INFO("day " << d << (full_refresh_day(u.did, u.as_of, 7) ? " (its refresh day)" : ""));
    CHECK(choose_path(u, {}).path == FeedPath::none);
  }
  // One post, on its refresh day: the feed, since a new post and that one's deletion would hide.
  u.profile->posts = u.last_snapshot->posts = 1;
  for (int d = 0; d < 7; ++d) {
    u.as_of = as_of + d * ds::micros_per_day;
    u.last_snapshot->date = ds::format_date(u.as_of - ds::micros_per_day);
    if (full_refresh_day(u.did, u.as_of, 7)) CHECK(choose_path(u, {}).reason == PathReason::full_refresh);
  }
}

TEST_CASE("path: a drop of postsCount the window could explain is checked by getPosts", "[path_choice]") {
  auto u = quiet_user({"at://did:plc:q/app.bsky.feed.post/1", "at://did:plc:q/app.bsky.feed.post/2"});
  u.profile->posts = 129;  // two deleted, two stored in the window
  const PathChoice c = choose_path(u, {});
  CHECK(c.path == FeedPath::posts);
  CHECK(c.reason == PathReason::posts_dropped);
  CHECK(expected_missing(u, c) == 2);
  CHECK(expected_missing(quiet_user(), choose_path(quiet_user(), {})) == 0);  // quiet: none may be missing
  // On its full-refresh day it takes the feed, as a quiet account does.
  for (int d = 0; d < 7; ++d) {
    u.as_of = as_of + d * ds::micros_per_day;
    u.last_snapshot->date = ds::format_date(u.as_of - ds::micros_per_day);
    if (full_refresh_day(u.did, u.as_of, 7)) CHECK(choose_path(u, {}).reason == PathReason::posts_count_changed);
  }
}

TEST_CASE("path: with a refresh clock the full refresh is due N days after the account's own feed", "[path_choice]") {
  auto u = quiet_user();
  // The clock: a feed taken for the account's own reason 3 days ago. Its hash day no longer
  // matters; the refresh is due on the 7th day after the clock, and not before.
  u.refresh_clock = ds::format_date(as_of - 3 * ds::micros_per_day);
  for (int d = 0; d < 8; ++d) {
    u.as_of = as_of + d * ds::micros_per_day;
    u.last_snapshot->date = ds::format_date(u.as_of - ds::micros_per_day);
    INFO("day " << d << ", clock " << *u.refresh_clock);
    const bool due = d + 3 >= 7;
    CHECK(full_refresh_due(u, 7) == due);
    if (due) CHECK(choose_path(u, {}).reason == PathReason::full_refresh);
    else CHECK(choose_path(u, {}).path == FeedPath::posts);
  }
  // A quiet account on its hash day skips the refresh while its clock is recent...
  auto h = quiet_user();
  for (int d = 1; d < 7 && !full_refresh_day(h.did, h.as_of, 7); ++d) h.as_of = as_of + d * ds::micros_per_day;
  REQUIRE(full_refresh_day(h.did, h.as_of, 7));
  h.last_snapshot->date = ds::format_date(h.as_of - ds::micros_per_day);
  CHECK(choose_path(h, {}).reason == PathReason::full_refresh);  // no clock: the hash day
  h.refresh_clock = ds::format_date(h.as_of - ds::micros_per_day);
  CHECK(choose_path(h, {}).path == FeedPath::posts);  // it took its feed yesterday
  // ...and a drop of postsCount stays on getPosts until the clock comes due.
  h.profile->posts = 130;
  CHECK(choose_path(h, {}).reason == PathReason::posts_dropped);
  h.refresh_clock = ds::format_date(h.as_of - 7 * ds::micros_per_day);
  CHECK(choose_path(h, {}).reason == PathReason::posts_count_changed);
  // A clock newer than the run (an older day replayed after a newer one) is not due.
  h.profile->posts = 131;
  h.refresh_clock = ds::format_date(h.as_of + ds::micros_per_day);
  CHECK(choose_path(h, {}).path == FeedPath::posts);
  CHECK(full_refresh_due(h, 1));  // 1 day: every day is a full refresh
}

TEST_CASE("path: full refreshes come no further apart than the window", "[path_choice]") {
  // A post missed by the "+1 -1 older" case the day after a full feed leaves a 7-day window
  // after 7 days: a refresh asked for every 14 days would never find it, so it comes every 7.
  auto u = quiet_user();
  EconomyOptions fortnight;
  fortnight.full_refresh_days = 14;
  CHECK(refresh_period_days(u, 14) == 7);
  CHECK(refresh_period_days(u, 5) == 5);  // shorter than the window: as asked
  CHECK(refresh_period_days(u, 1) == 1);  // every day
  u.refresh_clock = ds::format_date(as_of - 7 * ds::micros_per_day);
  CHECK(choose_path(u, fortnight).reason == PathReason::full_refresh);
  u.refresh_clock = ds::format_date(as_of - 6 * ds::micros_per_day);
  CHECK(choose_path(u, fortnight).path == FeedPath::posts);
  // A 3-day window (TIME_RANGE_DAYS 3) with the default 7: due 3 days after the clock.
  u.since = as_of - 3 * ds::micros_per_day;
  CHECK(refresh_period_days(u, 7) == 3);
  CHECK(choose_path(u, {}).reason == PathReason::full_refresh);  // the clock is 6 days old
  u.refresh_clock = ds::format_date(as_of - 2 * ds::micros_per_day);
  CHECK(choose_path(u, {}).path == FeedPath::posts);
  u.refresh_clock = ds::format_date(as_of - 3 * ds::micros_per_day);
  CHECK(choose_path(u, {}).reason == PathReason::full_refresh);
  // A snapshot older than that period is not compared with: the feed.
  u.refresh_clock = ds::format_date(as_of - ds::micros_per_day);
  u.last_snapshot->date = ds::format_date(as_of - 4 * ds::micros_per_day);
  CHECK(choose_path(u, {}).reason == PathReason::stale_snapshot);
  // Less than a day of window still refreshes every day; a backfill has no window to cut it.
  u.since = as_of - ds::micros_per_day / 2;
  CHECK(refresh_period_days(u, 7) == 1);
  u.since.reset();
  CHECK(refresh_period_days(u, 7) == 7);
}

TEST_CASE("path: the reasons that restart the refresh clock are the account's own", "[path_choice]") {
  // A reason many accounts share on one day (a common backfill, the economy off, a getPosts
  // outage) must not restart clocks: they would all come due on one later day.
  std::map<PathReason, bool> expected{
      {PathReason::backfill, false},           {PathReason::economy_off, false},
      {PathReason::no_previous_snapshot, false}, {PathReason::stale_snapshot, false},
      {PathReason::posts_count_changed, true}, {PathReason::posts_count_unknown, false},
      {PathReason::full_refresh, true},        {PathReason::many_window_posts, true},
      {PathReason::quiet, false},              {PathReason::posts_dropped, false},
      {PathReason::post_missing, true},        {PathReason::posts_failed, false},
      {PathReason::drop_unexplained, true}};
  REQUIRE(static_cast<int>(expected.size()) == path_reason_count);
  for (const auto& [reason, restarts] : expected) {
    INFO(to_string(reason));
    CHECK(ds::restarts_refresh_clock(to_string(reason)) == restarts);
  }
}
