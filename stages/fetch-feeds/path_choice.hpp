// Which requests an account's window needs today: its feed pages, a getPosts refresh of the
// posts already stored, or nothing. A pure function of the user record (docs/request-economy.md).
#pragma once
#include <cstdint>
#include <string_view>

#include "ds/records.hpp"

namespace ds::feeds {

enum class FeedPath {
  feed,   // getAuthorFeed pages down to the window's start
  posts,  // getPosts over the stored window's URIs, batched across accounts
  none,   // nothing stored in the window and nothing created: no request at all
};

// Why an account takes its path; counted in the `end` record and the summary line.
enum class PathReason {
  backfill,              // feed: no backfill yet (since is null)
  economy_off,           // feed: --economy off
  no_previous_snapshot,  // feed: no snapshot from a complete fetch to compare with
  stale_snapshot,        // feed: that snapshot is older than the full-refresh period
  posts_count_changed,   // feed: the profile's postsCount differs from that snapshot's
  posts_count_unknown,   // feed: the API sent no postsCount (Profile::posts_known)
  full_refresh,          // feed: today is the account's full-refresh day (FULL_REFRESH_DAYS)
  many_window_posts,     // feed: the window has too many posts for getPosts to be cheaper
  quiet,                 // posts or none: nothing created or deleted since the last snapshot
  posts_dropped,         // posts: postsCount dropped by at most the window's stored posts
  post_missing,          // feed, switched from posts: getPosts left a window post out
  posts_failed,          // feed, switched from posts: the getPosts request failed
  drop_unexplained,      // feed, switched from posts_dropped: getPosts missed fewer or more posts than dropped
};

// How many of each there are, for counters indexed by them: follow the last enumerator.
inline constexpr int feed_path_count = static_cast<int>(FeedPath::none) + 1;
inline constexpr int path_reason_count = static_cast<int>(PathReason::drop_unexplained) + 1;

struct EconomyOptions {
  bool enabled = true;
  int full_refresh_days = 7;  // every account gets a full window feed at least this often
};

struct PathChoice {
  FeedPath path = FeedPath::feed;
  PathReason reason = PathReason::backfill;
};

// For a user whose profile is ok. The rule (docs/request-economy.md):
//   feed  unless the account is backfilled, economy is on, its last complete snapshot is at
//         most refresh_period_days old with the same postsCount as the profile now, today is not
//         its full-refresh day, and the selection carried its window's URIs (fewer than 25);
//   then none when that window is empty, else posts.
PathChoice choose_path(const UserRecord& user, const EconomyOptions& options);

// How many window posts getPosts must leave out for the account's answer to stand: 0 for a
// quiet account, the drop of postsCount for a posts_dropped one.
std::int64_t expected_missing(const UserRecord& u, const PathChoice& c);

// An account's full-refresh day comes every `days` days, on the day (UTC, from as_of) whose
// number mod `days` equals fnv1a64(did) mod `days`: spread evenly, the same for every shard.
bool full_refresh_day(std::string_view did, Micros as_of, int days);

// Whether the account's full refresh is due today. With a refresh clock (the newest complete
// window feed taken for a reason of its own, UserRecord::refresh_clock) it is due when the clock
// is `days` days old; without one, on its full-refresh day. Either way no account goes more than
// `days` days without a full window feed, and an account that takes its feed anyway because it
// posted pays no refresh for `days` days after (docs/request-economy.md, "The full refresh").
bool full_refresh_due(const UserRecord& user, int days);

// How often the account's full refresh comes: full_refresh_days, or the record's window
// (as_of - since, whole days) when that is shorter. A post the economy missed (the "+1 -1 older"
// case) is found only while it is inside the window, so a refresh period longer than the window
// could come too late to ever find it (docs/request-economy.md, "The full refresh").
int refresh_period_days(const UserRecord& user, int full_refresh_days);

const char* to_string(FeedPath path);
const char* to_string(PathReason reason);

}  // namespace ds::feeds
