// Tests for ds-fetch-feeds' request economy against a loopback getAuthorFeed + getPosts: quiet
// accounts refreshed by getPosts batched across accounts, no request for an empty window, and
// the fall-back to the feed whenever getPosts leaves a post out or fails.
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <httplib.h>
#include <simdjson.h>

#include "ds/clock.hpp"
#include "ds/exit_codes.hpp"
#include "ds/records.hpp"
#include "feed_fetcher.hpp"
#include "fetch_stage_fixture.hpp"

namespace {

using ds::Micros;
const Micros now = *ds::parse_timestamp("2026-12-02T06:00:00Z");
constexpr Micros hour = 3600 * ds::micros_per_second;

struct Post {
  std::string uri;
  Micros at;
  int likes;
};

// Accounts' own posts, newest first; getAuthorFeed pages them by time, getPosts looks them up.
class Api {
 public:
  Api() {
    endpoint.add("/xrpc/app.bsky.feed.getPosts", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> l(mu);
      ++posts_requests;
      std::vector<std::string> uris;
      for (std::size_t i = 0; i < req.get_param_value_count("uris"); ++i) uris.push_back(req.get_param_value("uris", i));
      batches.push_back(uris);
      if (uris.empty() || uris.size() > 25) {
        res.status = 400;
        res.set_content(R"({"error":"InvalidRequest","message":"uris must hold 1 to 25"})", "application/json");
        return;
      }
      if (fail_posts) {
        res.status = 500;
        res.set_content(R"({"error":"InternalServerError"})", "application/json");
        return;
      }
      std::string body = "{\"posts\":[";
      bool first = true;
      for (const auto& u : uris)
        for (const auto& [did, posts] : accounts)
          for (const auto& p : posts)
            if (p.uri == u) {
              body += (first ? "" : ",") + view(did, p);
              first = false;
            }
      res.set_content(body + "]}", "application/json");
    });
  }
  void start() { endpoint.start(); }
  std::string base() const { return endpoint.base(); }

  std::map<std::string, std::vector<Post>> accounts;
  bool fail_posts = false;
  int feed_delay_ms = 0;  // each getAuthorFeed answer takes this long
  std::mutex mu;
  int feed_requests = 0, posts_requests = 0;
  std::vector<std::vector<std::string>> batches;

 private:
  static std::string view(const std::string& did, const Post& p) {
    const std::string t = ds::format_timestamp(p.at);
    return R"({"uri":")" + p.uri + R"(","author":{"did":")" + did + R"("},"record":{"createdAt":")" + t +
           R"("},"indexedAt":")" + t + R"(","likeCount":)" + std::to_string(p.likes) + "}";
  }
  void feed(const httplib::Request& req, httplib::Response& res) {
    std::this_thread::sleep_for(std::chrono::milliseconds(feed_delay_ms));
    std::lock_guard<std::mutex> l(mu);
    ++feed_requests;
    const auto it = accounts.find(req.get_param_value("actor"));
    if (it == accounts.end()) {
      res.status = 400;
      res.set_content(R"({"error":"InvalidRequest","message":"Profile not found"})", "application/json");
      return;
    }
    std::string body = "{\"feed\":[";
    for (std::size_t i = 0; i < it->second.size(); ++i)
      body += (i ? "," : "") + std::string("{\"post\":") + view(it->first, it->second[i]) + "}";
    res.set_content(body + "]}", "application/json");  // one page, no cursor: the whole feed
  }
  fetch_fixture::LoopbackEndpoint endpoint{
      "/xrpc/app.bsky.feed.getAuthorFeed", [this](const httplib::Request& req, httplib::Response& res) { feed(req, res); }};
};

// An account `did` with `n` posts in the last day (newest first), liked `likes` times each.
std::vector<Post> recent_posts(const std::string& did, int n, int likes) {
  std::vector<Post> v;
  for (int i = 0; i < n; ++i)
    v.push_back({"at://" + did + "/app.bsky.feed.post/" + std::to_string(i), now - (i + 1) * hour, likes});
  return v;
}

// A backfilled account, its last snapshot yesterday with `posts_count` posts (the profile says
// `profile_posts` today, the same by default), whose window held `stored` (their URIs). Its DID
// avoids today's full refresh.
std::string quiet_user_line(const std::string& did, const std::vector<Post>& stored, std::int64_t posts_count,
                            std::int64_t profile_posts = -1) {
  ds::UserRecord u;
  u.did = did;
  u.handle = did.substr(8) + ".test";
  u.as_of = now;
  u.since = now - 7 * ds::micros_per_day;
  u.profile_status = ds::ProfileStatus::ok;
  u.profile = ds::Profile{u.handle, std::nullopt, std::nullopt, 1, 2, profile_posts < 0 ? posts_count : profile_posts};
  u.last_snapshot = ds::LastSnapshot{"2026-12-01", posts_count};
  std::vector<std::string> uris;
  for (const auto& p : stored) uris.push_back(p.uri);
  u.window_uris = uris;
  std::string line;
  ds::encode(line, u);
  return line;
}

// DIDs whose full-refresh day is not `now`, so that the economy applies to them.
std::vector<std::string> quiet_dids(int n) {
  std::vector<std::string> out;
  for (int i = 0; static_cast<int>(out.size()) < n; ++i) {
    const std::string did = "did:plc:quiet" + std::to_string(i);
    if (!ds::feeds::full_refresh_day(did, now, 7)) out.push_back(did);
  }
  return out;
}

struct Out {
  fetch_fixture::StageRun<ds::feeds::FeedFetcher> run;
  std::map<std::string, std::string> path;         // did -> feed.path
  std::map<std::string, std::string> status;       // did -> feed.status
  std::map<std::string, std::map<std::string, std::int64_t>> likes;  // did -> uri -> likes
};

Out collect(fetch_fixture::StageRun<ds::feeds::FeedFetcher>&& run) {
  Out out{std::move(run), {}, {}, {}};
  simdjson::dom::parser parser;
  for (const auto& line : out.run.lines) {
    simdjson::dom::element e = parser.parse(line);
    const std::string type = fetch_fixture::text_of(e, "type");
    const std::string did = fetch_fixture::text_of(e, "did");
    if (type == "post") out.likes[did][fetch_fixture::text_of(e, "uri")] = e["likes"].get_int64().value();
    if (type == "user") {
      out.path[did] = fetch_fixture::text_of(e["feed"], "path");
      out.status[did] = fetch_fixture::text_of(e["feed"], "status");
    }
  }
  return out;
}

ds::feeds::FetcherOptions options_for(const Api& api) {
  ds::feeds::FetcherOptions o;
  o.base_url = api.base();
  return o;
}

Out run(Api& api, const std::string& input) {
  return collect(fetch_fixture::run_fetch_stage<ds::feeds::FeedFetcher>("ds-fetch-feeds", input, options_for(api),
                                                                       fetch_fixture::test_http()));
}

// Input in bursts, as from ds-fetch-profiles under the rate cap: each chunk, then its pause.
Out run_paced(Api& api, std::vector<fetch_fixture::PacedChunk> chunks) {
  return collect(fetch_fixture::run_fetch_stage_paced<ds::feeds::FeedFetcher>(
      "ds-fetch-feeds", std::move(chunks), options_for(api), fetch_fixture::test_http()));
}

const std::string end_line = R"({"type":"end","stage":"ds-fetch-profiles","contract":1,"counters":{},"elapsed_s":0.1})";

}  // namespace

TEST_CASE("economy: a quiet account with an empty window costs no request", "[fetch_feeds_economy]") {
  Api api;
  const auto did = quiet_dids(1)[0];
  api.accounts[did] = {};
  api.start();
  const Out out = run(api, quiet_user_line(did, {}, 40) + end_line + "\n");
  CHECK(out.run.rc == ds::exit_code::ok);
  CHECK(out.run.http.requests == 0);
  CHECK(out.status.at(did) == "complete");
  CHECK(out.path.at(did) == "none");
  CHECK(out.run.end.counter("path_none") == 1);
}

TEST_CASE("economy: quiet accounts' windows are refreshed by getPosts, 25 URIs a request across accounts",
          "[fetch_feeds_economy]") {
  Api api;
  const auto dids = quiet_dids(3);
  std::string input;
  for (const auto& did : dids) {
    const auto stored = recent_posts(did, 10, 1);  // as stored yesterday: 1 like each
    api.accounts[did] = recent_posts(did, 10, 7);  // today: 7 likes each
    input += quiet_user_line(did, stored, 10);
  }
  api.start();
  const Out out = run(api, input + end_line + "\n");
  CHECK(out.run.rc == ds::exit_code::ok);
  CHECK(api.feed_requests == 0);
  CHECK(api.posts_requests == 2);  // 30 URIs: 25 + 5, shared by the three accounts
  for (const auto& b : api.batches) CHECK(b.size() <= 25);
  for (const auto& did : dids) {
    INFO(did);
    CHECK(out.path.at(did) == "posts");
    CHECK(out.status.at(did) == "complete");
    REQUIRE(out.likes.count(did) == 1);
    CHECK(out.likes.at(did).size() == 10);
    for (const auto& [uri, likes] : out.likes.at(did)) CHECK(likes == 7);  // the changed counts
  }
  CHECK(out.run.end.counter("requests_get_posts") == 2);
  CHECK(out.run.end.counter("requests_get_author_feed") == 0);
  CHECK(out.run.end.counter("path_posts") == 3);
}

TEST_CASE("economy: a post getPosts leaves out sends the account to its feed, the others stay cheap",
          "[fetch_feeds_economy]") {
  Api api;
  const auto dids = quiet_dids(2);
  const auto stored = recent_posts(dids[0], 5, 1);
  // Today one stored post is gone and a new one took its place: postsCount is unchanged.
  auto today = recent_posts(dids[0], 5, 2);
  today.erase(today.begin() + 2);
  today.insert(today.begin(), {"at://" + dids[0] + "/app.bsky.feed.post/new", now - hour / 2, 9});
  api.accounts[dids[0]] = today;
  api.accounts[dids[1]] = recent_posts(dids[1], 3, 4);
  api.start();
  const Out out = run(api, quiet_user_line(dids[0], stored, 5) + quiet_user_line(dids[1], recent_posts(dids[1], 3, 1), 3) +
                               end_line + "\n");
  CHECK(out.run.rc == ds::exit_code::ok);
  CHECK(out.path.at(dids[0]) == "feed");
  CHECK(out.status.at(dids[0]) == "complete");
  CHECK(out.likes.at(dids[0]).size() == 5);  // the feed's five: the new one in, the deleted one out
  CHECK(out.likes.at(dids[0]).count("at://" + dids[0] + "/app.bsky.feed.post/new") == 1);
  CHECK(out.likes.at(dids[0]).count("at://" + dids[0] + "/app.bsky.feed.post/2") == 0);
  CHECK(out.path.at(dids[1]) == "posts");
  CHECK(api.feed_requests == 1);
  CHECK(out.run.end.counter("reason_post_missing") == 1);
}

TEST_CASE("economy: a failed getPosts request sends its accounts to their feeds", "[fetch_feeds_economy]") {
  Api api;
  const auto did = quiet_dids(1)[0];
  api.accounts[did] = recent_posts(did, 4, 3);
  api.fail_posts = true;
  api.start();
  const Out out = run(api, quiet_user_line(did, recent_posts(did, 4, 1), 4) + end_line + "\n");
  CHECK(out.run.rc == ds::exit_code::ok);
  CHECK(out.path.at(did) == "feed");
  CHECK(out.status.at(did) == "complete");
  CHECK(out.likes.at(did).size() == 4);
  CHECK(out.run.end.counter("reason_posts_failed") == 1);
  CHECK(api.posts_requests == 4);  // the client's attempts for a 500
}

TEST_CASE("economy: a changed postsCount takes the feed", "[fetch_feeds_economy]") {
  Api api;
  const auto did = quiet_dids(1)[0];
  api.accounts[did] = recent_posts(did, 4, 3);
  api.start();
  const Out changed = run(api, quiet_user_line(did, recent_posts(did, 3, 1), 3, 4) + end_line + "\n");
  CHECK(changed.path.at(did) == "feed");
  CHECK(changed.run.end.counter("reason_posts_count_changed") == 1);
  CHECK(api.posts_requests == 0);
}

namespace {

// The world of the batch-holding tests: dids[0] changed (a new post), so it takes its feed, which
// answers after `feed_delay_ms`; dids[1..quiet] are quiet, with 3 stored window posts each whose
// likes rose from 1 to 5. Their URIs wait in the open getPosts batch while the feed is in flight.
std::vector<std::string> start_slow_head(Api& api, int quiet, int feed_delay_ms) {
  const auto dids = quiet_dids(quiet + 1);
  api.accounts[dids[0]] = recent_posts(dids[0], 2, 1);
  for (int i = 1; i <= quiet; ++i) api.accounts[dids[i]] = recent_posts(dids[i], 3, 5);
  api.feed_delay_ms = feed_delay_ms;
  api.start();
  return dids;
}
// The selection's line for dids[i] of that world.
std::string slow_head_line(const std::vector<std::string>& dids, std::size_t i) {
  return i == 0 ? quiet_user_line(dids[0], recent_posts(dids[0], 1, 1), 1, 2)
                : quiet_user_line(dids[i], recent_posts(dids[i], 3, 1), 3);
}
// Every quiet account of that world was refreshed by getPosts, with today's likes.
void check_quiet_refreshed(const Out& out, const std::vector<std::string>& dids) {
  for (std::size_t i = 1; i < dids.size(); ++i) {
    CHECK(out.path.at(dids[i]) == "posts");
    for (const auto& [uri, likes] : out.likes.at(dids[i])) CHECK(likes == 5);
  }
}

}  // namespace

TEST_CASE("economy: a partial getPosts batch waits for more URIs while other requests are in flight",
          "[fetch_feeds_economy]") {
  Api api;
  // dids[1] and dids[2] arrive 800 ms apart: input is quiet long enough for the old rule to send
  // dids[1] alone.
  const auto dids = start_slow_head(api, 2, 2000);
  const Out out = run_paced(api, {{slow_head_line(dids, 0) + slow_head_line(dids, 1), 800},
                                  {slow_head_line(dids, 2) + end_line + "\n", 0}});
  CHECK(out.run.rc == ds::exit_code::ok);
  CHECK(api.feed_requests == 1);
  REQUIRE(api.posts_requests == 1);  // one batch of 6 URIs, not 3 + 3
  CHECK(api.batches.at(0).size() == 6);
  CHECK(out.run.end.counter("get_posts_uris") == 6);
  CHECK(out.path.at(dids[0]) == "feed");
  check_quiet_refreshed(out, dids);
}

TEST_CASE("economy: a full window alone does not send a partial getPosts batch", "[fetch_feeds_economy]") {
  Api api;
  // A window of 3 users is full once dids[2] is read, as it stays full under the rate cap: the
  // batch must wait for dids[3] rather than go with 6 URIs, since the output waits on dids[0].
  const auto dids = start_slow_head(api, 3, 1500);
  std::string input;
  for (std::size_t i = 0; i < dids.size(); ++i) input += slow_head_line(dids, i);
  auto options = options_for(api);
  options.max_users_in_flight = 3;
  const Out out = collect(fetch_fixture::run_fetch_stage<ds::feeds::FeedFetcher>(
      "ds-fetch-feeds", input + end_line + "\n", options, fetch_fixture::test_http()));
  CHECK(out.run.rc == ds::exit_code::ok);
  CHECK(api.feed_requests == 1);
  REQUIRE(api.posts_requests == 1);  // one batch of 9 URIs, not 6 + 3
  CHECK(api.batches.at(0).size() == 9);
  check_quiet_refreshed(out, dids);
}

TEST_CASE("economy: with nothing else in flight, a partial getPosts batch goes when input pauses",
          "[fetch_feeds_economy]") {
  Api api;
  const auto dids = quiet_dids(2);
  for (const auto& did : dids) api.accounts[did] = recent_posts(did, 3, 5);
  api.start();
  // Holding it longer would only stall the output: nothing else is being fetched.
  const Out out = run_paced(api, {{quiet_user_line(dids[0], recent_posts(dids[0], 3, 1), 3), 1000},
                                  {quiet_user_line(dids[1], recent_posts(dids[1], 3, 1), 3) + end_line + "\n", 0}});
  CHECK(out.run.rc == ds::exit_code::ok);
  REQUIRE(api.posts_requests == 2);
  CHECK(api.batches.at(0).size() == 3);
  CHECK(api.batches.at(0).front().find(dids[0]) != std::string::npos);
  CHECK(out.run.end.counter("get_posts_uris") == 6);
}

TEST_CASE("economy: a drop of postsCount that getPosts explains costs no feed request; one it does not, the feed",
          "[fetch_feeds_economy]") {
  Api api;
  const auto dids = quiet_dids(2);
  // Both had 5 window posts and have 4 today (postsCount 5 -> 4). dids[0] lost one of its window
  // posts; dids[1] lost an older one, so getPosts misses none: only its feed can say more.
  auto first = recent_posts(dids[0], 5, 3);
  first.erase(first.begin() + 1);
  api.accounts[dids[0]] = first;
  api.accounts[dids[1]] = recent_posts(dids[1], 5, 3);
  api.start();
  const Out out = run(api, quiet_user_line(dids[0], recent_posts(dids[0], 5, 1), 5, 4) +
                               quiet_user_line(dids[1], recent_posts(dids[1], 5, 1), 5, 4) + end_line + "\n");
  CHECK(out.run.rc == ds::exit_code::ok);
  CHECK(out.path.at(dids[0]) == "posts");
  CHECK(out.status.at(dids[0]) == "complete");
  CHECK(out.likes.at(dids[0]).size() == 4);  // the deleted one is not written: ds-load marks it deleted
  CHECK(out.likes.at(dids[0]).count("at://" + dids[0] + "/app.bsky.feed.post/1") == 0);
  for (const auto& [uri, likes] : out.likes.at(dids[0])) CHECK(likes == 3);
  CHECK(out.path.at(dids[1]) == "feed");
  CHECK(out.likes.at(dids[1]).size() == 5);
  CHECK(api.feed_requests == 1);  // dids[1]'s only
  CHECK(out.run.end.counter("reason_posts_dropped") == 1);
  CHECK(out.run.end.counter("reason_drop_unexplained") == 1);
}
