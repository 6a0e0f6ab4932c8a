// Tests for the fake AppView's app.bsky.feed.getPosts over loopback HTTP: request order, silent
// omissions, the lexicon's 400s, views identical to the feed's, faults, counters and served files.
#include <catch2/catch.hpp>
#include <httplib.h>
#include <simdjson.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "dataset.hpp"
#include "fake_appview_fixture.hpp"
#include "server.hpp"

using namespace fake_test;
using ds::fake::FeedItem;

namespace {

const std::string kGetPosts = "/xrpc/app.bsky.feed.getPosts";

httplib::Params uris_param(const std::vector<std::string>& uris) {
  httplib::Params p;
  for (const auto& u : uris) p.emplace("uris", u);
  return p;
}

std::vector<std::string> answered_uris(const std::string& body) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc = parser.parse(body);
  std::vector<std::string> out;
  for (simdjson::dom::element p : doc["posts"].get_array()) out.emplace_back(std::string_view(p["uri"]));
  return out;
}

std::vector<std::string> own_uris(const std::vector<FeedItem>& feed) {
  std::vector<std::string> out;
  for (const FeedItem& i : feed)
    if (i.is_own_post()) out.push_back(i.post.uri);
  return out;
}

}  // namespace

TEST_CASE("getPosts answers in request order with the feed's view of each post, byte for byte", "[fake][http][getposts]") {
  Served s(2);
  httplib::Client cli("127.0.0.1", s.port);
  cli.set_keep_alive(true);
  const auto& ds = s.data();
  // A feed with replies (whose views carry record.reply) and reposts of other accounts' posts.
  const int user = first_user_where(ds, [&](const ds::fake::User& u) {
    const auto f = ds.author_feed(u.index, 2);
    const auto n = std::min<std::size_t>(f.size(), 100);
    const auto reposts = std::count_if(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(n),
                                       [](const FeedItem& i) { return i.is_repost_of_other(); });
    const auto replies = std::count_if(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(n),
                                       [](const FeedItem& i) { return i.post.reply.has_value(); });
    return u.registered && u.index > 20 && n >= 40 && reposts >= 2 && replies >= 2;
  });
  const auto feed_page = get(cli, "/xrpc/app.bsky.feed.getAuthorFeed",
                             {{"actor", ds.users()[static_cast<std::size_t>(user)].did}, {"limit", "100"}});
  REQUIRE(feed_page->status == 200);
  const auto truth = ds.author_feed(user, 2);

  // One post per request: the answer is {"posts":[VIEW]} and VIEW must stand in the feed page
  // exactly as "post":VIEW (reposted posts of other accounts included).
  int compared = 0;
  for (std::size_t i = 0; i < 40; ++i) {
    const std::string& uri = truth[i].post.uri;
    const auto res = get(cli, kGetPosts, uris_param({uri}));
    REQUIRE(res->status == 200);
    const std::string prefix = "{\"posts\":[";
    REQUIRE(res->body.rfind(prefix, 0) == 0);
    REQUIRE(res->body.size() > prefix.size() + 2);
    REQUIRE(res->body.substr(res->body.size() - 2) == "]}");
    const std::string view = res->body.substr(prefix.size(), res->body.size() - prefix.size() - 2);
    INFO(uri);
    const bool in_feed = feed_page->body.find("\"post\":" + view + ",") != std::string::npos ||
                         feed_page->body.find("\"post\":" + view + "}") != std::string::npos;
    CHECK(in_feed);
    ++compared;
  }
  CHECK(compared == 40);

  // Many at once, in an order of our choosing: the answer keeps it.
  std::vector<std::string> asked;
  for (std::size_t i = 0; i < 25; ++i) asked.push_back(truth[(i * 7) % 40].post.uri);
  std::sort(asked.begin(), asked.end());
  asked.erase(std::unique(asked.begin(), asked.end()), asked.end());
  std::reverse(asked.begin(), asked.end());
  const auto res = get(cli, kGetPosts, uris_param(asked));
  REQUIRE(res->status == 200);
  CHECK(answered_uris(res->body) == asked);
}

TEST_CASE("getPosts leaves out deleted, unknown, not yet indexed and gone posts, and repeats", "[fake][http][getposts]") {
  Served s(1);
  httplib::Client cli("127.0.0.1", s.port);
  const auto& ds = s.data();
  // Account 1 deletes posts on day 2; account 9 is gone from day 2.
  const auto deleted = ds.deleted_on(1, 2);
  REQUIRE_FALSE(deleted.empty());
  const std::string deleted_uri = deleted.front().uri;
  std::set<std::string> deleted_uris;
  for (const auto& p : deleted) deleted_uris.insert(p.uri);
  const auto day1 = own_uris(ds.author_feed(1, 1));
  std::string kept;
  for (const auto& u : day1)
    if (!deleted_uris.count(u)) {
      kept = u;
      break;
    }
  REQUIRE_FALSE(kept.empty());
  REQUIRE_FALSE(deleted_uris.count(day1.back()));
  // A post of day 2 asked for on day 1 does not exist yet.
  std::string tomorrow;
  for (const FeedItem& i : ds.author_feed(1, 2))
    if (i.is_own_post() && i.post.created_day == 2) {
      tomorrow = i.post.uri;
      break;
    }
  REQUIRE_FALSE(tomorrow.empty());
  const auto gone_uris = own_uris(ds.author_feed(9, 1));
  REQUIRE_FALSE(gone_uris.empty());
  const std::string gone = gone_uris.front();
  // Valid at-uris that name no post: a changed record key, an unknown DID, another collection,
  // a handle as authority, no collection at all.
  std::string altered = kept;
  altered.back() = altered.back() == 'a' ? 'b' : 'a';
  const std::string did1 = ds.users()[1].did;
  const std::string rkey = kept.substr(kept.rfind('/') + 1);
  const std::vector<std::string> nothing = {altered, "at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/app.bsky.feed.post/" + rkey,
                                            "at://" + did1 + "/app.bsky.feed.like/" + rkey,
                                            "at://" + ds.handle_at(1, 1) + "/app.bsky.feed.post/" + rkey,
                                            "at://" + did1};

  std::vector<std::string> ask = {deleted_uri, tomorrow, kept, gone};
  ask.insert(ask.end(), nothing.begin(), nothing.end());
  ask.push_back(kept);  // a repeat is answered once
  ask.push_back(day1.back());

  auto res = get(cli, kGetPosts, uris_param(ask));
  REQUIRE(res->status == 200);
  CHECK(answered_uris(res->body) == std::vector<std::string>{deleted_uri, kept, gone, day1.back()});

  REQUIRE(cli.Post("/_fake/day?day=2")->status == 200);
  res = get(cli, kGetPosts, uris_param(ask));
  REQUIRE(res->status == 200);
  CHECK(answered_uris(res->body) == std::vector<std::string>{tomorrow, kept, day1.back()});
  // Every URI of the day-2 feed is found, none of the deleted ones.
  for (const auto& p : deleted) CHECK_FALSE(ds.find_post(p.uri, 2));
  for (const auto& u : own_uris(ds.author_feed(1, 2))) CHECK(ds.find_post(u, 2));
}

// The real AppView drops a post whose createdAt is no atproto datetime (docs/real-appview.md,
// finding 6): over HTTP, getPosts leaves it out, no feed page carries it as a post, and a reply
// to it shows its parent as notFoundPost.
TEST_CASE("getPosts and getAuthorFeed leave out posts the AppView never indexed", "[fake][http][getposts]") {
  Served s(1);
  httplib::Client cli("127.0.0.1", s.port);
  cli.set_keep_alive(true);
  const auto& ds = s.data();
  std::vector<std::string> unindexed;
  for (const auto& p : ds.unindexed_posts(0, 1))
    if (p.created_day == 1) unindexed.push_back(p.uri);  // account 0's showcase: one of each kind
  REQUIRE(unindexed.size() >= 3);
  const auto indexed = own_uris(ds.author_feed(0, 1));
  std::vector<std::string> ask = {indexed[0], unindexed[0], indexed[1]};
  ask.insert(ask.end(), unindexed.begin() + 1, unindexed.end());
  auto res = get(cli, kGetPosts, uris_param(ask));
  REQUIRE(res->status == 200);
  CHECK(answered_uris(res->body) == std::vector<std::string>{indexed[0], indexed[1]});

  // The feed's first page holds the day's posts (the showcase among them), never these as posts.
  res = get(cli, "/xrpc/app.bsky.feed.getAuthorFeed", {{"actor", ds.users()[0].did}, {"limit", "100"}});
  REQUIRE(res->status == 200);
  CHECK(res->body.find("\"post\":{\"uri\":\"" + indexed[0] + "\"") != std::string::npos);
  for (const auto& uri : unindexed) CHECK(res->body.find("\"post\":{\"uri\":\"" + uri + "\"") == std::string::npos);

  // A self-reply to such a post: its parent is not found.
  std::set<std::string> all_unindexed;
  for (const auto& u : ds.users())
    for (const auto& p : ds.unindexed_posts(u.index, 1)) all_unindexed.insert(p.uri);
  std::optional<std::pair<int, std::string>> reply;  // (account, parent URI)
  for (const auto& u : ds.users()) {
    if (reply || !ds.exists(u.index, 1)) continue;
    const auto feed = ds.author_feed(u.index, 1);
    for (std::size_t i = 0; i < std::min<std::size_t>(feed.size(), 100) && !reply; ++i)
      if (feed[i].post.reply && all_unindexed.count(feed[i].post.reply->parent_uri))
        reply = std::make_pair(u.index, feed[i].post.reply->parent_uri);
  }
  REQUIRE(reply);
  res = get(cli, "/xrpc/app.bsky.feed.getAuthorFeed", {{"actor", ds.users()[static_cast<std::size_t>(reply->first)].did}, {"limit", "100"}});
  REQUIRE(res->status == 200);
  CHECK(res->body.find("\"parent\":{\"$type\":\"app.bsky.feed.defs#notFoundPost\",\"uri\":\"" + reply->second +
                       "\",\"notFound\":true}") != std::string::npos);
}

TEST_CASE("getPosts: 0 or 26 URIs and malformed at-uris get 400 InvalidRequest", "[fake][http][getposts]") {
  Served s(1);
  httplib::Client cli("127.0.0.1", s.port);
  const auto& ds = s.data();
  const auto uris = own_uris(ds.author_feed(2, 1));
  REQUIRE(uris.size() >= 26);

  auto res = get(cli, kGetPosts, {});
  REQUIRE(res->status == 400);
  CHECK(res->body == R"({"error":"InvalidRequest","message":"Error: Params must have the property \"uris\""})");
  const std::vector<std::string> many(uris.begin(), uris.begin() + 26);
  res = get(cli, kGetPosts, uris_param(many));
  REQUIRE(res->status == 400);
  CHECK(res->body == R"({"error":"InvalidRequest","message":"Error: uris must not have more than 25 elements"})");
  // The count is checked before the items, and repeats count: 26 copies of one URI are too many.
  expect_invalid(get(cli, kGetPosts, uris_param(std::vector<std::string>(26, uris[0]))), "more than 25");
  std::vector<std::string> bad26 = many;
  bad26[3] = "nonsense";
  expect_invalid(get(cli, kGetPosts, uris_param(bad26)), "more than 25");

  const std::vector<std::string> max(uris.begin(), uris.begin() + 25);
  res = get(cli, kGetPosts, uris_param(max));
  REQUIRE(res->status == 200);
  CHECK(answered_uris(res->body) == max);

  for (const std::string& bad : {std::string("nonsense"), std::string(""), std::string("https://bsky.app/x"),
                                 std::string("at://"), std::string("at://did:plc:x/"),
                                 std::string("at://did:plc:x/app.bsky.feed.post/"),
                                 std::string("at://did:plc:x/app.bsky.feed.post/a/b"),
                                 std::string("at://did:PLC:x/app.bsky.feed.post/a"), std::string("at://nodot/app.bsky.feed.post/a"),
                                 std::string("at://did:plc:x/notansid/a"), std::string("at://did:plc:x/app.bsky.feed.post/a b"),
                                 std::string("at://did:plc:x/app.bsky.feed.post/\xc3\xa9"), uris[0] + "#nofragment"}) {
    INFO(bad);
    res = get(cli, kGetPosts, uris_param({uris[0], bad}));
    REQUIRE(res->status == 400);
    CHECK(res->body == R"({"error":"InvalidRequest","message":"Error: uris/1 must be a valid at-uri"})");
  }
  // A fragment that starts with a slash is a valid at-uri; it names no post.
  res = get(cli, kGetPosts, uris_param({uris[0] + "#/x", uris[1]}));
  REQUIRE(res->status == 200);
  CHECK(answered_uris(res->body) == std::vector<std::string>{uris[1]});
}

TEST_CASE("getPosts is counted, limited and faulted like every endpoint", "[fake][http][getposts][faults]") {
  {
    Served s(1, std::chrono::milliseconds(120));
    httplib::Client cli("127.0.0.1", s.port);
    const auto uri = own_uris(s.data().author_feed(1, 1)).front();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 3; ++i) CHECK(get(cli, kGetPosts, uris_param({uri}))->status == 200);
    CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(360));
    CHECK(get(cli, kGetPosts, {})->status == 400);  // refused requests count too
    // Every method has its counter and its arrival times, and only getPosts moved.
    const std::string stats = get(cli, "/_fake/stats", {})->body;
    simdjson::dom::parser parser;
    std::map<std::string, std::int64_t> requests, first_ms;
    for (auto [method, n] : parser.parse(stats)["requests"].get_object()) requests[std::string(method)] = std::int64_t(n);
    for (auto [method, a] : parser.parse(stats)["arrivals"].get_object())
      first_ms[std::string(method)] = std::int64_t(a["first_ms"]);
    CHECK(requests == std::map<std::string, std::int64_t>{{"getProfiles", 0}, {"getAuthorFeed", 0}, {"getPosts", 4}, {"other", 0}});
    CHECK(first_ms.size() == 4);
    CHECK(first_ms["getPosts"] > 0);
    CHECK(first_ms["getAuthorFeed"] == 0);
    CHECK(s.app.stats().get_posts == 4);
    CHECK(!get(cli, kGetPosts, uris_param({uri}))->get_header_value("RateLimit-Remaining").empty());
  }
  // Each fault kind, alone and certain, reaches getPosts.
  using F = ds::fake::Fault;
  struct Case {
    F fault;
    Seen seen;
  };
  for (const Case& c : {Case{F::http_429, {429, true}}, Case{F::truncated, {200, false}}, Case{F::cut, {-1, false}},
                        Case{F::dropped, {-1, false}}}) {
    ds::fake::FaultOptions f;
    (c.fault == F::http_429 ? f.p_429 : c.fault == F::truncated ? f.p_truncated : c.fault == F::cut ? f.p_cut : f.p_drop) = 1.0;
    Misbehaving m({}, f);
    httplib::Client cli("127.0.0.1", m.port);
    const auto uri = own_uris(m.app.dataset().author_feed(1, 1)).front();
    CHECK(fetch(cli, kGetPosts, uris_param({uri})) == c.seen);
    CHECK(m.app.stats().faults[static_cast<int>(c.fault)] == 1);
    CHECK(m.app.stats().get_posts >= 1);
  }
  {
    ds::fake::FaultOptions f;
    f.p_5xx = 1.0;
    Misbehaving m({}, f);
    httplib::Client cli("127.0.0.1", m.port);
    const auto uri = own_uris(m.app.dataset().author_feed(1, 1)).front();
    for (int i = 0; i < 6; ++i) CHECK(fetch(cli, kGetPosts, uris_param({uri})).status >= 500);
    CHECK(m.app.stats().faults[static_cast<int>(F::http_5xx)] == 6);
  }
  // The enforced rate limit refuses getPosts over the limit, sharing the window with the others.
  Misbehaving m(ds::fake::RateLimitOptions{.limit = 2, .window_s = 300, .enforce = true}, {});
  httplib::Client cli("127.0.0.1", m.port);
  const auto uri = own_uris(m.app.dataset().author_feed(1, 1)).front();
  CHECK(fetch(cli, "/xrpc/app.bsky.actor.getProfiles", {{"actors", m.app.dataset().users()[1].did}}).status == 200);
  CHECK(fetch(cli, kGetPosts, uris_param({uri})).status == 200);
  CHECK(fetch(cli, kGetPosts, uris_param({uri})).status == 429);
  CHECK(m.app.stats().rate_limited == 1);
}

TEST_CASE("--serve-files answers getPosts from getPosts/<first rkey>.json or default.json", "[fake][http][files][getposts]") {
  const std::string dir = make_temp_dir();
  std::filesystem::create_directories(dir + "/getPosts");
  write_text(dir + "/getPosts/3abc.json", "{\"posts\":[{\"uri\":1}]}");
  write_text(dir + "/getPosts/3bad.status", "502");
  write_text(dir + "/getPosts/default.json", "{\"posts\":[");
  {
    Misbehaving m({}, {}, dir);
    httplib::Client cli("127.0.0.1", m.port);
    auto r = cli.Get(kGetPosts, uris_param({"at://did:plc:x/app.bsky.feed.post/3abc", "at://did:plc:x/app.bsky.feed.post/3bad"}),
                     httplib::Headers{});
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "{\"posts\":[{\"uri\":1}]}");
    r = cli.Get(kGetPosts, uris_param({"at://did:plc:x/app.bsky.feed.post/3bad"}), httplib::Headers{});
    REQUIRE(r);
    CHECK(r->status == 502);
    CHECK(r->body.empty());
    for (const std::string& first : {std::string("at://did:plc:x/app.bsky.feed.post/other"), std::string("at://did:plc:x/.."),
                                     std::string("..")}) {
      r = cli.Get(kGetPosts, uris_param({first}), httplib::Headers{});
      REQUIRE(r);
      CHECK(r->status == 200);
      CHECK(r->body == "{\"posts\":[");
    }
    CHECK(m.app.stats().get_posts == 5);
  }
  std::filesystem::remove(dir + "/getPosts/default.json");
  Misbehaving m({}, {}, dir);
  httplib::Client cli("127.0.0.1", m.port);
  auto r = cli.Get(kGetPosts, uris_param({"at://did:plc:x/app.bsky.feed.post/zzz"}), httplib::Headers{});
  REQUIRE(r);
  CHECK(r->body == R"({"posts":[]})");
  std::filesystem::remove_all(dir);
}
