// Tests for the getAuthorFeed parser: the real 2025-05-19 capture (expected values derived from
// the JSON in the test), then hostile and odd payloads, table-driven.
#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <simdjson.h>

#include "ds/appview/get_author_feed.hpp"
#include "ds/appview/lexicon.hpp"
#include "ds/clock.hpp"

#include "fetch_stage_fixture.hpp"

using ds::appview::FeedPage;
using ds::appview::parse_author_feed;

namespace {

const std::string me = "did:plc:wpe35pganb6d4pg4ekmfy6u5";  // the capture's actor

using fetch_fixture::read_fixture;

// The capture's timestamps are all "YYYY-MM-DDTHH:MM:SS.fffZ" or ".ffffffZ": padded to six
// fractional digits they order correctly as strings, which gives least() without ds::clock.
std::string sortable(const std::string& t) {
  if (t.size() == 24 && t.back() == 'Z') return t.substr(0, 23) + "000Z";
  return t;
}

ds::Micros ts(const char* s) { return *ds::parse_timestamp(s); }

// One own post by did:plc:me with the given record.createdAt and indexedAt JSON values.
std::string own_item(const std::string& rkey, const std::string& created_json, const std::string& indexed_json,
                     const std::string& counts = R"("likeCount":1,"replyCount":2,"quoteCount":3,"repostCount":4)") {
  return R"({"post":{"uri":"at://did:plc:me/app.bsky.feed.post/)" + rkey +
         R"(","author":{"did":"did:plc:me","handle":"me.test"},"record":{"$type":"app.bsky.feed.post","createdAt":)" +
         created_json + R"(,"text":"hi"},)" + counts + R"(,"indexedAt":)" + indexed_json + "}}";
}

std::string page_of(const std::vector<std::string>& items, const std::string& cursor_json = "") {
  std::string b = "{\"feed\":[";
  for (std::size_t i = 0; i < items.size(); ++i) b += (i ? "," : "") + items[i];
  b += "]";
  if (!cursor_json.empty()) b += ",\"cursor\":" + cursor_json;
  return b + "}";
}

}  // namespace

TEST_CASE("getAuthorFeed capture: own posts, cursor, times and counts", "[feed_parser]") {
  const std::string body = read_fixture("getAuthorFeed.2025-05-19.json");

  // Independent expectations straight from the JSON.
  simdjson::dom::parser dom;
  simdjson::dom::element doc = dom.parse(body);
  struct Expected {
    std::string uri, created, sort;
    std::int64_t likes, replies, quotes, reposts;
  };
  std::vector<Expected> expected;
  std::size_t items = 0, others = 0;
  for (simdjson::dom::element item : doc["feed"].get_array()) {
    ++items;
    simdjson::dom::element post = item["post"];
    if (std::string(post["author"]["did"].get_string().value()) != me) {
      ++others;
      continue;
    }
    const std::string created(post["record"]["createdAt"].get_string().value());
    const std::string indexed(post["indexedAt"].get_string().value());
    expected.push_back({std::string(post["uri"].get_string().value()), created,
                        sortable(created) < sortable(indexed) ? created : indexed,
                        post["likeCount"].get_int64().value(), post["replyCount"].get_int64().value(),
                        post["quoteCount"].get_int64().value(), post["repostCount"].get_int64().value()});
  }
  REQUIRE(items == 50);
  REQUIRE(others == 7);
  REQUIRE(expected.size() == 43);

  FeedPage page;
  ds::Micros previous = ts("2025-05-19T17:41:26Z");
  REQUIRE(parse_author_feed(body, me, previous, page).empty());
  CHECK(page.items == 50);
  CHECK(page.others == 7);
  CHECK(page.bad_items == 0);
  CHECK(page.created_fallbacks == 0);
  CHECK(page.time_fallbacks == 0);
  REQUIRE(page.cursor.has_value());
  CHECK(*page.cursor == std::string(doc["cursor"].get_string().value()));
  CHECK(*page.cursor == "2024-03-21T23:36:16.378Z");
  REQUIRE(page.posts.size() == expected.size());

  int sorted_by_indexed = 0;
  bool saw_microseconds = false;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto& p = page.posts[i];
    const auto& e = expected[i];
    INFO(e.uri);
    CHECK(p.uri == e.uri);
    CHECK(p.did == me);
    // format_timestamp prints milliseconds, or microseconds when they are not zero, which is
    // exactly how the capture writes them: a round trip proves the value.
    CHECK(ds::format_timestamp(p.created_at) == e.created);
    CHECK(ds::format_timestamp(p.sort_at) == e.sort);
    CHECK(p.likes == e.likes);
    CHECK(p.replies == e.replies);
    CHECK(p.quotes == e.quotes);
    CHECK(p.reposts == e.reposts);
    if (e.sort != e.created) ++sorted_by_indexed;
    if (e.created.size() == 27) {
      saw_microseconds = true;
      CHECK(p.created_at % 1000 != 0);  // the microseconds were kept, not rounded away
    }
  }
  // Seven clock-skewed posts (createdAt a few seconds after indexedAt), plus the one whose
  // microsecond createdAt is 717 us after its millisecond indexedAt.
  CHECK(sorted_by_indexed == 8);
  CHECK(saw_microseconds);
  CHECK(previous == page.posts.back().sort_at);
  // The cursor is the sort time of the page's last item.
  CHECK(ds::format_timestamp(page.posts.back().sort_at) <= *page.cursor);
}

// Bodies that are not a page at all: tests/unit/appview_test.cpp, for every endpoint. What only
// a feed page can get wrong, its cursor, is here.
TEST_CASE("getAuthorFeed: a cursor that cannot go back into a URL fails the page", "[feed_parser]") {
  const std::pair<const char*, const char*> cases[] = {
      {"{\"feed\":[],\"cursor\":5}", "cursor is not a string"},
      {"{\"feed\":[],\"cursor\":\"a\\nb\"}", "cursor is not a usable string"},
  };
  for (const auto& [body, error] : cases) {
    INFO(body);
    FeedPage page;
    ds::Micros previous = 0;
    CHECK_THAT(parse_author_feed(body, "did:plc:me", previous, page), Catch::Contains(error));
    CHECK(page.posts.empty());
  }
}

TEST_CASE("getAuthorFeed: the cursor", "[feed_parser]") {
  struct Case {
    const char* cursor_json;  // "" = no cursor key
    bool has_cursor;
    const char* value;
  };
  const Case cases[] = {
      {"", false, ""},
      {"null", false, ""},
      {"\"\"", false, ""},  // an empty cursor would restart from the top: treated as the end
      {"\"2024-03-21T23:36:16.378Z\"", true, "2024-03-21T23:36:16.378Z"},
      {"\"opaque::token/+=\"", true, "opaque::token/+="},
  };
  for (const auto& c : cases) {
    INFO("cursor " << c.cursor_json);
    FeedPage page;
    ds::Micros previous = 0;
    REQUIRE(parse_author_feed(page_of({}, c.cursor_json), "did:plc:me", previous, page).empty());
    CHECK(page.cursor.has_value() == c.has_cursor);
    if (c.has_cursor) CHECK(*page.cursor == c.value);
  }
}

TEST_CASE("getAuthorFeed: the time a cursor stands for", "[feed_parser]") {
  using ds::appview::author_feed_cursor_time;
  // Bluesky's AppView: sort time in epoch milliseconds, "__", the last item's CID.
  CHECK(author_feed_cursor_time("1796273760000__bafyreib5kvmux3zw7u6b2eyrtzhgw5mc7l76w2hldjm5vgc3ie77hsr2pi") ==
        ds::parse_timestamp("2026-12-03T04:56:00Z"));
  CHECK(author_feed_cursor_time("0__x") == ds::Micros{0});
  CHECK(author_feed_cursor_time("2024-03-21T23:36:16.378Z") == ds::parse_timestamp("2024-03-21T23:36:16.378Z"));
  for (const char* opaque : {"", "__bafy", "12a__bafy", "1796273760000__", "1234567890123456__bafy", "-5__bafy",
                             "opaque::token/+=", "yesterday"}) {
    INFO(opaque);
    CHECK_FALSE(author_feed_cursor_time(opaque).has_value());
  }
}

TEST_CASE("getAuthorFeed: hostile and odd items", "[feed_parser]") {
  enum Kind { own, other, bad };
  struct Case {
    const char* name;
    std::string item;
    Kind kind;
  };
  const Case cases[] = {
      {"a number", "42", bad},
      {"null", "null", bad},
      {"empty object", "{}", bad},
      {"post null", R"({"post":null})", bad},
      {"post a string", R"({"post":"x"})", bad},
      {"notFoundPost", R"({"post":{"$type":"app.bsky.feed.defs#notFoundPost","uri":"at://did:plc:me/app.bsky.feed.post/1","notFound":true}})", bad},
      {"blockedPost by someone else", R"({"post":{"$type":"app.bsky.feed.defs#blockedPost","uri":"at://did:plc:x/app.bsky.feed.post/1","blocked":true,"author":{"did":"did:plc:x"}}})", other},
      {"author without did", R"({"post":{"uri":"at://did:plc:me/app.bsky.feed.post/1","author":{"handle":"me.test"}}})", bad},
      {"author did a number", R"({"post":{"uri":"at://did:plc:me/app.bsky.feed.post/1","author":{"did":7}}})", bad},
      {"repost of someone else", R"({"post":{"uri":"at://did:plc:x/app.bsky.feed.post/1","author":{"did":"did:plc:x"},"indexedAt":"2025-01-01T00:00:00Z"},"reason":{"$type":"app.bsky.feed.defs#reasonRepost","by":{"did":"did:plc:me"}}})", other},
      {"own post without uri", R"({"post":{"author":{"did":"did:plc:me"},"indexedAt":"2025-01-01T00:00:00Z"}})", bad},
      {"own post, uri a number", R"({"post":{"uri":9,"author":{"did":"did:plc:me"}}})", bad},
      {"own post, uri in another repo", R"({"post":{"uri":"at://did:plc:x/app.bsky.feed.post/1","author":{"did":"did:plc:me"}}})", bad},
      {"own post, uri prefix trick", R"({"post":{"uri":"at://did:plc:mex/app.bsky.feed.post/1","author":{"did":"did:plc:me"}}})", bad},
      {"own post, uri too long", R"({"post":{"uri":"at://did:plc:me/)" + std::string(600, 'a') + R"(","author":{"did":"did:plc:me"}}})", bad},
      {"own post with a notFoundPost parent", R"({"post":{"uri":"at://did:plc:me/app.bsky.feed.post/2","author":{"did":"did:plc:me"},"record":{"createdAt":"2025-01-01T00:00:00Z"},"indexedAt":"2025-01-01T00:00:01Z"},"reply":{"parent":{"$type":"app.bsky.feed.defs#notFoundPost","uri":"at://did:plc:y/app.bsky.feed.post/z","notFound":true},"root":{"$type":"app.bsky.feed.defs#blockedPost"}}})", own},
      {"own repost of own post", R"({"post":{"uri":"at://did:plc:me/app.bsky.feed.post/3","author":{"did":"did:plc:me"},"indexedAt":"2025-01-01T00:00:01Z"},"reason":{"$type":"app.bsky.feed.defs#reasonRepost"}})", own},
      {"pinned", R"({"post":{"uri":"at://did:plc:me/app.bsky.feed.post/4","author":{"did":"did:plc:me"},"indexedAt":"2025-01-01T00:00:01Z"},"reason":{"$type":"app.bsky.feed.defs#reasonPin"}})", own},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    FeedPage page;
    ds::Micros previous = ts("2025-06-01T00:00:00Z");
    // Each hostile item sits between two good ones, which must survive it.
    const std::string body = page_of({own_item("a", "\"2025-02-01T00:00:00Z\"", "\"2025-02-01T00:00:00Z\""), c.item,
                                      own_item("b", "\"2024-12-01T00:00:00Z\"", "\"2024-12-01T00:00:00Z\"")},
                                     "\"c\"");
    REQUIRE(parse_author_feed(body, "did:plc:me", previous, page).empty());
    CHECK(page.items == 3);
    CHECK(page.posts.size() == (c.kind == own ? 3u : 2u));
    CHECK(page.others == (c.kind == other ? 1 : 0));
    CHECK(page.bad_items == (c.kind == bad ? 1 : 0));
    if (c.kind == bad) CHECK_FALSE(page.first_problem.empty());
    CHECK(page.posts.front().uri == "at://did:plc:me/app.bsky.feed.post/a");
    CHECK(page.posts.back().uri == "at://did:plc:me/app.bsky.feed.post/b");
  }
}

TEST_CASE("getAuthorFeed: timestamps in every shape, and fallbacks", "[feed_parser]") {
  struct Case {
    const char* name;
    const char* created;  // JSON value of record.createdAt
    const char* indexed;  // JSON value of indexedAt
    const char* want_created;
    const char* want_sort;
  };
  // previous sortAt seeded by the caller (the run clock for a first page)
  const char* previous_seed = "2026-11-29T06:00:00Z";
  const Case cases[] = {
      {"plain", "\"2025-01-02T03:04:05.678Z\"", "\"2025-01-02T03:04:06.000Z\"", "2025-01-02T03:04:05.678Z", "2025-01-02T03:04:05.678Z"},
      {"clock skew: created after indexed", "\"2025-01-02T03:04:09Z\"", "\"2025-01-02T03:04:06Z\"", "2025-01-02T03:04:09Z", "2025-01-02T03:04:06Z"},
      {"microseconds", "\"2024-06-05T21:01:56.189717Z\"", "\"2024-06-05T21:01:57Z\"", "2024-06-05T21:01:56.189717Z", "2024-06-05T21:01:56.189717Z"},
      {"+00:00 offset", "\"2025-01-02T03:04:05+00:00\"", "\"2025-01-03T00:00:00Z\"", "2025-01-02T03:04:05Z", "2025-01-02T03:04:05Z"},
      {"+02:00 offset", "\"2025-01-02T03:04:05+02:00\"", "\"2025-01-03T00:00:00Z\"", "2025-01-02T01:04:05Z", "2025-01-02T01:04:05Z"},
      {"no timezone", "\"2025-01-02T03:04:05\"", "\"2025-01-03T00:00:00Z\"", "2025-01-02T03:04:05Z", "2025-01-02T03:04:05Z"},
      {"far future", "\"2099-01-01T00:00:00Z\"", "\"2025-01-03T00:00:00Z\"", "2099-01-01T00:00:00Z", "2025-01-03T00:00:00Z"},
      {"year 1", "\"0001-01-01T00:00:00Z\"", "\"2025-01-03T00:00:00Z\"", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"},
      {"epoch", "\"1970-01-01T00:00:00Z\"", "\"2025-01-03T00:00:00Z\"", "1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"},
      {"createdAt garbage", "\"yesterday\"", "\"2025-01-03T00:00:00Z\"", "2025-01-03T00:00:00Z", "2025-01-03T00:00:00Z"},
      {"createdAt impossible date", "\"2024-02-30T00:00:00Z\"", "\"2025-01-03T00:00:00Z\"", "2025-01-03T00:00:00Z", "2025-01-03T00:00:00Z"},
      {"createdAt a number", "1700000000", "\"2025-01-03T00:00:00Z\"", "2025-01-03T00:00:00Z", "2025-01-03T00:00:00Z"},
      {"createdAt null", "null", "\"2025-01-03T00:00:00Z\"", "2025-01-03T00:00:00Z", "2025-01-03T00:00:00Z"},
      {"indexedAt garbage", "\"2025-01-02T03:04:05Z\"", "\"soon\"", "2025-01-02T03:04:05Z", "2025-01-02T03:04:05Z"},
      {"neither parses", "\"x\"", "\"y\"", previous_seed, previous_seed},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    FeedPage page;
    ds::Micros previous = ts(previous_seed);
    REQUIRE(parse_author_feed(page_of({own_item("a", c.created, c.indexed)}), "did:plc:me", previous, page).empty());
    REQUIRE(page.posts.size() == 1);  // never dropped over a timestamp
    CHECK(ds::format_timestamp(page.posts[0].created_at) == ds::format_timestamp(ts(c.want_created)));
    CHECK(ds::format_timestamp(page.posts[0].sort_at) == ds::format_timestamp(ts(c.want_sort)));
    CHECK(previous == page.posts[0].sort_at);
  }
}

TEST_CASE("getAuthorFeed: a post with no usable time takes the previous post's sortAt", "[feed_parser]") {
  FeedPage page;
  ds::Micros previous = ts("2026-01-01T00:00:00Z");
  REQUIRE(parse_author_feed(page_of({own_item("a", "\"2025-03-01T00:00:00Z\"", "\"2025-03-01T00:00:00Z\""),
                                     own_item("b", "\"bad\"", "null"),
                                     own_item("c", "\"2025-02-01T00:00:00Z\"", "\"2025-02-01T00:00:00Z\"")}),
                            "did:plc:me", previous, page)
              .empty());
  REQUIRE(page.posts.size() == 3);
  CHECK(page.posts[1].sort_at == ts("2025-03-01T00:00:00Z"));
  CHECK(page.posts[1].created_at == ts("2025-03-01T00:00:00Z"));
  CHECK(page.time_fallbacks == 1);
  CHECK(previous == ts("2025-02-01T00:00:00Z"));

  // Across pages: the next page's first timeless post uses the last post of this one.
  FeedPage next;
  REQUIRE(parse_author_feed(page_of({own_item("d", "null", "null")}), "did:plc:me", previous, next).empty());
  CHECK(next.posts[0].sort_at == ts("2025-02-01T00:00:00Z"));
}

TEST_CASE("getAuthorFeed: counts are clamped to [0, 2^31-1]", "[feed_parser]") {
  struct Case {
    const char* counts;
    std::int64_t likes, replies, quotes, reposts;
  };
  const Case cases[] = {
      {R"("likeCount":5,"replyCount":6,"quoteCount":7,"repostCount":8)", 5, 6, 7, 8},
      {R"("likeCount":5)", 5, 0, 0, 0},  // older responses have no quoteCount; missing = 0
      {R"("likeCount":"5","replyCount":"x","quoteCount":"-1","repostCount":" 8 ")", 5, 0, 0, 8},
      {R"("likeCount":-5,"replyCount":3000000000,"quoteCount":1e300,"repostCount":18446744073709551615)", 0, 2147483647, 2147483647, 2147483647},
      {R"("likeCount":null,"replyCount":true,"quoteCount":[],"repostCount":{})", 0, 0, 0, 0},
      {R"("likeCount":2147483647,"replyCount":2.9,"quoteCount":0,"repostCount":-0)", 2147483647, 2, 0, 0},
  };
  for (const auto& c : cases) {
    INFO(c.counts);
    FeedPage page;
    ds::Micros previous = 0;
    REQUIRE(parse_author_feed(page_of({own_item("a", "\"2025-01-01T00:00:00Z\"", "\"2025-01-01T00:00:00Z\"", c.counts)}),
                              "did:plc:me", previous, page)
                .empty());
    REQUIRE(page.posts.size() == 1);
    CHECK(page.posts[0].likes == c.likes);
    CHECK(page.posts[0].replies == c.replies);
    CHECK(page.posts[0].quotes == c.quotes);
    CHECK(page.posts[0].reposts == c.reposts);
  }
}
