// app.bsky.feed.getPosts: a batch of post views by URI, read into PostRecords, as a pure function.
// The AppView answers with the posts that exist, in request order, and silently omits the rest.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "ds/appview/post_view.hpp"
#include "ds/clock.hpp"
#include "ds/records.hpp"

namespace ds::appview {

struct PostsAnswer : PostViewTally {
  std::vector<PostRecord> posts;  // in response order; each post's did is its author's
};

// Parses a getPosts body. A post without author.did, or whose uri lies outside its author's
// repository, is counted bad and left out. A post with no usable timestamp takes
// `fallback_time` (the caller's run clock). Returns an empty string on success, else why the
// body is not a getPosts answer (malformed or truncated JSON, an {"error":...} object, no
// `posts` array). Which requested URIs are missing is the caller's question: it asked.
std::string parse_get_posts(std::string_view body, Micros fallback_time, PostsAnswer& out);

}  // namespace ds::appview
