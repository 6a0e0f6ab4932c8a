// The AppView requests the pipeline makes: one URL builder per XRPC endpoint, and each
// endpoint's limits from its lexicon, so no stage spells a path or a parameter itself.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ds::appview {

// app.bsky.actor.getProfiles: `actors` 1..25.
constexpr std::size_t max_profiles_per_request = 25;
// app.bsky.feed.getAuthorFeed: `limit` 1..100.
constexpr int max_feed_page = 100;
// app.bsky.feed.getPosts: `uris` 1..25.
constexpr std::size_t max_posts_per_request = 25;

// base_url + "/xrpc/" + nsid, with any trailing slashes of base_url dropped.
std::string xrpc_url(std::string_view base_url, std::string_view nsid);

std::string get_profiles_url(std::string_view base_url, const std::vector<std::string>& actors);
// `limit` is clamped to 1..max_feed_page.
std::string author_feed_url(std::string_view base_url, std::string_view actor, int limit,
                            const std::optional<std::string>& cursor);
std::string get_posts_url(std::string_view base_url, const std::vector<std::string>& uris);

}  // namespace ds::appview
