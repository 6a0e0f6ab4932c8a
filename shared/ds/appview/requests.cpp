// URL builders for the three AppView endpoints: query values percent-encoded, repeated array
// parameters (`actors=a&actors=b`) the way XRPC expects them.
#include "ds/appview/requests.hpp"

#include <algorithm>

#include "ds/http.hpp"

namespace ds::appview {

namespace {
// `name=v1&name=v2...` after `url`, which has no query yet.
std::string with_repeated(std::string url, std::string_view name, const std::vector<std::string>& values) {
  char sep = '?';
  for (const auto& v : values) {
    url += sep;
    url += name;
    url += '=';
    url += url_encode(v);
    sep = '&';
  }
  return url;
}
}  // namespace

std::string xrpc_url(std::string_view base_url, std::string_view nsid) {
  while (!base_url.empty() && base_url.back() == '/') base_url.remove_suffix(1);
  std::string url(base_url);
  url += "/xrpc/";
  url += nsid;
  return url;
}

std::string get_profiles_url(std::string_view base_url, const std::vector<std::string>& actors) {
  return with_repeated(xrpc_url(base_url, "app.bsky.actor.getProfiles"), "actors", actors);
}

std::string author_feed_url(std::string_view base_url, std::string_view actor, int limit,
                            const std::optional<std::string>& cursor) {
  std::string url = xrpc_url(base_url, "app.bsky.feed.getAuthorFeed") + "?actor=" + url_encode(actor) +
                    "&limit=" + std::to_string(std::clamp(limit, 1, max_feed_page));
  if (cursor) url += "&cursor=" + url_encode(*cursor);
  return url;
}

std::string get_posts_url(std::string_view base_url, const std::vector<std::string>& uris) {
  return with_repeated(xrpc_url(base_url, "app.bsky.feed.getPosts"), "uris", uris);
}

}  // namespace ds::appview
