// One app.bsky.feed.defs#postView read into a PostRecord: shared by getAuthorFeed (whose items
// wrap one) and getPosts (a list of them), so both read uris, counts and times alike.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <simdjson.h>

#include "ds/clock.hpp"
#include "ds/records.hpp"

namespace ds::appview {

// posts.uri is varchar(500); a longer uri is not a real post uri and the post is dropped as bad.
constexpr std::size_t max_uri_bytes = 500;

// What reading a run of post views found besides the posts themselves.
struct PostViewTally {
  std::int64_t bad_items = 0;          // entries without a usable post/uri/author, dropped
  std::int64_t created_fallbacks = 0;  // record.createdAt unusable: indexedAt used instead
  std::int64_t time_fallbacks = 0;     // neither timestamp usable: previous sortAt used
  std::string first_problem;           // why the first bad entry was dropped, for the log
  void bad(const char* why);
};

// Reads `post` (a postView) written by `author_did` into `out`. Returns false, after counting
// the problem in `tally`, when its uri is unusable or lies outside the author's repository.
//
// Times: createdAt = record.createdAt when it parses (any shape ds::parse_timestamp accepts),
// else indexedAt. sortAt = least(createdAt, indexedAt) when both parse, else whichever parses.
// When neither parses, both are `previous_sort_at`: in a newest-first list that is the closest
// honest bound. `previous_sort_at` is updated to the post's sortAt.
bool read_post_view(const simdjson::dom::object& post, std::string_view author_did, Micros& previous_sort_at,
                    PostRecord& out, PostViewTally& tally);

}  // namespace ds::appview
