// getPosts body -> post records, validated as a whole first like every AppView answer; items are
// read by the same postView reader as feed pages.
#include "ds/appview/get_posts.hpp"

#include "ds/appview/lexicon.hpp"

namespace ds::appview {

using simdjson::dom::element;
using simdjson::dom::object;

std::string parse_get_posts(std::string_view body, Micros fallback_time, PostsAnswer& out) {
  out = PostsAnswer{};
  object top;
  simdjson::dom::array posts;
  if (std::string err = open_response(body, "getPosts", "posts", top, posts); !err.empty()) return err;
  for (element item : posts) {
    object post, author;
    if (item.get_object().get(post)) { out.bad("post view is not an object"); continue; }
    const auto author_did = post["author"].get_object().get(author) ? std::nullopt : string_of(author, "did");
    if (!author_did || !usable_identifier(*author_did, 255)) { out.bad("post without a usable author.did"); continue; }
    // Each post stands alone here: no neighbour's time is an honest fallback, the run clock is.
    Micros previous = fallback_time;
    PostRecord p;
    if (read_post_view(post, *author_did, previous, p, out)) out.posts.push_back(std::move(p));
  }
  return {};
}

}  // namespace ds::appview
