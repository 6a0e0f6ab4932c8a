// Tests for the AppView client layer (shared/ds/appview) that no single endpoint owns: how every
// parser refuses a body that is not an answer, the getPosts parser, URLs, and answer classes.
#include <functional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "ds/appview/answer.hpp"
#include "ds/appview/get_author_feed.hpp"
#include "ds/appview/get_posts.hpp"
#include "ds/appview/get_profiles.hpp"
#include "ds/appview/lexicon.hpp"
#include "ds/appview/requests.hpp"
#include "ds/clock.hpp"

namespace {

using namespace ds::appview;

ds::Micros ts(const char* s) { return *ds::parse_timestamp(s); }

// One endpoint's parser, seen from outside: the error for `body` and how many items it kept.
struct Endpoint {
  const char* name;
  const char* list_key;
  std::function<std::string(const std::string& body, std::size_t& kept)> parse;
};

const Endpoint endpoints[] = {
    {"getProfiles", "profiles",
     [](const std::string& body, std::size_t& kept) {
       ProfilesPage page;
       std::string err = parse_get_profiles(body, page);
       kept = page.profiles.size();
       return err;
     }},
    {"getAuthorFeed", "feed",
     [](const std::string& body, std::size_t& kept) {
       FeedPage page;
       ds::Micros previous = 0;
       std::string err = parse_author_feed(body, "did:plc:me", previous, page);
       kept = page.posts.size();
       return err;
     }},
    {"getPosts", "posts",
     [](const std::string& body, std::size_t& kept) {
       PostsAnswer answer;
       std::string err = parse_get_posts(body, 0, answer);
       kept = answer.posts.size();
       return err;
     }},
};

std::string post_view(const std::string& author, const std::string& rkey, const std::string& extra = "") {
  return R"({"uri":"at://)" + author + "/app.bsky.feed.post/" + rkey + R"(","cid":"bafy","author":{"did":")" + author +
         R"(","handle":"a.test"},"record":{"$type":"app.bsky.feed.post","createdAt":"2026-11-20T10:00:00.000Z",)"
         R"("text":"t"},"indexedAt":"2026-11-20T10:00:01.000Z","likeCount":3,"replyCount":2,"quoteCount":1,)"
         R"("repostCount":4)" +
         extra + "}";
}

}  // namespace

TEST_CASE("appview: every endpoint refuses a body that is not an answer, as a whole", "[appview]") {
  for (const auto& ep : endpoints) {
    const std::string key = ep.list_key;
    struct Case {
      const char* name;
      std::string body;
      std::string error_contains;
    };
    const Case cases[] = {
        {"empty", "", "unparsable"},
        {"truncated", "{\"" + key + "\":[{\"did\":\"did:plc:a\",\"uri\":\"at://x\"", "unparsable"},
        {"not an object", "[1,2]", "not a JSON object"},
        {"an empty array", "[]", "not a JSON object"},
        {"no list", "{\"cursor\":\"abc\"}", "no \"" + key + "\" array"},
        {"empty object", "{}", "no \"" + key + "\" array"},
        {"list not an array", "{\"" + key + "\":{\"post\":{}}}", "no \"" + key + "\" array"},
        {"error object", R"({"error":"InvalidRequest","message":"Profile not found"})",
         "InvalidRequest: Profile not found"},
        {"error object, other message", R"({"error":"InvalidRequest","message":"too many actors"})",
         "InvalidRequest: too many actors"},
        {"invalid UTF-8", "{\"" + key + "\":[{\"did\":\"did:plc:a\",\"handle\":\"\xff\"}]}", "unparsable"},
        {"nested too deep", std::string(5000, '[') + std::string(5000, ']'), "unparsable"},
        {"HTML error page", "<html>502 Bad Gateway</html>", "unparsable"},
    };
    for (const auto& c : cases) {
      INFO(ep.name << ": " << c.name);
      std::size_t kept = 99;
      const std::string err = ep.parse(c.body, kept);
      CHECK_THAT(err, Catch::Contains(c.error_contains));
      if (std::string(c.name) == "no list" || std::string(c.name) == "empty")
        CHECK_THAT(err, Catch::Contains(ep.name));  // the log says which endpoint answered so
      CHECK(kept == 0);
    }
  }
}

TEST_CASE("getPosts: posts in response order, each with its author's did, counts and times", "[appview]") {
  const std::string body = "{\"posts\":[" + post_view("did:plc:b", "2") + "," + post_view("did:plc:a", "1") + "]}";
  PostsAnswer answer;
  REQUIRE(parse_get_posts(body, ts("2026-12-01T00:00:00Z"), answer).empty());
  REQUIRE(answer.posts.size() == 2);
  CHECK(answer.posts[0].uri == "at://did:plc:b/app.bsky.feed.post/2");
  CHECK(answer.posts[0].did == "did:plc:b");
  CHECK(answer.posts[1].did == "did:plc:a");
  const auto& p = answer.posts[1];
  CHECK(p.likes == 3);
  CHECK(p.replies == 2);
  CHECK(p.quotes == 1);
  CHECK(p.reposts == 4);
  CHECK(p.created_at == ts("2026-11-20T10:00:00Z"));
  CHECK(p.sort_at == ts("2026-11-20T10:00:00Z"));  // least(createdAt, indexedAt)
  CHECK(answer.bad_items == 0);
}

TEST_CASE("getPosts: unusable post views are dropped and counted, the rest kept", "[appview]") {
  const std::string no_author = R"({"uri":"at://did:plc:a/app.bsky.feed.post/9","likeCount":1})";
  // A uri in another repository than its author's is no post of that author.
  const std::string foreign = post_view("did:plc:a", "8");
  std::string foreign_view = foreign;
  foreign_view.replace(foreign_view.find("at://did:plc:a"), 14, "at://did:plc:z");
  const std::string body = "{\"posts\":[7," + no_author + "," + foreign_view + "," + post_view("did:plc:a", "1") + "]}";
  PostsAnswer answer;
  REQUIRE(parse_get_posts(body, 0, answer).empty());
  REQUIRE(answer.posts.size() == 1);
  CHECK(answer.posts[0].uri == "at://did:plc:a/app.bsky.feed.post/1");
  CHECK(answer.bad_items == 3);
  CHECK(answer.first_problem == "post view is not an object");
}

TEST_CASE("getPosts: a post with no usable time takes the caller's clock, counts saturate", "[appview]") {
  const std::string view =
      R"({"uri":"at://did:plc:a/app.bsky.feed.post/1","author":{"did":"did:plc:a"},"record":{"createdAt":"soon"},)"
      R"("likeCount":"12","replyCount":-3,"quoteCount":1e30,"repostCount":null})";
  PostsAnswer answer;
  const ds::Micros now = ts("2026-12-02T06:00:00Z");
  REQUIRE(parse_get_posts("{\"posts\":[" + view + "]}", now, answer).empty());
  REQUIRE(answer.posts.size() == 1);
  CHECK(answer.posts[0].created_at == now);
  CHECK(answer.posts[0].sort_at == now);
  CHECK(answer.time_fallbacks == 1);
  CHECK(answer.posts[0].likes == 12);
  CHECK(answer.posts[0].replies == 0);
  CHECK(answer.posts[0].quotes == max_count);
  CHECK(answer.posts[0].reposts == 0);
}

TEST_CASE("appview: URLs name the endpoint once, with every value encoded", "[appview]") {
  CHECK(xrpc_url("https://x.test//", "app.bsky.feed.getPosts") == "https://x.test/xrpc/app.bsky.feed.getPosts");
  CHECK(get_posts_url("https://x.test", {"at://did:plc:a/app.bsky.feed.post/1", "at://did:plc:b/x/2"}) ==
        "https://x.test/xrpc/app.bsky.feed.getPosts?uris=at%3A%2F%2Fdid%3Aplc%3Aa%2Fapp.bsky.feed.post%2F1"
        "&uris=at%3A%2F%2Fdid%3Aplc%3Ab%2Fx%2F2");
  // getAuthorFeed's limit is 1..100 by its lexicon.
  CHECK_THAT(author_feed_url("https://x.test", "a", 1000, std::nullopt), Catch::EndsWith("&limit=100"));
  CHECK_THAT(author_feed_url("https://x.test", "a", 0, std::nullopt), Catch::EndsWith("&limit=1"));
}

TEST_CASE("appview: an answer is usable, gone, worth another attempt, or a failure", "[appview]") {
  ds::HttpResult r;
  r.status = 200;
  r.attempt = 1;
  CHECK(classify(r, "") == Outcome::usable);
  CHECK(classify(r, "unparsable getPosts response (TAPE_ERROR)") == Outcome::retry);
  r.last_attempt = true;
  r.attempt = 4;
  CHECK(classify(r, "unparsable getPosts response (TAPE_ERROR)") == Outcome::fail);
  CHECK(failure_reason(r, "unparsable") == "unparsable (after 4 attempts)");

  ds::HttpResult gone;
  gone.status = 400;
  gone.body = R"({"error":"InvalidRequest","message":"Profile not found"})";
  CHECK(classify(gone, "") == Outcome::gone);
  CHECK(says_account_gone(gone));

  ds::HttpResult bad = gone;
  bad.body = R"({"error":"InvalidRequest","message":"limit must be <= 100"})";
  CHECK(classify(bad, "") == Outcome::fail);
  ds::HttpResult down;
  down.status = 503;
  down.body = "busy";
  down.attempt = 3;
  CHECK(classify(down, "") == Outcome::fail);
  CHECK_THAT(failure_reason(down, ""), Catch::StartsWith("HTTP 503") && Catch::EndsWith("(after 3 attempts)"));
}
