// Tests for the fake AppView over real loopback HTTP: paging, errors, day switching, counters,
// faults, the enforced rate limit, served files, and JSON types as in tests/fixtures/bsky.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <httplib.h>
#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ds/clock.hpp"
#include "fake_appview_fixture.hpp"
#include "server.hpp"

using namespace fake_test;
using ds::Micros;
using ds::fake::AppView;
using ds::fake::DatasetParams;
using ds::fake::FeedItem;

namespace {

Micros floor_ms(Micros t) { return (t / 1000 - (t % 1000 < 0 ? 1 : 0)) * 1000; }

std::optional<std::string> opt_string(simdjson::dom::element e, const char* key) {
  auto v = e.get_object().at_key(key);
  if (v.error()) return std::nullopt;
  return std::string(std::string_view(v.value()));
}
std::optional<std::int64_t> opt_int(simdjson::dom::element e, const char* key) {
  auto v = e.get_object().at_key(key);
  if (v.error()) return std::nullopt;
  return std::int64_t(v.value());
}

struct Walked {
  std::string uri, author, reason, reason_by, reason_indexed_at, indexed_at;
  std::optional<std::string> created_at;
  std::optional<std::int64_t> likes, replies, reposts, quotes;
};

// Follows cursors to the end like a client would, checking every page's cursor on the way.
std::vector<Walked> walk(httplib::Client& cli, const std::string& actor, int limit, int* pages_out = nullptr) {
  std::vector<Walked> out;
  std::optional<std::string> cursor;
  int pages = 0;
  simdjson::dom::parser parser;
  for (;;) {
    httplib::Params params{{"actor", actor}, {"limit", std::to_string(limit)}};
    if (cursor) params.emplace("cursor", *cursor);
    auto res = get(cli, "/xrpc/app.bsky.feed.getAuthorFeed", params);
    REQUIRE(res->status == 200);
    ++pages;
    simdjson::dom::element doc = parser.parse(res->body);
    simdjson::dom::array feed = doc["feed"].get_array();
    std::size_t n = 0;
    for (simdjson::dom::element item : feed) {
      ++n;
      simdjson::dom::element post = item["post"];
      Walked w;
      w.uri = std::string(std::string_view(post["uri"]));
      w.author = std::string(std::string_view(post["author"]["did"]));
      w.indexed_at = std::string(std::string_view(post["indexedAt"]));
      w.created_at = opt_string(post["record"], "createdAt");
      w.likes = opt_int(post, "likeCount");
      w.replies = opt_int(post, "replyCount");
      w.reposts = opt_int(post, "repostCount");
      w.quotes = opt_int(post, "quoteCount");
      auto reason = item.get_object().at_key("reason");
      if (!reason.error()) {
        w.reason = std::string(std::string_view(reason.value()["$type"]));
        if (auto by = reason.value().get_object().at_key("by"); !by.error())
          w.reason_by = std::string(std::string_view(by.value()["did"]));
        w.reason_indexed_at = opt_string(reason.value(), "indexedAt").value_or("");
      }
      out.push_back(std::move(w));
    }
    auto next = doc.get_object().at_key("cursor");
    if (next.error()) break;
    REQUIRE(n == static_cast<std::size_t>(limit));  // only the last page may be short
    cursor = std::string(std::string_view(next.value()));
    REQUIRE(pages < 10000);
  }
  if (pages_out) *pages_out = pages;
  return out;
}

// `owner`: the DID of the account whose feed was walked.
void compare_with_dataset(const std::vector<Walked>& walked, const std::vector<FeedItem>& truth, const std::string& owner) {
  REQUIRE(walked.size() == truth.size());
  for (std::size_t i = 0; i < truth.size(); ++i) {
    const auto& w = walked[i];
    const auto& t = truth[i];
    REQUIRE(w.uri == t.post.uri);
    REQUIRE(w.author == t.post.author_did);
    REQUIRE(w.reason == (t.is_own_post() ? "" : "app.bsky.feed.defs#reasonRepost"));
    if (!t.is_own_post()) {
      // reason.by is the feed's owner (the author too for a self-repost), at the repost's time.
      REQUIRE(w.reason_by == owner);
      REQUIRE(w.reason_indexed_at == ds::format_timestamp(t.sort_at));
    }
    REQUIRE(w.indexed_at == t.post.indexed_at_text);
    REQUIRE(w.created_at == t.post.created_at_raw);
    REQUIRE(w.likes == t.post.counts.likes);
    REQUIRE(w.replies == t.post.counts.replies);
    REQUIRE(w.reposts == t.post.counts.reposts);
    REQUIRE(w.quotes == t.post.counts.quotes);
  }
}

using Types = std::set<simdjson::dom::element_type>;

// The JSON types found at a path such as "feed/[]/post/uri" ("[]" steps into every element).
void collect_types(simdjson::dom::element e, const std::vector<std::string>& path, std::size_t i, Types& out) {
  if (i == path.size()) {
    out.insert(e.type());
    return;
  }
  if (path[i] == "[]") {
    if (e.is_array())
      for (simdjson::dom::element c : e.get_array()) collect_types(c, path, i + 1, out);
    return;
  }
  if (!e.is_object()) return;
  auto child = e.get_object().at_key(path[i]);
  if (!child.error()) collect_types(child.value(), path, i + 1, out);
}

Types types_at(simdjson::dom::element doc, const std::string& path) {
  std::vector<std::string> steps;
  std::size_t pos = 0;
  while (pos <= path.size()) {
    const std::size_t slash = path.find('/', pos);
    steps.push_back(path.substr(pos, slash - pos));
    if (slash == std::string::npos) break;
    pos = slash + 1;
  }
  Types out;
  collect_types(doc, steps, 0, out);
  return out;
}

}  // namespace

TEST_CASE("getAuthorFeed pages through exactly the dataset's feed", "[fake][http]") {
  Served s;
  httplib::Client cli("127.0.0.1", s.port);
  cli.set_keep_alive(true);
  const auto& ds = s.data();

  // A big feed with reposts, a reposts-only feed, an empty one and an ordinary one.
  const int big = first_user_where(ds, [&](const ds::fake::User& u) {
    const auto n = ds.feed_index(u.index, 1)->entries.size();
    return u.registered && n > 1000 && n < 5000;
  });
  const int ordinary = first_user_where(ds, [&](const ds::fake::User& u) {
    const auto n = ds.feed_index(u.index, 1)->entries.size();
    return u.registered && u.index > 20 && n > 120 && n < 400;
  });
  for (int user : {big, ordinary}) {
    int pages = 0;
    const auto truth = ds.author_feed(user, 1);
    compare_with_dataset(walk(cli, ds.users()[static_cast<std::size_t>(user)].did, 100, &pages), truth,
                         ds.users()[static_cast<std::size_t>(user)].did);
    CHECK(pages == static_cast<int>((truth.size() + 99) / 100));
  }
  compare_with_dataset(walk(cli, ds.handle_at(ordinary, 1), 37), ds.author_feed(ordinary, 1),
                       ds.users()[static_cast<std::size_t>(ordinary)].did);
  // Feeds with self-reposts (the post again, reason.by its author): the echo account's daily one,
  // whose page of 100 ends with it, and an ordinary account's.
  const int self_reposter = first_user_where(ds, [&](const ds::fake::User& u) {
    const auto f = ds.author_feed(u.index, 1);
    return u.registered && u.index > 22 && std::any_of(f.begin(), f.end(), [](const FeedItem& i) { return i.is_self_repost(); });
  });
  for (int user : {ds::fake::echo::kAccount, self_reposter}) {
    const auto truth = ds.author_feed(user, 1);
    CHECK(std::any_of(truth.begin(), truth.end(), [](const FeedItem& i) { return i.is_self_repost(); }));
    compare_with_dataset(walk(cli, ds.users()[static_cast<std::size_t>(user)].did, 100), truth,
                         ds.users()[static_cast<std::size_t>(user)].did);
  }

  int reposts_only = 0, empty = 0;
  for (const auto& u : ds.users()) {
    if (!u.registered || !ds.exists(u.index, 1)) continue;
    const auto truth = ds.author_feed(u.index, 1);
    const bool only = !truth.empty() && std::all_of(truth.begin(), truth.end(), [](const FeedItem& i) { return i.is_repost_of_other(); });
    if ((only && reposts_only++ == 0) || (truth.empty() && empty++ == 0)) {
      int pages = 0;
      compare_with_dataset(walk(cli, u.did, 100, &pages), truth, u.did);
      CHECK(pages == 1);
    }
  }
  CHECK(reposts_only > 0);
  CHECK(empty > 0);
}

TEST_CASE("the cursor is the sort time of the page's last item, as the real AppView writes it", "[fake][http]") {
  Served s;
  httplib::Client cli("127.0.0.1", s.port);
  const auto& ds = s.data();
  const int user = first_user_where(ds, [&](const ds::fake::User& u) {
    return u.registered && ds.feed_index(u.index, 1)->entries.size() > 60;
  });
  const auto truth = ds.author_feed(user, 1);
  simdjson::dom::parser parser;
  auto res = get(cli, "/xrpc/app.bsky.feed.getAuthorFeed", {{"actor", ds.users()[static_cast<std::size_t>(user)].did}, {"limit", "25"}});
  REQUIRE(res->status == 200);
  simdjson::dom::element doc = parser.parse(res->body);
  const std::string cursor{std::string_view(doc["cursor"])};
  // "<epoch ms>__<cid>" (docs/real-appview.md): the sort time in milliseconds and the item's CID.
  CHECK(cursor == std::to_string(floor_ms(truth[24].sort_at) / 1000) + "__" + truth[24].post.cid);
  CHECK(doc["feed"].get_array().size() == 25);

  // Default limit is 50; the next page starts right after the cursor.
  res = get(cli, "/xrpc/app.bsky.feed.getAuthorFeed", {{"actor", ds.users()[static_cast<std::size_t>(user)].did}, {"cursor", cursor}});
  REQUIRE(res->status == 200);
  doc = parser.parse(res->body);
  simdjson::dom::array feed = doc["feed"].get_array();
  CHECK(feed.size() == std::min<std::size_t>(50, truth.size() - 25));
  CHECK(std::string_view((*feed.begin())["post"]["uri"]) == truth[25].post.uri);
}

TEST_CASE("includePins puts the pinned post first on page 1 only", "[fake][http]") {
  Served s;
  httplib::Client cli("127.0.0.1", s.port);
  const auto& ds = s.data();
  const int user = first_user_where(ds, [&](const ds::fake::User& u) { return u.registered && ds.pinned_item(u.index, 1); });
  const auto pin = ds.pinned_item(user, 1);
  const std::string did = ds.users()[static_cast<std::size_t>(user)].did;
  simdjson::dom::parser parser;

  auto res = get(cli, "/xrpc/app.bsky.feed.getAuthorFeed", {{"actor", did}, {"limit", "10"}, {"includePins", "true"}});
  simdjson::dom::element doc = parser.parse(res->body);
  simdjson::dom::array feed = doc["feed"].get_array();
  CHECK(feed.size() == 11);
  simdjson::dom::element first = *feed.begin();
  CHECK(std::string_view(first["reason"]["$type"]) == "app.bsky.feed.defs#reasonPin");
  CHECK(std::string_view(first["post"]["uri"]) == pin->post.uri);
  const std::string cursor{std::string_view(doc["cursor"])};

  res = get(cli, "/xrpc/app.bsky.feed.getAuthorFeed", {{"actor", did}, {"limit", "10"}, {"includePins", "true"}, {"cursor", cursor}});
  doc = parser.parse(res->body);
  for (simdjson::dom::element item : doc["feed"].get_array()) {
    auto reason = item.get_object().at_key("reason");
    if (!reason.error()) CHECK(std::string_view(reason.value()["$type"]) != "app.bsky.feed.defs#reasonPin");
  }
  // Without includePins the pinned post shows only in its normal place.
  const auto all = walk(cli, did, 100);
  CHECK(std::count_if(all.begin(), all.end(), [&](const Walked& w) { return w.uri == pin->post.uri; }) == 1);
}

TEST_CASE("bad parameters get 400 InvalidRequest", "[fake][http]") {
  Served s;
  httplib::Client cli("127.0.0.1", s.port);
  const auto& ds = s.data();
  const std::string did = ds.users()[1].did;
  const std::string feed = "/xrpc/app.bsky.feed.getAuthorFeed";
  expect_invalid(get(cli, feed, {{"actor", did}, {"limit", "0"}}), "limit");
  expect_invalid(get(cli, feed, {{"actor", did}, {"limit", "101"}}), "limit");
  expect_invalid(get(cli, feed, {{"actor", did}, {"limit", "ten"}}), "limit");
  expect_invalid(get(cli, feed, {{"limit", "10"}}), "actor");
  // A cursor not of the real AppView's shape is a 500 there, a timestamp included.
  for (const char* bad : {"yesterday", "2024-03-21T23:36:16.378Z", "__bafy", "12x__bafy", "1711064176378__"}) {
    INFO(bad);
    const auto r = get(cli, feed, {{"actor", did}, {"cursor", bad}});
    REQUIRE(r);
    CHECK(r->status == 500);
    CHECK_THAT(r->body, Catch::Contains("InternalServerError"));
  }
  expect_invalid(get(cli, feed, {{"actor", did}, {"filter", "everything"}}), "filter");
  CHECK(get(cli, feed, {{"actor", did}, {"limit", "1"}})->status == 200);
  CHECK(get(cli, feed, {{"actor", did}, {"limit", "100"}, {"filter", "posts_and_author_threads"}})->status == 200);

  const std::string profiles = "/xrpc/app.bsky.actor.getProfiles";
  httplib::Params many;
  for (int i = 0; i < 26; ++i) many.emplace("actors", ds.users()[static_cast<std::size_t>(i)].did);
  expect_invalid(get(cli, profiles, many), "25");
  many.erase(many.begin());
  auto ok = get(cli, profiles, many);
  CHECK(ok->status == 200);
  expect_invalid(get(cli, profiles, {}), "actors");
}

TEST_CASE("unknown and gone actors: 400 from getAuthorFeed, left out by getProfiles", "[fake][http]") {
  Served s(2);
  httplib::Client cli("127.0.0.1", s.port);
  const auto& ds = s.data();
  const auto& users = ds.users();
  const int never = first_user_where(ds, [](const ds::fake::User& u) { return u.never_existed; });
  const int gone = first_user_where(ds, [](const ds::fake::User& u) { return u.gone_from_day == 2; });
  const std::string feed = "/xrpc/app.bsky.feed.getAuthorFeed";
  for (const std::string& actor : {std::string("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"), users[static_cast<std::size_t>(never)].did,
                                  users[static_cast<std::size_t>(gone)].did, std::string("nobody.fake.test")}) {
    auto res = get(cli, feed, {{"actor", actor}});
    REQUIRE(res->status == 400);
    CHECK(res->body == R"({"error":"InvalidRequest","message":"Profile not found"})");
  }

  httplib::Params params;
  params.emplace("actors", users[3].did);
  params.emplace("actors", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa");
  params.emplace("actors", users[static_cast<std::size_t>(never)].did);
  params.emplace("actors", ds.handle_at(30, 2));
  params.emplace("actors", users[static_cast<std::size_t>(gone)].did);
  params.emplace("actors", users[1].did);
  auto res = get(cli, "/xrpc/app.bsky.actor.getProfiles", params);
  REQUIRE(res->status == 200);
  simdjson::dom::parser parser;
  simdjson::dom::element doc = parser.parse(res->body);
  std::vector<std::string> dids;
  for (simdjson::dom::element p : doc["profiles"].get_array()) dids.emplace_back(std::string_view(p["did"]));
  CHECK(dids == std::vector<std::string>{users[3].did, users[30].did, users[1].did});
}

TEST_CASE("POST /_fake/day changes the answers without a restart", "[fake][http]") {
  Served s(1);
  httplib::Client cli("127.0.0.1", s.port);
  const auto& ds = s.data();
  // The account that takes another's handle on day 2.
  int taker = -1, giver = -1;
  for (const auto& a : ds.users())
    for (const auto& b : ds.users())
      if (a.index != b.index && ds.exists(a.index, 2) && ds.exists(b.index, 2) && ds.handle_at(a.index, 2) == ds.handle_at(b.index, 1)) {
        taker = a.index;
        giver = b.index;
      }
  REQUIRE(taker >= 0);
  const int gone = first_user_where(ds, [](const ds::fake::User& u) { return u.gone_from_day == 2; });
  simdjson::dom::parser parser;
  auto profile_of = [&](const std::string& actor) -> std::optional<std::string> {
    auto res = get(cli, "/xrpc/app.bsky.actor.getProfiles", {{"actors", actor}});
    simdjson::dom::element doc = parser.parse(res->body);
    for (simdjson::dom::element p : doc["profiles"].get_array()) return std::string(std::string_view(p["did"]));
    return std::nullopt;
  };
  const std::string contested = ds.handle_at(giver, 1);
  CHECK(profile_of(contested) == ds.users()[static_cast<std::size_t>(giver)].did);
  CHECK(profile_of(ds.users()[static_cast<std::size_t>(gone)].did).has_value());
  const auto first_day1 = get(cli, "/xrpc/app.bsky.feed.getAuthorFeed", {{"actor", ds.users()[0].did}, {"limit", "1"}})->body;

  auto res = cli.Post("/_fake/day?day=2");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(s.app.day() == 2);
  CHECK(profile_of(contested) == ds.users()[static_cast<std::size_t>(taker)].did);
  CHECK_FALSE(profile_of(ds.users()[static_cast<std::size_t>(gone)].did).has_value());
  const auto first_day2 = get(cli, "/xrpc/app.bsky.feed.getAuthorFeed", {{"actor", ds.users()[0].did}, {"limit", "1"}})->body;
  CHECK(first_day1 != first_day2);
  simdjson::dom::element doc = parser.parse(first_day2);
  const auto indexed = ds::parse_timestamp(std::string_view((*doc["feed"].get_array().begin())["post"]["indexedAt"]));
  CHECK(*indexed > ds.now_of_day(1));  // day 2 brought newer posts

  CHECK(cli.Post("/_fake/day?day=-1")->status == 400);
  CHECK(cli.Post("/_fake/day?day=two")->status == 400);
  CHECK(s.app.day() == 2);
  CHECK(cli.Post("/_fake/day?day=1")->status == 200);
  CHECK(profile_of(contested) == ds.users()[static_cast<std::size_t>(giver)].did);
}

TEST_CASE("headers, keep-alive and the stats endpoint", "[fake][http]") {
  Served s;
  const auto& ds = s.data();
  {
    // Reset over its own connection, which is counted before the reset and closed after it.
    httplib::Client reset("127.0.0.1", s.port);
    CHECK(reset.Post("/_fake/stats/reset")->status == 200);
  }
  {
    httplib::Client cli("127.0.0.1", s.port);
    cli.set_keep_alive(true);
    for (int i = 0; i < 3; ++i) {
      auto res = get(cli, "/xrpc/app.bsky.feed.getAuthorFeed", {{"actor", ds.users()[static_cast<std::size_t>(i)].did}});
      CHECK(res->get_header_value("Content-Type") == "application/json; charset=utf-8");
      CHECK(res->get_header_value("RateLimit-Limit") == "3000");
      CHECK(res->get_header_value("RateLimit-Policy") == "3000;w=300");
      const long long remaining = std::stoll(res->get_header_value("RateLimit-Remaining"));
      CHECK(remaining < 3000);
      CHECK(remaining >= 0);
      const long long reset = std::stoll(res->get_header_value("RateLimit-Reset"));
      const long long now = static_cast<long long>(std::time(nullptr));
      CHECK(reset > now - 1);  // absolute epoch seconds, not a delay
      CHECK(reset <= now + 301);
    }
    for (int i = 0; i < 2; ++i) CHECK(get(cli, "/xrpc/app.bsky.actor.getProfiles", {{"actors", ds.users()[4].did}})->status == 200);
    CHECK(get(cli, "/xrpc/app.bsky.feed.getTimeline", {})->status == 501);
    CHECK(get(cli, "/_fake/health", {})->status == 200);

    auto res = get(cli, "/_fake/stats", {});
    simdjson::dom::parser parser;
    simdjson::dom::element doc = parser.parse(res->body);
    CHECK(std::int64_t(doc["requests"]["getAuthorFeed"]) == 3);
    CHECK(std::int64_t(doc["requests"]["getProfiles"]) == 2);
    CHECK(std::int64_t(doc["requests"]["other"]) == 1);
    CHECK(std::int64_t(doc["connections_opened"]) == 1);  // one keep-alive connection for all of it
    CHECK(std::int64_t(doc["max_in_flight"]) == 1);
  }
  httplib::Client second("127.0.0.1", s.port);
  CHECK(second.Get("/_fake/health")->status == 200);
  CHECK(s.app.stats().connections_opened == 2);
}

TEST_CASE("latency applies per request and concurrent requests are counted", "[fake][http]") {
  Served s(1, std::chrono::milliseconds(150));
  const auto& ds = s.data();
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  std::vector<int> status(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      httplib::Client cli("127.0.0.1", s.port);
      auto res = cli.Get("/xrpc/app.bsky.actor.getProfiles?actors=" + ds.users()[static_cast<std::size_t>(t)].did);
      status[static_cast<std::size_t>(t)] = res ? res->status : -1;
    });
  for (auto& t : threads) t.join();
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(status == std::vector<int>{200, 200, 200, 200});
  CHECK(elapsed >= std::chrono::milliseconds(150));
  CHECK(elapsed < std::chrono::milliseconds(550));  // served side by side, not one after another
  CHECK(s.app.stats().max_in_flight >= 2);
  CHECK(s.app.stats().connections_opened == 4);
}

TEST_CASE("fake responses have the JSON types of the real captures", "[fake][http]") {
  const std::string dir = std::string(DS_SOURCE_DIR) + "/tests/fixtures/bsky/";
  simdjson::dom::parser real_profiles_parser, real_feed_parser, fake_profiles_parser, fake_feed_parser;
  simdjson::dom::element real_profiles = real_profiles_parser.load(dir + "getProfiles.2025-05-19.json");
  simdjson::dom::element real_feed = real_feed_parser.load(dir + "getAuthorFeed.2025-05-19.json");

  Served s;
  httplib::Client cli("127.0.0.1", s.port);
  const auto& ds = s.data();
  // Profiles with every optional field and without some, so present fields are typed right.
  httplib::Params actors;
  for (int i = 0; i < 25; ++i) actors.emplace("actors", ds.users()[static_cast<std::size_t>(i)].did);
  auto pres = get(cli, "/xrpc/app.bsky.actor.getProfiles", actors);
  simdjson::dom::element fake_profiles = fake_profiles_parser.parse(pres->body);
  const int with_reposts = first_user_where(ds, [&](const ds::fake::User& u) {
    const auto f = ds.author_feed(u.index, 1);
    int reposts = 0;
    for (std::size_t i = 0; i < std::min<std::size_t>(f.size(), 100); ++i) reposts += f[i].is_repost_of_other();
    return u.registered && reposts >= 3 && f.size() > 100;
  });
  auto fres = get(cli, "/xrpc/app.bsky.feed.getAuthorFeed", {{"actor", ds.users()[static_cast<std::size_t>(with_reposts)].did}, {"limit", "100"}});
  simdjson::dom::element fake_feed = fake_feed_parser.parse(fres->body);

  for (const char* path : {"profiles/[]/did", "profiles/[]/handle", "profiles/[]/displayName", "profiles/[]/avatar",
                           "profiles/[]/followersCount", "profiles/[]/followsCount", "profiles/[]/postsCount",
                           "profiles/[]/createdAt", "profiles/[]/indexedAt"}) {
    INFO(path);
    const Types real = types_at(real_profiles, path);
    CHECK_FALSE(real.empty());
    CHECK(types_at(fake_profiles, path) == real);
  }
  for (const char* path : {"feed/[]/post/uri", "feed/[]/post/cid", "feed/[]/post/author/did", "feed/[]/post/author/handle",
                           "feed/[]/post/record/$type", "feed/[]/post/record/createdAt", "feed/[]/post/indexedAt",
                           "feed/[]/post/likeCount", "feed/[]/post/replyCount", "feed/[]/post/repostCount",
                           "feed/[]/post/quoteCount", "feed/[]/reason/$type", "feed/[]/reason/by/did",
                           "feed/[]/reason/indexedAt", "feed/[]/reply/parent/uri", "cursor"}) {
    INFO(path);
    const Types real = types_at(real_feed, path);
    CHECK_FALSE(real.empty());
    CHECK(types_at(fake_feed, path) == real);
  }
  // The repost marker is the same string in both.
  std::set<std::string> real_reasons, fake_reasons;
  for (simdjson::dom::element item : real_feed["feed"].get_array())
    if (auto r = item.get_object().at_key("reason"); !r.error()) real_reasons.emplace(std::string_view(r.value()["$type"]));
  for (simdjson::dom::element item : fake_feed["feed"].get_array())
    if (auto r = item.get_object().at_key("reason"); !r.error()) fake_reasons.emplace(std::string_view(r.value()["$type"]));
  CHECK(real_reasons == fake_reasons);
}

TEST_CASE("unusual displayNames arrive intact, NUL as \\u0000", "[fake][http]") {
  Served s(2);
  httplib::Client cli("127.0.0.1", s.port);
  const auto& ds = s.data();
  int checked_nul = 0, checked = 0;
  for (const auto& u : ds.users()) {
    const auto p = ds.profile(u.index, 2);
    if (!p || !p->display_name) continue;
    const std::string& name = *p->display_name;
    const bool plain = std::all_of(name.begin(), name.end(), [](char c) { return c >= ' ' && c <= '~'; });
    if (plain) continue;
    auto res = get(cli, "/xrpc/app.bsky.actor.getProfiles", {{"actors", u.did}});
    if (name.find('\0') != std::string::npos) {
      CHECK(res->body.find("\\u0000") != std::string::npos);
      ++checked_nul;
    }
    simdjson::dom::parser parser;
    simdjson::dom::element doc = parser.parse(res->body);
    CHECK(std::string_view((*doc["profiles"].get_array().begin())["displayName"]) == name);
    ++checked;
  }
  CHECK(checked >= 2);
  CHECK(checked_nul == 1);
}

TEST_CASE("the handler answers without HTTP and the server refuses non-loopback hosts", "[fake]") {
  AppView app(DatasetParams{}, 1);
  ds::fake::Request req;
  req.method = "GET";
  req.path = "/xrpc/com.atproto.sync.getRepo";
  CHECK(app.handle(req).status == 501);
  req.path = "/elsewhere";
  CHECK(app.handle(req).status == 404);
  req.path = "/xrpc/app.bsky.actor.getProfiles";
  req.params.emplace("actors", app.dataset().users()[0].did);
  const auto res = app.handle(req);
  CHECK(res.status == 200);
  CHECK(res.body.find(app.dataset().users()[0].did) != std::string::npos);

  ds::fake::ServerOptions options;
  options.host = "0.0.0.0";
  ds::fake::HttpServer http(app, [&](const ds::fake::Request& r) { return app.handle(r); }, options);
  CHECK_THROWS(http.bind());
}

TEST_CASE("faults: each kind shows up as a client sees it, and the draws repeat per seed", "[fake][http][faults]") {
  ds::fake::FaultOptions faults;
  faults.seed = 42;
  faults.p_429 = 0.15;
  faults.p_5xx = 0.15;
  faults.p_truncated = 0.15;
  faults.p_cut = 0.15;
  faults.p_drop = 0.15;
  faults.retry_after_s = 3;
  // The same 150 requests, each twice (the second arrival draws afresh), against two servers
  // with the same seed and one with another seed.
  auto run = [&](std::uint64_t seed, std::vector<Seen>& seen, ds::fake::Stats& stats) {
    ds::fake::FaultOptions f = faults;
    f.seed = seed;
    Misbehaving m({}, f);
    const auto& users = m.app.dataset().users();
    httplib::Client cli("127.0.0.1", m.port);
    for (int round = 0; round < 2; ++round)
      for (int i = 0; i < 150; ++i) {
        const std::string actor = users[static_cast<std::size_t>(20 + i % 40)].did;
        const auto path = "/xrpc/app.bsky.feed.getAuthorFeed";
        httplib::Params params{{"actor", actor}, {"limit", std::to_string(1 + i / 40)}};
        auto res = cli.Get(path, params, httplib::Headers{});
        Seen s;
        if (res) {
          s.status = res->status;
          simdjson::dom::parser parser;
          s.json_ok = !parser.parse(res->body).error();
          if (res->status == 429) {
            // Like the real service: absolute Reset, Retry-After, nothing remaining.
            CHECK(res->get_header_value("RateLimit-Remaining") == "0");
            CHECK(res->get_header_value("Retry-After") == "3");
            const long long reset = std::stoll(res->get_header_value("RateLimit-Reset"));
            const long long now = static_cast<long long>(std::time(nullptr));
            CHECK(reset >= now + 2);
            CHECK(reset <= now + 4);
            CHECK(res->body.find("RateLimitExceeded") != std::string::npos);
          }
          if (res->status == 200 && !s.json_ok) CHECK(res->body.size() == std::stoul(res->get_header_value("Content-Length")));
        }
        seen.push_back(s);
      }
    stats = m.app.stats();
  };
  std::vector<Seen> a, b, c;
  ds::fake::Stats sa, sb, sc;
  run(42, a, sa);
  run(42, b, sb);
  run(43, c, sc);
  CHECK(a == b);
  CHECK(a != c);

  std::map<std::string, int> kinds;
  for (const Seen& s : a) {
    if (s.status == -1) ++kinds["no response"];
    else if (s.status == 429) ++kinds["429"];
    else if (s.status >= 500) ++kinds["5xx"];
    else if (s.status == 200 && !s.json_ok) ++kinds["truncated"];
    else if (s.status == 200) ++kinds["ok"];
    else ++kinds["other"];
  }
  // 300 requests at 15% each: every kind happens, none dominates (the draws are fixed by the
  // seed, so these bounds are a property of the hash, not luck).
  CHECK(kinds["other"] == 0);
  for (const char* k : {"429", "5xx", "truncated"}) {
    INFO(k);
    CHECK(kinds[k] >= 20);
    CHECK(kinds[k] <= 75);
  }
  CHECK(kinds["no response"] >= 40);  // cut + dropped
  CHECK(kinds["ok"] >= 50);
  using F = ds::fake::Fault;
  CHECK(sa.faults[static_cast<int>(F::http_429)] == static_cast<std::uint64_t>(kinds["429"]));
  CHECK(sa.faults[static_cast<int>(F::http_5xx)] == static_cast<std::uint64_t>(kinds["5xx"]));
  CHECK(sa.faults[static_cast<int>(F::truncated)] == static_cast<std::uint64_t>(kinds["truncated"]));
  CHECK(sa.faults[static_cast<int>(F::cut)] + sa.faults[static_cast<int>(F::dropped)] ==
        static_cast<std::uint64_t>(kinds["no response"]));
  CHECK(sa.faults[static_cast<int>(F::cut)] > 0);
  CHECK(sa.faults[static_cast<int>(F::dropped)] > 0);
  CHECK(sa.get_author_feed >= 300);  // every request arrived (libcurl-style silent resends aside)
  CHECK(sa.http_429() == static_cast<std::uint64_t>(kinds["429"]));
  CHECK(sa.rate_limited == 0);
  // A broken connection is a new one for the next request.
  CHECK(sa.connections_opened >= static_cast<std::uint64_t>(1 + kinds["no response"]));
}

TEST_CASE("faults: control endpoints are never faulted; a slow answer comes late", "[fake][http][faults]") {
  ds::fake::FaultOptions faults;
  faults.p_drop = 1.0;
  {
    Misbehaving m({}, faults);
    httplib::Client cli("127.0.0.1", m.port);
    CHECK(fetch(cli, "/_fake/health", {}).status == 200);
    CHECK(fetch(cli, "/xrpc/app.bsky.actor.getProfiles", {{"actors", m.app.dataset().users()[1].did}}).status == -1);
    CHECK(fetch(cli, "/_fake/stats", {}).status == 200);
  }
  faults = {};
  faults.p_slow = 1.0;
  faults.slow_ms = 300;
  Misbehaving m({}, faults);
  httplib::Client cli("127.0.0.1", m.port);
  const auto start = std::chrono::steady_clock::now();
  CHECK(fetch(cli, "/xrpc/app.bsky.actor.getProfiles", {{"actors", m.app.dataset().users()[1].did}}) == Seen{200, true});
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(300));
  CHECK(m.app.stats().faults[static_cast<int>(ds::fake::Fault::slow)] == 1);
}

TEST_CASE("an enforced rate limit answers 429 with the headers, then lets requests through again", "[fake][http]") {
  ds::fake::RateLimitOptions rate;
  rate.limit = 5;
  rate.window_s = 2;
  rate.enforce = true;
  Misbehaving m(rate, {});
  httplib::Client cli("127.0.0.1", m.port);
  const std::string did = m.app.dataset().users()[1].did;
  // Start at the beginning of a window so all of this fits in it: wait for Reset to move on.
  auto first = cli.Get("/xrpc/app.bsky.actor.getProfiles?actors=" + did);
  REQUIRE(first);
  const std::string reset0 = first->get_header_value("RateLimit-Reset");
  for (;;) {
    auto r = cli.Get("/xrpc/app.bsky.actor.getProfiles?actors=" + did);
    REQUIRE(r);
    if (r->status == 200 && r->get_header_value("RateLimit-Reset") != reset0 &&
        r->get_header_value("RateLimit-Remaining") == "4")
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  m.app.reset_stats();  // the wait above was refused many times
  // One used; four left in this window.
  std::vector<std::string> remaining;
  for (int i = 0; i < 4; ++i) {
    auto r = cli.Get("/xrpc/app.bsky.actor.getProfiles?actors=" + did);
    REQUIRE(r);
    CHECK(r->status == 200);
    remaining.push_back(r->get_header_value("RateLimit-Remaining"));
  }
  CHECK(remaining == std::vector<std::string>{"3", "2", "1", "0"});
  auto refused = cli.Get("/xrpc/app.bsky.actor.getProfiles?actors=" + did);
  REQUIRE(refused);
  CHECK(refused->status == 429);
  CHECK(refused->body == R"({"error":"RateLimitExceeded","message":"Rate Limit Exceeded"})");
  CHECK(refused->get_header_value("RateLimit-Remaining") == "0");
  CHECK(refused->get_header_value("RateLimit-Limit") == "5");
  CHECK(refused->get_header_value("RateLimit-Policy") == "5;w=2");
  const long long reset = std::stoll(refused->get_header_value("RateLimit-Reset"));
  const long long retry_after = std::stoll(refused->get_header_value("Retry-After"));
  CHECK(retry_after >= 1);
  CHECK(retry_after <= 2);
  // After Reset the next window admits requests again.
  while (static_cast<long long>(std::time(nullptr)) < reset) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto again = cli.Get("/xrpc/app.bsky.actor.getProfiles?actors=" + did);
  REQUIRE(again);
  CHECK(again->status == 200);
  const auto st = m.app.stats();
  CHECK(st.rate_limited == 1);
  CHECK(st.http_429() == 1);

  simdjson::dom::parser parser;
  auto stats = cli.Get("/_fake/stats");
  REQUIRE(stats);
  simdjson::dom::element doc = parser.parse(stats->body);
  CHECK(std::int64_t(doc["rate_limited"]) == 1);
  CHECK(std::int64_t(doc["http_429"]) == 1);
  CHECK(std::int64_t(doc["statuses"]["429"]) == 1);
  CHECK(std::int64_t(doc["statuses"]["200"]) == 5);
  const std::int64_t first_ms = doc["arrivals"]["getProfiles"]["first_ms"];
  const std::int64_t last_ms = doc["arrivals"]["getProfiles"]["last_ms"];
  CHECK(first_ms > 0);
  CHECK(last_ms >= first_ms + 1000);  // the run waited out a window
  CHECK(std::int64_t(doc["arrivals"]["getAuthorFeed"]["first_ms"]) == 0);
}

TEST_CASE("--serve-files answers byte for byte from files, with statuses and safe names", "[fake][http][files]") {
  const std::string dir = make_temp_dir();
  std::filesystem::create_directories(dir + "/getProfiles");
  std::filesystem::create_directories(dir + "/getAuthorFeed");
  const std::string invalid_utf8 = "{\"profiles\":[{\"did\":\"did:plc:x\",\"handle\":\"\xff\xfe\"}]}";
  write_text(dir + "/getProfiles/did:plc:x.json", invalid_utf8);
  write_text(dir + "/getProfiles/default.json", "{\"profiles\":[]} trailing garbage");
  write_text(dir + "/getAuthorFeed/did:plc:x.json", "{\"feed\":[],\"cursor\":\"2024-03-21T23:36:16.378Z\"}");
  write_text(dir + "/getAuthorFeed/did:plc:x@2024-03-21T23:36:16.378Z.json", "{\"feed\":[");
  write_text(dir + "/getAuthorFeed/did:plc:down.status", " 503\n");
  write_text(dir + "/getAuthorFeed/did:plc:teapot.json", "{\"error\":\"Teapot\"}");
  write_text(dir + "/getAuthorFeed/did:plc:teapot.status", "418");
  write_text(dir + "/getAuthorFeed/did:plc:bad.status", "many");
  write_text(dir + "/secret.json", "{\"secret\":true}");
  {
    Misbehaving m({}, {}, dir);
    httplib::Client cli("127.0.0.1", m.port);
    const std::string profiles = "/xrpc/app.bsky.actor.getProfiles";
    const std::string feed = "/xrpc/app.bsky.feed.getAuthorFeed";
    auto get_ok = [&](const std::string& path, const httplib::Params& params) {
      auto r = cli.Get(path, params, httplib::Headers{});
      REQUIRE(r);
      return r;
    };
    httplib::Params two{{"actors", "did:plc:x"}, {"actors", "did:plc:y"}};
    auto r = get_ok(profiles, two);
    CHECK(r->status == 200);
    CHECK(r->body == invalid_utf8);
    CHECK(!r->get_header_value("RateLimit-Reset").empty());
    CHECK(get_ok(profiles, {{"actors", "did:plc:y"}})->body == "{\"profiles\":[]} trailing garbage");

    r = get_ok(feed, {{"actor", "did:plc:x"}, {"limit", "100"}});
    CHECK(r->status == 200);
    CHECK(r->body == "{\"feed\":[],\"cursor\":\"2024-03-21T23:36:16.378Z\"}");
    r = get_ok(feed, {{"actor", "did:plc:x"}, {"cursor", "2024-03-21T23:36:16.378Z"}});  // sent %-encoded
    CHECK(r->status == 200);
    CHECK(r->body == "{\"feed\":[");
    r = get_ok(feed, {{"actor", "did:plc:down"}});
    CHECK(r->status == 503);
    CHECK(r->body.empty());
    r = get_ok(feed, {{"actor", "did:plc:teapot"}});
    CHECK(r->status == 418);
    CHECK(r->body == "{\"error\":\"Teapot\"}");
    CHECK(get_ok(feed, {{"actor", "did:plc:bad"}})->status == 500);
    for (const char* actor : {"did:plc:nobody", "../secret", "..", ".hidden", "a/b"}) {
      INFO(actor);
      r = get_ok(feed, {{"actor", actor}});
      CHECK(r->status == 400);
      CHECK(r->body == R"({"error":"InvalidRequest","message":"Profile not found"})");
    }
    r = get_ok(feed, {{"actor", "did:plc:x"}, {"cursor", "../../secret"}});
    CHECK(r->status == 400);
  }
  std::filesystem::remove(dir + "/getProfiles/default.json");
  Misbehaving m({}, {}, dir);
  httplib::Client cli("127.0.0.1", m.port);
  auto r = cli.Get("/xrpc/app.bsky.actor.getProfiles?actors=did%3Aplc%3Ay");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == R"({"profiles":[]})");
  std::filesystem::remove_all(dir);
}

TEST_CASE("the HTTP server: Connection: close, HTTP/1.0, malformed requests, prompt stop", "[fake][http]") {
  Served s;
  {
    httplib::Client cli("127.0.0.1", s.port);
    cli.set_keep_alive(false);  // sends Connection: close
    for (int i = 0; i < 3; ++i) CHECK(cli.Get("/_fake/health")->status == 200);
  }
  CHECK(s.app.stats().connections_opened == 3);
  // Raw bytes: HTTP/1.0 closes after one answer; garbage gets 400 and a close.
  auto raw = [&](const std::string& request) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(s.port));
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size()));
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<std::size_t>(n));  // until close
    ::close(fd);
    return out;
  };
  const std::string ok = raw("GET /_fake/health HTTP/1.0\r\n\r\n");
  CHECK_THAT(ok, Catch::StartsWith("HTTP/1.1 200 OK\r\n"));
  CHECK_THAT(ok, Catch::Contains("Connection: close"));
  CHECK_THAT(raw("NONSENSE\r\n\r\n"), Catch::StartsWith("HTTP/1.1 400 "));
  // Two pipelined requests, the second closing: both answered in order.
  const std::string two = raw("GET /_fake/health HTTP/1.1\r\nHost: x\r\n\r\nGET /_fake/day HTTP/1.1\r\nConnection: close\r\n\r\n");
  CHECK(two.find("HTTP/1.1 200") != two.rfind("HTTP/1.1 200"));
  // An idle keep-alive connection does not hold up stop().
  httplib::Client idle("127.0.0.1", s.port);
  idle.set_keep_alive(true);
  CHECK(idle.Get("/_fake/health")->status == 200);
  const auto start = std::chrono::steady_clock::now();
  s.http->stop();
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(1500));
}
