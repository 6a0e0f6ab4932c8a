// Reading one postView: the uri must be the author's, counts go through the lexicon readers, and
// the two timestamps give createdAt and sortAt with the fallbacks documented in the header.
#include "ds/appview/post_view.hpp"

#include <algorithm>
#include <optional>

#include "ds/appview/lexicon.hpp"

namespace ds::appview {

void PostViewTally::bad(const char* why) {
  ++bad_items;
  if (first_problem.empty()) first_problem = why;
}

bool read_post_view(const simdjson::dom::object& post, std::string_view author_did, Micros& previous_sort_at,
                    PostRecord& out, PostViewTally& tally) {
  const auto uri = string_of(post, "uri");
  if (!uri || !usable_identifier(*uri, max_uri_bytes)) {
    tally.bad("post without a usable uri");
    return false;
  }
  // at://<author>/...: a post's uri names the repository it lives in.
  if (uri->size() <= author_did.size() + 5 || uri->substr(0, 5) != "at://" ||
      uri->substr(5, author_did.size()) != author_did || (*uri)[5 + author_did.size()] != '/') {
    tally.bad("post uri outside the author's repository");
    return false;
  }
  out = PostRecord{};
  out.uri = std::string(*uri);
  out.did = std::string(author_did);
  simdjson::dom::object record;
  const std::optional<Micros> created =
      post["record"].get_object().get(record) ? std::nullopt : time_of(record, "createdAt");
  const std::optional<Micros> indexed = time_of(post, "indexedAt");
  if (created) {
    out.created_at = *created;
    out.sort_at = indexed ? std::min(*created, *indexed) : *created;
  } else if (indexed) {
    ++tally.created_fallbacks;
    out.created_at = out.sort_at = *indexed;
  } else {
    ++tally.time_fallbacks;
    out.created_at = out.sort_at = previous_sort_at;
  }
  previous_sort_at = out.sort_at;
  out.likes = count_of(post, "likeCount");
  out.replies = count_of(post, "replyCount");
  out.quotes = count_of(post, "quoteCount");
  out.reposts = count_of(post, "repostCount");
  return true;
}

}  // namespace ds::appview
