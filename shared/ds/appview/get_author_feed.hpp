// app.bsky.feed.getAuthorFeed: one page read into the actor's own posts and the next cursor, as a
// pure function, robust to whatever a hostile or broken server sends.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ds/appview/post_view.hpp"
#include "ds/clock.hpp"
#include "ds/records.hpp"

namespace ds::appview {

struct FeedPage : PostViewTally {
  std::vector<PostRecord> posts;      // the actor's own posts, in API order (newest first)
  std::optional<std::string> cursor;  // absent (or empty) = no more pages
  std::int64_t items = 0;             // entries in `feed`
  std::int64_t others = 0;            // posts by someone else (reposts), dropped
};

// Parses a getAuthorFeed body for `actor_did`. Keeps only items whose post.author.did is the
// actor (drops reposts of other people) and whose uri lies in the actor's repository. Times as
// read_post_view says; `previous_sort_at` carries the fallback time across pages (the caller
// seeds it: ds-fetch-feeds uses the run clock, asOf).
//
// Returns an empty string on success, else why the body is not a feed page (malformed or
// truncated JSON, an {"error":...} object, no `feed` array, a cursor that is not a string).
std::string parse_author_feed(std::string_view body, std::string_view actor_did,
                              Micros& previous_sort_at, FeedPage& out);

// The sort time a getAuthorFeed cursor stands for: the next page holds only items older than it.
// Bluesky's AppView writes "<sort time in epoch milliseconds>__<cid of the last item>"
// (docs/real-appview.md); an RFC 3339 timestamp is read too. Anything else: nullopt, since the
// cursor is opaque by contract and the caller must judge the page without it.
std::optional<Micros> author_feed_cursor_time(std::string_view cursor);

}  // namespace ds::appview
