// Turns one app.bsky.feed.getAuthorFeed page into the actor's own posts plus the next cursor, as
// a pure function, robust to whatever a hostile or broken server sends.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ds/clock.hpp"
#include "ds/records.hpp"

namespace ds::feeds {

// Same clamping as profile counts: absent/null/non-numeric/negative -> 0, numeric strings read,
// above 2^31-1 -> 2^31-1 (the posts columns are int).
constexpr std::int64_t max_count = 2147483647;
// posts.uri is varchar(500); a longer uri is not a real post uri and the item is dropped as bad.
constexpr std::size_t max_uri_bytes = 500;

struct FeedPage {
  std::vector<PostRecord> posts;      // the actor's own posts, in API order (newest first)
  std::optional<std::string> cursor;  // absent (or empty) = no more pages
  std::int64_t items = 0;             // entries in `feed`
  std::int64_t others = 0;            // posts by someone else (reposts), dropped
  std::int64_t bad_items = 0;         // entries without a usable post/uri/author, dropped
  std::int64_t created_fallbacks = 0; // record.createdAt unusable: indexedAt used instead
  std::int64_t time_fallbacks = 0;    // neither timestamp usable: previous sortAt used
  std::string first_problem;          // why the first bad item was dropped, for the log
};

// Parses a getAuthorFeed body for `actor_did`. Keeps only items whose post.author.did is the
// actor (drops reposts of other people) and whose uri lies in the actor's repository.
//
// Times: createdAt = record.createdAt when it parses (any shape ds::parse_timestamp accepts),
// else indexedAt. sortAt = least(createdAt, indexedAt) when both parse, else whichever parses.
// When neither parses the post is kept with the sortAt (and createdAt) of the previous kept post:
// the feed is newest first, so that is the closest honest bound. `previous_sort_at` carries that
// value across pages; the caller seeds it (ds-fetch-feeds uses the run clock, asOf) and it is
// updated to the last kept post's sortAt.
//
// Returns an empty string on success, else why the body is not a feed page (malformed or
// truncated JSON, an {"error":...} object, no `feed` array, a cursor that is not a string).
std::string parse_author_feed(std::string_view body, std::string_view actor_did,
                              Micros& previous_sort_at, FeedPage& out);

}  // namespace ds::feeds
