// Tests for ds-fetch-profiles' logic against a fake getProfiles on 127.0.0.1 (cpp-httplib):
// batches of at most 25, gone/failed/ok outcomes, duplicates, retries and input-order output.
#include <unistd.h>

#include <chrono>
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
#include "ds/http.hpp"
#include "ds/ndjson.hpp"
#include "ds/progress.hpp"
#include "ds/record_input.hpp"
#include "ds/appview/requests.hpp"
#include "ds/records.hpp"
#include "fetch_stage_fixture.hpp"
#include "profile_fetcher.hpp"

namespace {

// A getProfiles that knows some accounts and can misbehave on request.
class FakeProfiles {
 public:
  void start() { endpoint.start(); }
  std::string base() const { return endpoint.base(); }
  std::vector<std::vector<std::string>> batches() {
    std::lock_guard<std::mutex> l(mu);
    return seen;
  }

  std::map<std::string, std::string> known;  // did -> extra JSON fields of its profile
  std::set<std::string> poison_500;           // a batch holding one of these always gets 500
  std::set<std::string> poison_400;           // a batch holding one of these gets 400
  int slow_first_ms = 0;                      // the first request answers this late
  bool truncate_first = false;

 private:
  void handle(const httplib::Request& req, httplib::Response& res) {
    std::vector<std::string> actors;
    for (std::size_t i = 0; i < req.get_param_value_count("actors"); ++i)
      actors.push_back(req.get_param_value("actors", i));
    std::size_t n;
    {
      std::lock_guard<std::mutex> l(mu);
      seen.push_back(actors);
      n = seen.size();
    }
    if (n == 1 && slow_first_ms) std::this_thread::sleep_for(std::chrono::milliseconds(slow_first_ms));
    if (actors.size() > 25) {
      res.status = 400;
      res.set_content(R"({"error":"InvalidRequest","message":"too many actors"})", "application/json; charset=utf-8");
      return;
    }
    for (const auto& a : actors) {
      if (poison_500.count(a)) {
        res.status = 500;
        res.set_content(R"({"error":"InternalServerError"})", "application/json; charset=utf-8");
        return;
      }
      if (poison_400.count(a)) {
        res.status = 400;
        res.set_content(R"({"error":"InvalidRequest","message":"Error: actors must be a valid did or a handle"})",
                        "application/json; charset=utf-8");
        return;
      }
    }
    std::string body = "{\"profiles\":[";
    bool first = true;
    for (const auto& a : actors) {
      auto it = known.find(a);
      if (it == known.end()) continue;  // unknown/deleted: silently left out, like the AppView
      body += (first ? "" : ",") + std::string("{\"did\":\"") + a + "\",\"handle\":\"" + a.substr(8) + ".test\"" +
              it->second + "}";
      first = false;
    }
    body += "]}";
    if (truncate_first && n == 1) body.resize(body.size() / 2);
    res.set_content(body, "application/json; charset=utf-8");
  }

  std::mutex mu;
  std::vector<std::vector<std::string>> seen;
  fetch_fixture::LoopbackEndpoint endpoint{
      "/xrpc/app.bsky.actor.getProfiles",
      [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); }};
};

std::string user_line(const std::string& did) {
  ds::UserRecord u;
  u.did = did;
  u.handle = "stored-" + did.substr(8) + ".test";
  u.as_of = *ds::parse_timestamp("2026-11-29T06:00:00Z");
  std::string line;
  ds::encode(line, u);
  return line;
}

struct Rec {
  std::string type, did, status, error, handle, display_name, stage;
  std::int64_t followers = -1, following = -1, posts = -1;
  bool has_profile = false;
};

Rec parse(const std::string& line) {
  simdjson::dom::parser p;
  simdjson::dom::element e = p.parse(line);
  Rec r;
  using fetch_fixture::text_of;
  fetch_fixture::read_head(e, r);
  r.status = text_of(e, "profileStatus");
  r.error = text_of(e, "profileError");
  simdjson::dom::element prof;
  if (!e["profile"].get(prof) && prof.is_object()) {
    r.has_profile = true;
    r.handle = std::string(prof["handle"].get_string().value());
    r.display_name = text_of(prof, "displayName");
    r.followers = prof["followers"].get_int64().value();
    r.following = prof["following"].get_int64().value();
    r.posts = prof["posts"].get_int64().value();
  }
  return r;
}

struct Run : fetch_fixture::StageRun<ds::profiles::ProfileFetcher> {
  std::vector<Rec> recs;
  std::vector<Rec> users() const {
    std::vector<Rec> u;
    for (const auto& r : recs)
      if (r.type == "user") u.push_back(r);
    return u;
  }
};

ds::HttpOptions test_http(int concurrency = 4) { return fetch_fixture::test_http(concurrency, 3); }

Run run_stage(const std::string& input, const FakeProfiles& fake, ds::HttpOptions ho = test_http(),
              std::size_t max_buffered = 2000) {
  ds::profiles::FetcherOptions o;
  o.base_url = fake.base();
  o.max_buffered_users = max_buffered;
  Run run{fetch_fixture::run_fetch_stage<ds::profiles::ProfileFetcher>("ds-fetch-profiles", input, o, ho), {}};
  CHECK(run.shown.posts == 0);
  for (const auto& line : run.lines) run.recs.push_back(parse(line));
  return run;
}

std::string did_n(int i) { return "did:plc:user" + std::to_string(i); }

// The same over input that arrives in bursts (each chunk, then its pause), as from
// ds-select-users while its query streams.
Run run_paced(std::vector<fetch_fixture::PacedChunk> chunks, const FakeProfiles& fake) {
  ds::profiles::FetcherOptions o;
  o.base_url = fake.base();
  Run run{fetch_fixture::run_fetch_stage_paced<ds::profiles::ProfileFetcher>("ds-fetch-profiles", std::move(chunks),
                                                                              o, test_http()),
          {}};
  for (const auto& line : run.lines) run.recs.push_back(parse(line));
  return run;
}

const std::string end_line = R"({"type":"end","stage":"ds-select-users","contract":1,"counters":{"users":60},"elapsed_s":0.1})";

}  // namespace

TEST_CASE("fetch-profiles: 60 users go out in batches of at most 25, answers in input order", "[fetch_profiles]") {
  FakeProfiles fake;
  std::string input;
  for (int i = 0; i < 60; ++i) {
    if (i % 10 != 9) fake.known[did_n(i)] = ",\"followersCount\":" + std::to_string(i) + ",\"followsCount\":\"7\"";
    input += user_line(did_n(i));
  }
  fake.slow_first_ms = 150;  // the first batch answers last: output order must not follow
  fake.start();
  input += end_line + "\n";
  const Run run = run_stage(input, fake);
  CHECK(run.rc == ds::exit_code::ok);

  const auto batches = fake.batches();
  CHECK(batches.size() == 3);
  std::set<std::string> asked;
  for (const auto& b : batches) {
    CHECK(b.size() <= 25);
    CHECK_FALSE(b.empty());
    for (const auto& d : b) CHECK(asked.insert(d).second);  // each did asked once
  }
  CHECK(asked.size() == 60);

  const auto users = run.users();
  REQUIRE(users.size() == 60);
  for (int i = 0; i < 60; ++i) {
    INFO(i);
    CHECK(users[i].did == did_n(i));
    if (i % 10 == 9) {
      CHECK(users[i].status == "gone");
      CHECK_FALSE(users[i].has_profile);
    } else {
      CHECK(users[i].status == "ok");
      CHECK(users[i].handle == did_n(i).substr(8) + ".test");
      CHECK(users[i].followers == i);
      CHECK(users[i].following == 7);
      CHECK(users[i].posts == 0);  // missing count = 0
    }
  }
  CHECK(run.end.stage == "ds-fetch-profiles");
  CHECK(run.end.counter("users") == 60);
  CHECK(run.end.counter("ok") == 54);
  CHECK(run.end.counter("gone") == 6);
  CHECK(run.end.counter("failed") == 0);
  CHECK(run.end.counter("requests") == 3);
  CHECK(run.end.counter("requests_per_1000_users") == 50);
  REQUIRE(run.recs.size() == 62);
  CHECK(run.recs[60].stage == "ds-select-users");  // upstream end first, then ours
  CHECK(run.recs[61].stage == "ds-fetch-profiles");
}

TEST_CASE("fetch-profiles: a batch that keeps failing marks its users failed, never drops them", "[fetch_profiles]") {
  FakeProfiles fake;
  std::string input;
  for (int i = 0; i < 30; ++i) {
    fake.known[did_n(i)] = "";
    input += user_line(did_n(i));
  }
  fake.poison_500.insert(did_n(3));  // in the first batch of 25
  fake.start();
  const Run run = run_stage(input, fake);
  CHECK(run.rc == ds::exit_code::partial);
  const auto users = run.users();
  REQUIRE(users.size() == 30);
  for (int i = 0; i < 30; ++i) {
    INFO(i);
    CHECK(users[i].did == did_n(i));
    if (i < 25) {
      CHECK(users[i].status == "failed");
      CHECK_THAT(users[i].error, Catch::Contains("500"));
    } else {
      CHECK(users[i].status == "ok");
    }
  }
  // 3 attempts of the bad batch + 1 good one.
  CHECK(fake.batches().size() == 4);
  CHECK(run.stats.failed == 25);
  // No upstream end in the input: no end of ours.
  for (const auto& r : run.recs) CHECK(r.type != "end");
}

TEST_CASE("fetch-profiles: a 400 batch is split so only the bad actor fails", "[fetch_profiles]") {
  FakeProfiles fake;
  std::string input;
  for (int i = 0; i < 8; ++i) {
    fake.known[did_n(i)] = "";
    input += user_line(did_n(i));
  }
  fake.poison_400.insert(did_n(5));
  fake.start();
  const Run run = run_stage(input, fake);
  CHECK(run.rc == ds::exit_code::partial);
  const auto users = run.users();
  REQUIRE(users.size() == 8);
  for (int i = 0; i < 8; ++i) {
    INFO(i);
    CHECK(users[i].status == (i == 5 ? "failed" : "ok"));
  }
  CHECK_THAT(users[5].error, Catch::Contains("400"));
  // 8 -> 4+4 -> 2+2 (of the bad half) -> 1+1: 7 requests, none retried (400 is final).
  CHECK(fake.batches().size() == 7);
}

TEST_CASE("fetch-profiles: repeated dids are asked once and every copy gets the answer", "[fetch_profiles]") {
  FakeProfiles fake;
  fake.known["did:plc:a"] = R"(,"displayName":"Ann","postsCount":4)";
  fake.known["did:plc:b"] = "";
  fake.start();
  // The third copy of a arrives after a's answer may already be in: still answered.
  const Run run = run_stage(user_line("did:plc:a") + user_line("did:plc:b") + user_line("did:plc:a") +
                                user_line("did:plc:zz") + user_line("did:plc:a"),
                            fake);
  CHECK(run.rc == ds::exit_code::ok);
  const auto users = run.users();
  REQUIRE(users.size() == 5);
  CHECK(users[0].did == "did:plc:a");
  CHECK(users[2].did == "did:plc:a");
  CHECK(users[4].did == "did:plc:a");
  for (int i : {0, 2, 4}) {
    CHECK(users[i].status == "ok");
    CHECK(users[i].display_name == "Ann");
    CHECK(users[i].posts == 4);
  }
  CHECK(users[3].status == "gone");
  const auto batches = fake.batches();
  REQUIRE(batches.size() == 1);
  CHECK(batches[0] == std::vector<std::string>{"did:plc:a", "did:plc:b", "did:plc:zz"});
  CHECK(run.stats.duplicates == 2);
}

TEST_CASE("fetch-profiles: an unparsable answer is asked again", "[fetch_profiles]") {
  FakeProfiles fake;
  fake.known["did:plc:a"] = "";
  fake.truncate_first = true;
  fake.start();
  const Run run = run_stage(user_line("did:plc:a"), fake);
  CHECK(run.rc == ds::exit_code::ok);
  REQUIRE(run.users().size() == 1);
  CHECK(run.users()[0].status == "ok");
  CHECK(fake.batches().size() == 2);
}

TEST_CASE("fetch-profiles: a small buffer still keeps order and loses nobody", "[fetch_profiles]") {
  FakeProfiles fake;
  std::string input;
  for (int i = 0; i < 100; ++i) {
    fake.known[did_n(i)] = "";
    input += user_line(did_n(i));
    if (i == 40) input += R"({"type":"other","x":1})" "\n";  // forwarded unchanged
  }
  fake.slow_first_ms = 100;
  fake.start();
  const Run run = run_stage(input, fake, test_http(2), 30);
  CHECK(run.rc == ds::exit_code::ok);
  const auto users = run.users();
  REQUIRE(users.size() == 100);
  for (int i = 0; i < 100; ++i) CHECK(users[i].did == did_n(i));
  int others = 0;
  for (const auto& r : run.recs) others += r.type == "other";
  CHECK(others == 1);
  for (const auto& b : fake.batches()) CHECK(b.size() <= 25);
}

TEST_CASE("fetch-profiles: URLs repeat actors= and encode each", "[fetch_profiles]") {
  CHECK(ds::appview::get_profiles_url("https://x.test/", {"did:plc:a", "b.test"}) ==
        "https://x.test/xrpc/app.bsky.actor.getProfiles?actors=did%3Aplc%3Aa&actors=b.test");
}

TEST_CASE("fetch-profiles: health check", "[fetch_profiles]") {
  FakeProfiles fake;
  fake.known["bsky.app"] = "";
  fake.start();
  {
    ds::HttpClient http(test_http());
    CHECK(ds::profiles::health_check(http, fake.base(), "bsky.app").empty());
    // An answer that leaves the account out (as for an unknown actor) is a failed check.
    CHECK(ds::profiles::health_check(http, fake.base(), "nobody.test") ==
          "API health check failed: " + fake.base() + "/xrpc/app.bsky.actor.getProfiles?actors=nobody.test : "
          "the answer has no profile for nobody.test");
  }
  {
    auto ho = test_http();
    ho.max_attempts = 1;
    ds::HttpClient http(ho);
    const std::string msg = ds::profiles::health_check(http, "http://127.0.0.1:9", "bsky.app");
    CHECK(msg == "API health check failed: http://127.0.0.1:9/xrpc/app.bsky.actor.getProfiles?actors=bsky.app : " +
                     msg.substr(msg.find(" : ") + 3));
    CHECK_THAT(msg, Catch::Contains("onnect"));  // curl's "Couldn't connect" / "Failed to connect"
  }
}

TEST_CASE("fetch-profiles: a partial batch waits for more users while another batch is in flight",
          "[fetch_profiles]") {
  FakeProfiles fake;
  for (int i = 0; i < 35; ++i) fake.known[did_n(i)] = R"(,"followersCount":1)";
  fake.slow_first_ms = 2000;  // the first full batch is still in flight when input pauses
  fake.start();
  std::string first, second;
  for (int i = 0; i < 30; ++i) first += user_line(did_n(i));
  for (int i = 30; i < 35; ++i) second += user_line(did_n(i));
  // 800 ms of quiet input: the old rule sent users 25..29 alone, then 30..34 alone.
  const Run run = run_paced({{first, 800}, {second + end_line + "\n", 0}}, fake);
  CHECK(run.rc == ds::exit_code::ok);
  const auto batches = fake.batches();
  REQUIRE(batches.size() == 2);
  CHECK(batches[0].size() == 25);
  CHECK(batches[1].size() == 10);
  const auto users = run.users();
  REQUIRE(users.size() == 35);
  for (int i = 0; i < 35; ++i) {
    CHECK(users[static_cast<std::size_t>(i)].did == did_n(i));
    CHECK(users[static_cast<std::size_t>(i)].status == "ok");
  }
}

TEST_CASE("fetch-profiles: a full window holds its partial batch while the head's batch is in flight",
          "[fetch_profiles]") {
  FakeProfiles fake;
  for (int i = 0; i < 60; ++i) fake.known[did_n(i)] = R"(,"followersCount":1)";
  fake.slow_first_ms = 1000;  // users 0..24 are in flight while 25..29 fill the window of 30
  fake.start();
  std::string input;
  for (int i = 0; i < 60; ++i) input += user_line(did_n(i));
  input += end_line + "\n";
  // The old rule sent the open batch at every wait of a full window: 25..29 alone, and so on.
  const Run run = run_stage(input, fake, test_http(), 30);
  CHECK(run.rc == ds::exit_code::ok);
  const auto batches = fake.batches();
  REQUIRE(batches.size() == 3);  // ceil(60 / 25)
  CHECK(batches[0].size() == 25);
  CHECK(batches[1].size() == 25);
  CHECK(batches[2].size() == 10);
  const auto users = run.users();
  REQUIRE(users.size() == 60);
  for (int i = 0; i < 60; ++i) CHECK(users[static_cast<std::size_t>(i)].did == did_n(i));
}

TEST_CASE("fetch-profiles: with nothing in flight, a partial batch goes when input pauses", "[fetch_profiles]") {
  FakeProfiles fake;
  for (int i = 0; i < 10; ++i) fake.known[did_n(i)] = R"(,"followersCount":1)";
  fake.start();
  std::string first, second;
  for (int i = 0; i < 5; ++i) first += user_line(did_n(i));
  for (int i = 5; i < 10; ++i) second += user_line(did_n(i));
  // Holding the first five longer would only stall everything downstream.
  const Run run = run_paced({{first, 1000}, {second + end_line + "\n", 0}}, fake);
  CHECK(run.rc == ds::exit_code::ok);
  const auto batches = fake.batches();
  REQUIRE(batches.size() == 2);
  CHECK(batches[0].size() == 5);
  CHECK(batches[0].front() == did_n(0));
  CHECK(run.users().size() == 10);
}
