// getAuthorFeed page -> own posts + cursor. The page is validated as a whole before any item is
// used, so a truncated body is one clean error (retried), never a half-read page.
#include "ds/appview/get_author_feed.hpp"

#include "ds/appview/lexicon.hpp"

namespace ds::appview {

using simdjson::dom::element;
using simdjson::dom::object;

std::string parse_author_feed(std::string_view body, std::string_view actor_did,
                              Micros& previous_sort_at, FeedPage& out) {
  out = FeedPage{};
  object top;
  simdjson::dom::array feed;
  if (std::string err = open_response(body, "getAuthorFeed", "feed", top, feed); !err.empty()) return err;
  element cursor;
  if (!top["cursor"].get(cursor)) {
    std::string_view c;
    if (cursor.is_null()) {
      // null = absent: the end
    } else if (cursor.get_string().get(c)) {
      return "getAuthorFeed cursor is not a string";
    } else if (!c.empty()) {
      // The cursor goes back into a URL; control bytes or invalid UTF-8 mean it is not one of
      // the server's cursors.
      if (!usable_identifier(c, 1024)) return "getAuthorFeed cursor is not a usable string";
      out.cursor = std::string(c);
    }
  }

  for (element item : feed) {
    ++out.items;
    object it, post, author;
    if (item.get_object().get(it)) { out.bad("feed item is not an object"); continue; }
    if (it["post"].get_object().get(post)) { out.bad("feed item without a post object"); continue; }
    const auto author_did = post["author"].get_object().get(author) ? std::nullopt : string_of(author, "did");
    if (!author_did) { out.bad("post without author.did (notFound/blocked?)"); continue; }
    if (*author_did != actor_did) {
      ++out.others;  // a repost of someone else's post
      continue;
    }
    PostRecord p;
    if (read_post_view(post, actor_did, previous_sort_at, p, out)) out.posts.push_back(std::move(p));
  }
  return {};
}

std::optional<Micros> author_feed_cursor_time(std::string_view cursor) {
  const std::size_t sep = cursor.find("__");
  if (sep == std::string_view::npos) return parse_timestamp(cursor);
  // Up to 15 digits: milliseconds up to the year 33658, so the product below cannot overflow.
  if (sep == 0 || sep > 15 || sep + 2 == cursor.size()) return std::nullopt;
  Micros ms = 0;
  for (const char ch : cursor.substr(0, sep)) {
    if (ch < '0' || ch > '9') return std::nullopt;
    ms = ms * 10 + (ch - '0');
  }
  return ms * 1000;
}

}  // namespace ds::appview
