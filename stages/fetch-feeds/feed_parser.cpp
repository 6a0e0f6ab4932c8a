// getAuthorFeed page -> own posts + cursor. simdjson DOM: the page is validated as a whole before
// any item is used, so a truncated body is one clean error (retried), never a half-read page.
#include "feed_parser.hpp"

#include <algorithm>

#include <simdjson.h>

#include "ds/json_writer.hpp"
#include "ds/log.hpp"

namespace ds::feeds {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

std::int64_t clamp(std::int64_t n) { return n < 0 ? 0 : (n > max_count ? max_count : n); }

// Numeric strings ("12", " +3 ") count; "-5" and non-numbers are 0; big ones saturate.
std::int64_t count_from_text(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  bool negative = false;
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return 0;
  std::int64_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return 0;
    if (v < max_count) v = v * 10 + (c - '0');
  }
  return negative ? 0 : clamp(v);
}

std::int64_t count_of(const object& o, std::string_view key) {
  element v;
  if (o[key].get(v)) return 0;
  switch (v.type()) {
    case element_type::INT64: return clamp(v.get_int64().value_unsafe());
    case element_type::UINT64: return max_count;  // simdjson uses UINT64 only above INT64_MAX
    case element_type::DOUBLE: {
      const double d = v.get_double().value_unsafe();
      if (!(d > 0)) return 0;
      return d >= static_cast<double>(max_count) ? max_count : static_cast<std::int64_t>(d);
    }
    case element_type::STRING: return count_from_text(v.get_string().value_unsafe());
    default: return 0;
  }
}

std::optional<std::string_view> string_of(const object& o, std::string_view key) {
  std::string_view s;
  if (o[key].get_string().get(s)) return std::nullopt;
  return s;
}

std::optional<Micros> time_of(const object& o, std::string_view key) {
  const auto s = string_of(o, key);
  if (!s) return std::nullopt;
  return parse_timestamp(*s);
}

// Identifiers go into varchar keys and must decode downstream: non-empty, no control bytes.
bool usable_identifier(std::string_view s, std::size_t max) {
  if (s.empty() || s.size() > max || !is_valid_utf8(s)) return false;
  return std::none_of(s.begin(), s.end(),
                      [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

void bad(FeedPage& out, const char* why) {
  ++out.bad_items;
  if (out.first_problem.empty()) out.first_problem = why;
}

}  // namespace

std::string parse_author_feed(std::string_view body, std::string_view actor_did,
                              Micros& previous_sort_at, FeedPage& out) {
  out = FeedPage{};
  thread_local simdjson::dom::parser parser;  // reused: its buffers are the costly part
  element doc;
  if (auto err = parser.parse(body.data(), body.size()).get(doc))
    return std::string("unparsable getAuthorFeed response (") + simdjson::error_message(err) + ")";
  object top;
  if (doc.get_object().get(top)) return "getAuthorFeed response is not a JSON object";
  simdjson::dom::array feed;
  if (top["feed"].get_array().get(feed)) {
    if (auto e = string_of(top, "error")) {
      const auto m = string_of(top, "message");
      return "API error " + excerpt(*e) + (m ? ": " + excerpt(*m) : std::string());
    }
    return "getAuthorFeed response has no \"feed\" array";
  }
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

  const std::string repo_prefix = "at://" + std::string(actor_did) + "/";
  for (element item : feed) {
    ++out.items;
    object it, post, author;
    if (item.get_object().get(it)) { bad(out, "feed item is not an object"); continue; }
    if (it["post"].get_object().get(post)) { bad(out, "feed item without a post object"); continue; }
    const auto author_did = post["author"].get_object().get(author) ? std::nullopt : string_of(author, "did");
    if (!author_did) { bad(out, "post without author.did (notFound/blocked?)"); continue; }
    if (*author_did != actor_did) {
      ++out.others;  // a repost of someone else's post
      continue;
    }
    const auto uri = string_of(post, "uri");
    if (!uri || !usable_identifier(*uri, max_uri_bytes)) { bad(out, "post without a usable uri"); continue; }
    if (uri->substr(0, repo_prefix.size()) != repo_prefix) {
      bad(out, "post uri outside the author's repository");
      continue;
    }

    PostRecord p;
    p.uri = std::string(*uri);
    p.did = std::string(actor_did);
    object record;
    const std::optional<Micros> created =
        post["record"].get_object().get(record) ? std::nullopt : time_of(record, "createdAt");
    const std::optional<Micros> indexed = time_of(post, "indexedAt");
    if (created) {
      p.created_at = *created;
      p.sort_at = indexed ? std::min(*created, *indexed) : *created;
    } else if (indexed) {
      ++out.created_fallbacks;
      p.created_at = p.sort_at = *indexed;
    } else {
      ++out.time_fallbacks;
      p.created_at = p.sort_at = previous_sort_at;
    }
    previous_sort_at = p.sort_at;
    p.likes = count_of(post, "likeCount");
    p.replies = count_of(post, "replyCount");
    p.quotes = count_of(post, "quoteCount");
    p.reposts = count_of(post, "repostCount");
    out.posts.push_back(std::move(p));
  }
  return {};
}

}  // namespace ds::feeds
