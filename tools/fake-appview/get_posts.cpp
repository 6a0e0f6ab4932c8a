// The fake AppView's app.bsky.feed.getPosts: post views by URI from the dataset, validated and
// answered the way the real AppView does (lexicon check, duplicates once, missing posts left out).
#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "server.hpp"
#include "views.hpp"

namespace ds::fake {

namespace {

bool all_of_chars(std::string_view s, std::string_view extra) {
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           extra.find(c) != std::string_view::npos;
  });
}

bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (std::size_t start = 0;;) {
    const std::size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

// Dot-separated labels of 1..63 letters, digits and hyphens, no hyphen at either end.
bool valid_labels(std::string_view s, std::size_t min_labels) {
  const auto labels = split(s, '.');
  if (labels.size() < min_labels) return false;
  return std::all_of(labels.begin(), labels.end(), [](std::string_view l) {
    return !l.empty() && l.size() <= 63 && l.front() != '-' && l.back() != '-';
  });
}

// The atproto syntax rules (@atproto/syntax ensureValidDid, ensureValidHandle, ensureValidNsid),
// as far as an at:// URI's authority and collection go.
bool valid_did(std::string_view s) {
  if (s.size() > 2048 || !all_of_chars(s, "._:%-")) return false;
  const auto parts = split(s, ':');
  if (parts.size() < 3 || parts[0] != "did" || parts[1].empty()) return false;
  if (!std::all_of(parts[1].begin(), parts[1].end(), [](char c) { return c >= 'a' && c <= 'z'; })) return false;
  return s.back() != ':' && s.back() != '%';
}

bool valid_handle(std::string_view s) {
  if (s.size() > 253 || !all_of_chars(s, ".-") || !valid_labels(s, 2)) return false;
  return is_letter(s.substr(s.rfind('.') + 1).front());
}

bool valid_nsid(std::string_view s) {
  if (s.size() > 317 || !all_of_chars(s, ".-") || !valid_labels(s, 3)) return false;
  const std::string_view name = s.substr(s.rfind('.') + 1);
  return !(s.front() >= '0' && s.front() <= '9') && is_letter(name.front()) && all_of_chars(name, "");
}

// Whether the lexicon's "at-uri" format accepts `uri` (ensureValidAtUri): at://AUTHORITY, then
// optionally /COLLECTION (an NSID) and /RKEY, and an optional #/fragment. Any collection passes,
// so a valid at-uri may name no post at all; getPosts then simply finds nothing.
bool valid_at_uri(std::string_view uri) {
  const auto halves = split(uri, '#');
  if (halves.size() > 2) return false;
  const std::string_view main = halves[0];
  if (main.size() > 8 * 1024 || !all_of_chars(main, "._~:@!$&')(*+,;=%/-")) return false;
  const auto parts = split(main, '/');
  if (parts.size() < 3 || parts.size() > 5 || parts[0] != "at:" || !parts[1].empty()) return false;
  if (!(parts[2].substr(0, 4) == "did:" ? valid_did(parts[2]) : valid_handle(parts[2]))) return false;
  if (parts.size() >= 4 && !valid_nsid(parts[3])) return false;
  if (parts.size() == 5 && parts[4].empty()) return false;
  if (halves.size() == 2) {
    const std::string_view fragment = halves[1];
    if (fragment.empty() || fragment.front() != '/' || !all_of_chars(fragment, "._~:@!$&')(*+,;=%[]/-")) return false;
  }
  return true;
}

}  // namespace

Response AppView::get_posts(const Request& req, int day) {
  const std::vector<std::string> uris = req.all("uris");
  // The real server's lexicon check: the count first, then each item's format.
  if (uris.empty()) return xrpc_error(400, "InvalidRequest", "Error: Params must have the property \"uris\"");
  if (uris.size() > 25) return xrpc_error(400, "InvalidRequest", "Error: uris must not have more than 25 elements");
  for (std::size_t i = 0; i < uris.size(); ++i)
    if (!valid_at_uri(uris[i]))
      return xrpc_error(400, "InvalidRequest", "Error: uris/" + std::to_string(i) + " must be a valid at-uri");

  view::Authors authors(dataset_, day);
  std::string body;
  JsonWriter w(body);
  w.begin_object().key("posts");
  view::write_array(w, body, [&](JsonWriter& a) {
    std::vector<std::string_view> seen;
    for (const std::string& uri : uris) {
      if (std::find(seen.begin(), seen.end(), uri) != seen.end()) continue;  // dedupeStrs
      seen.push_back(uri);
      if (const auto ref = dataset_.find_post(uri, day))
        view::write_post_view(a, body, dataset_.post(*ref, day), authors, false);
    }
  });
  w.end_object();
  return view::json_response(std::move(body));
}

}  // namespace ds::fake
