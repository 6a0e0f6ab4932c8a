// Tests for ds-fetch-feeds' logic against a fake getAuthorFeed on 127.0.0.1 (cpp-httplib) and the
// fake AppView: paging, window stop and economy, reposts, gone/503/cap/looping cursors, ordering.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
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
#include "feed_fetcher.hpp"
#include "fetch_stage_fixture.hpp"
#include "server.hpp"

namespace {

using ds::Micros;

const Micros base_time = *ds::parse_timestamp("2026-11-29T06:00:00Z");
constexpr Micros hour = 3600 * ds::micros_per_second;

struct FakeItem {
  std::string author;  // post.author.did
  std::string rkey;
  Micros created, indexed;
  int likes = 0;
  std::optional<Micros> repost_time;  // a repost of one's own post, sorted by the repost's time
  Micros sort() const { return std::min(created, indexed); }
  Micros feed_time() const { return repost_time ? *repost_time : sort(); }
};

struct FakeActor {
  std::vector<FakeItem> items;  // newest first
  int fail_first = 0;           // this many requests answer fail_status first
  int fail_status = 503;
  bool gone = false;            // 400 Profile not found
  bool stuck_cursor = false;    // always the same cursor
  bool real_cursor = false;     // "<ms>__<cid>" as Bluesky's AppView writes it, not a timestamp
  bool truncate_first = false;  // first answer cut mid-JSON
  int delay_ms = 0;
};

// A getAuthorFeed that pages its canned items by sortAt like the AppView: newest first, the
// cursor is the last item's sortAt, a missing cursor means the end.
class FakeAppView {
 public:
  void start() { endpoint.start(); }
  std::string base() const { return endpoint.base(); }
  int hits(const std::string& actor) {
    std::lock_guard<std::mutex> l(mu);
    return hit_count[actor];
  }
  int max_limit() {
    std::lock_guard<std::mutex> l(mu);
    return max_limit_seen;
  }

  std::map<std::string, FakeActor> actors;  // set up before start()

 private:
  static std::string item_json(const FakeItem& it, const std::string& actor) {
    std::string j = R"({"post":{"uri":"at://)" + it.author + "/app.bsky.feed.post/" + it.rkey +
                    R"(","cid":"bafy","author":{"did":")" + it.author +
                    R"(","handle":"x.test"},"record":{"$type":"app.bsky.feed.post","createdAt":")" +
                    ds::format_timestamp(it.created) + R"(","text":"t"},"replyCount":0,"repostCount":0,"likeCount":)" +
                    std::to_string(it.likes) + R"(,"quoteCount":0,"indexedAt":")" + ds::format_timestamp(it.indexed) +
                    "\"}";
    if (it.author != actor || it.repost_time)
      j += R"(,"reason":{"$type":"app.bsky.feed.defs#reasonRepost","by":{"did":")" + actor + "\"}}";
    return j + "}";
  }

  void handle(const httplib::Request& req, httplib::Response& res) {
    const std::string actor = req.get_param_value("actor");
    const int limit = std::stoi(req.get_param_value("limit"));
    const std::string cursor = req.has_param("cursor") ? req.get_param_value("cursor") : "";
    FakeActor a;
    int n;
    {
      std::lock_guard<std::mutex> l(mu);
      n = ++hit_count[actor];
      max_limit_seen = std::max(max_limit_seen, limit);
      auto it = actors.find(actor);
      if (it != actors.end()) a = it->second;
      else a.gone = true;
    }
    if (a.delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(a.delay_ms));
    if (a.gone) {
      res.status = 400;
      res.set_content(R"({"error":"InvalidRequest","message":"Profile not found"})", "application/json");
      return;
    }
    if (n <= a.fail_first) {
      res.status = a.fail_status;
      res.set_content(R"({"error":"InternalServerError","message":"try again"})", "application/json");
      return;
    }
    if (a.stuck_cursor) {
      res.set_content("{\"feed\":[" + item_json(a.items.at(0), actor) + "],\"cursor\":\"2020-01-01T00:00:00.000Z\"}",
                      "application/json");
      return;
    }
    std::vector<const FakeItem*> page;
    std::size_t i = 0;
    if (!cursor.empty()) {
      const Micros c = a.real_cursor ? std::stoll(cursor.substr(0, cursor.find("__"))) * 1000 : *ds::parse_timestamp(cursor);
      while (i < a.items.size() && a.items[i].feed_time() >= c) ++i;
    }
    for (; i < a.items.size() && static_cast<int>(page.size()) < limit; ++i) page.push_back(&a.items[i]);
    std::string body = "{\"feed\":[";
    for (std::size_t k = 0; k < page.size(); ++k) body += (k ? "," : "") + item_json(*page[k], actor);
    body += "]";
    const Micros last = i < a.items.size() ? page.back()->feed_time() : 0;
    if (i < a.items.size() && a.real_cursor) body += ",\"cursor\":\"" + std::to_string(last / 1000) + "__bafyreilast\"";
    else if (i < a.items.size()) body += ",\"cursor\":\"" + ds::format_timestamp(last) + "\"";
    body += "}";
    if (a.truncate_first && n == 1) body = body.substr(0, body.size() / 2);
    // The AppView's exact content type; cpp-httplib also leaves it uncompressed, which keeps its
    // slow brotli encoder out of the test's timing.
    res.set_content(body, "application/json; charset=utf-8");
  }

  std::mutex mu;
  std::map<std::string, int> hit_count;
  int max_limit_seen = 0;
  fetch_fixture::LoopbackEndpoint endpoint{
      "/xrpc/app.bsky.feed.getAuthorFeed",
      [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); }};
};

// `count` own posts one hour apart from base_time back, with `reposts_every`-th item a repost.
std::vector<FakeItem> history(const std::string& did, int count, int reposts_every = 0) {
  std::vector<FakeItem> v;
  for (int i = 0; i < count; ++i) {
    const Micros t = base_time - i * hour;
    const bool repost = reposts_every > 0 && i % reposts_every == reposts_every - 1;
    v.push_back({repost ? std::string("did:plc:someoneelse") : did, "p" + std::to_string(i), t, t + 1000, i % 7, std::nullopt});
  }
  return v;
}

std::string user_line(const std::string& did, std::optional<Micros> since,
                      ds::ProfileStatus status = ds::ProfileStatus::ok,
                      std::optional<std::string> backfill_cursor = std::nullopt) {
  ds::UserRecord u;
  u.did = did;
  u.handle = did.substr(8) + ".test";
  u.as_of = base_time + hour;
  u.since = since;
  u.backfill_cursor = std::move(backfill_cursor);
  u.profile_status = status;
  if (status == ds::ProfileStatus::ok) u.profile = ds::Profile{u.handle, std::nullopt, std::nullopt, 1, 2, 3};
  std::string line;
  ds::encode(line, u);
  return line;
}

struct Rec {
  std::string type, did, uri, status, error, stage, cursor;
  std::int64_t pages = 0, posts = 0, requests = 0;
  Micros sort_at = 0;
};

Rec parse(const std::string& line) {
  simdjson::dom::parser p;
  simdjson::dom::element e = p.parse(line);
  Rec r;
  using fetch_fixture::text_of;
  fetch_fixture::read_head(e, r);
  r.uri = text_of(e, "uri");
  if (const std::string t = text_of(e, "sortAt"); !t.empty()) r.sort_at = *ds::parse_timestamp(t);
  simdjson::dom::element feed;
  if (!e["feed"].get(feed)) {
    r.status = std::string(feed["status"].get_string().value());
    r.pages = feed["pages"].get_int64().value();
    r.posts = feed["posts"].get_int64().value();
    r.requests = feed["requests"].get_int64().value();
    r.error = text_of(feed, "error");
    r.cursor = text_of(feed, "cursor");
  }
  return r;
}

struct Run : fetch_fixture::StageRun<ds::feeds::FeedFetcher> {
  std::vector<Rec> recs;
  const Rec& user(const std::string& did) const {
    for (const auto& r : recs)
      if (r.type == "user" && r.did == did) return r;
    FAIL("no user record for " << did);
    return recs.front();
  }
  int posts_of(const std::string& did) const {
    int n = 0;
    for (const auto& r : recs) n += r.type == "post" && r.did == did;
    return n;
  }
};

using fetch_fixture::test_http;

// Runs the stage over `input` (from a file descriptor, like stdin) and collects its output.
Run run_stage(const std::string& input, ds::feeds::FetcherOptions fo, ds::HttpOptions ho = test_http()) {
  Run run{fetch_fixture::run_fetch_stage<ds::feeds::FeedFetcher>("ds-fetch-feeds", input, fo, ho), {}};
  CHECK(run.shown.posts == run.stats.posts);
  for (const auto& line : run.lines) run.recs.push_back(parse(line));
  return run;
}

ds::feeds::FetcherOptions options_for(const FakeAppView& fake) {
  ds::feeds::FetcherOptions o;
  o.base_url = fake.base();
  return o;
}

// The ordering contract: each user's posts come right before its user record, users in input
// order, nothing else in between.
void check_contiguous(const Run& run, const std::vector<std::string>& user_order) {
  std::vector<std::string> seen_users;
  std::set<std::string> closed;
  std::string open_did;
  for (const auto& r : run.recs) {
    if (r.type == "post") {
      INFO("post of " << r.did);
      CHECK(closed.count(r.did) == 0);
      if (!open_did.empty()) CHECK(r.did == open_did);
      open_did = r.did;
    } else if (r.type == "user") {
      if (!open_did.empty()) CHECK(open_did == r.did);
      open_did.clear();
      closed.insert(r.did);
      seen_users.push_back(r.did);
    }
  }
  CHECK(open_did.empty());
  CHECK(seen_users == user_order);
}

const std::string end_line = R"({"type":"end","stage":"ds-fetch-profiles","contract":1,"counters":{"users":1},"elapsed_s":0.1})";

}  // namespace

TEST_CASE("fetch-feeds: a backfill pages to the end and drops reposts of others", "[fetch_feeds]") {
  FakeAppView fake;
  fake.actors["did:plc:alice"].items = history("did:plc:alice", 270, 9);  // every 9th a repost: 30
  fake.start();
  const Run run = run_stage(user_line("did:plc:alice", std::nullopt) + end_line + "\n", options_for(fake));
  CHECK(run.rc == ds::exit_code::ok);
  const Rec& u = run.user("did:plc:alice");
  CHECK(u.status == "complete");
  CHECK(u.posts == 240);
  CHECK(u.pages == 3);  // 270 items at 100 per page
  CHECK(u.requests == 3);
  CHECK(run.posts_of("did:plc:alice") == 240);
  CHECK(run.posts_of("did:plc:someoneelse") == 0);
  CHECK(fake.hits("did:plc:alice") == 3);
  CHECK(fake.max_limit() == 100);
  CHECK(run.stats.others_dropped == 30);
  // Posts newest first, as paged.
  Micros last = base_time + 1;
  for (const auto& r : run.recs)
    if (r.type == "post") {
      CHECK(r.sort_at < last);
      last = r.sort_at;
    }
  // Upstream end re-emitted, then ours.
  REQUIRE(run.recs.size() >= 2);
  CHECK(run.recs[run.recs.size() - 2].stage == "ds-fetch-profiles");
  CHECK(run.recs.back().stage == "ds-fetch-feeds");
  CHECK(run.end.counter("posts") == 240);
  CHECK(run.end.counter("complete") == 1);
  CHECK(run.end.counter("requests") == 3);
  CHECK(run.end.counter("users") == 1);
}

TEST_CASE("fetch-feeds: an incremental run stops at the window", "[fetch_feeds]") {
  FakeAppView fake;
  fake.actors["did:plc:bob"].items = history("did:plc:bob", 300);
  fake.actors["did:plc:carol"].items = history("did:plc:carol", 300);
  fake.start();
  // bob: 11 posts inside (hours 0..10), the first page's cursor (hour 99) is already older.
  // carol: 151 posts inside (hours 0..150): needs page 2, whose cursor (hour 199) ends it.
  const Run run = run_stage(user_line("did:plc:bob", base_time - 10 * hour - hour / 2) +
                                user_line("did:plc:carol", base_time - 150 * hour - hour / 2),
                            options_for(fake));
  CHECK(run.rc == ds::exit_code::ok);
  const Rec& bob = run.user("did:plc:bob");
  CHECK(bob.status == "complete");
  CHECK(bob.posts == 11);
  CHECK(bob.pages == 1);
  CHECK(fake.hits("did:plc:bob") == 1);
  const Rec& carol = run.user("did:plc:carol");
  CHECK(carol.status == "complete");
  CHECK(carol.posts == 151);
  CHECK(carol.pages == 2);
  CHECK(fake.hits("did:plc:carol") == 2);
  for (const auto& r : run.recs)
    if (r.type == "post" && r.did == "did:plc:bob") CHECK(r.sort_at >= base_time - 10 * hour - hour / 2);
  // No end record from upstream: none of ours either.
  for (const auto& r : run.recs) CHECK(r.type != "end");
}

TEST_CASE("fetch-feeds: gone, retried 503, failures, skipped and repeated users", "[fetch_feeds]") {
  FakeAppView fake;
  fake.actors["did:plc:gone"].gone = true;
  fake.actors["did:plc:flaky"].items = history("did:plc:flaky", 5);
  fake.actors["did:plc:flaky"].fail_first = 2;
  fake.actors["did:plc:down"].items = history("did:plc:down", 5);
  fake.actors["did:plc:down"].fail_first = 1000;
  fake.actors["did:plc:trunc"].items = history("did:plc:trunc", 5);
  fake.actors["did:plc:trunc"].truncate_first = true;
  fake.actors["did:plc:forbidden"].items = history("did:plc:forbidden", 5);
  fake.actors["did:plc:forbidden"].fail_first = 1000;
  fake.actors["did:plc:forbidden"].fail_status = 403;
  fake.actors["did:plc:dup"].items = history("did:plc:dup", 5);
  fake.start();
  auto ho = test_http();
  ho.max_attempts = 3;
  const Run run = run_stage(user_line("did:plc:gone", std::nullopt) + user_line("did:plc:flaky", std::nullopt) +
                                user_line("did:plc:down", std::nullopt) + user_line("did:plc:trunc", std::nullopt) +
                                user_line("did:plc:forbidden", std::nullopt) +
                                user_line("did:plc:noprofile", std::nullopt, ds::ProfileStatus::gone) +
                                user_line("did:plc:dup", std::nullopt) + user_line("did:plc:dup", std::nullopt),
                            options_for(fake), ho);
  CHECK(run.rc == ds::exit_code::partial);

  CHECK(run.user("did:plc:gone").status == "gone");
  CHECK(fake.hits("did:plc:gone") == 1);  // not retried
  CHECK(run.posts_of("did:plc:gone") == 0);

  CHECK(run.user("did:plc:flaky").status == "complete");
  CHECK(run.user("did:plc:flaky").posts == 5);
  CHECK(run.user("did:plc:flaky").requests == 3);  // retries counted
  CHECK(fake.hits("did:plc:flaky") == 3);

  CHECK(run.user("did:plc:down").status == "failed");
  CHECK_THAT(run.user("did:plc:down").error, Catch::Contains("503"));
  CHECK(fake.hits("did:plc:down") == 3);  // bounded by max_attempts

  CHECK(run.user("did:plc:trunc").status == "complete");  // unparsable page asked again
  CHECK(run.user("did:plc:trunc").posts == 5);
  CHECK(fake.hits("did:plc:trunc") == 2);

  CHECK(run.user("did:plc:forbidden").status == "failed");
  CHECK(fake.hits("did:plc:forbidden") == 1);  // 403 is not retried
  CHECK_THAT(run.user("did:plc:forbidden").error, Catch::Contains("403"));

  CHECK(run.user("did:plc:noprofile").status == "skipped");
  CHECK(fake.hits("did:plc:noprofile") == 0);

  // The repeated did is fetched once; the second copy is skipped (one snapshot, right totals).
  CHECK(fake.hits("did:plc:dup") == 1);
  CHECK(run.posts_of("did:plc:dup") == 5);
  int dup_users = 0, dup_skipped = 0;
  for (const auto& r : run.recs)
    if (r.type == "user" && r.did == "did:plc:dup") {
      ++dup_users;
      dup_skipped += r.status == "skipped";
    }
  CHECK(dup_users == 2);
  CHECK(dup_skipped == 1);
  CHECK(run.stats.failed == 2);
  CHECK(run.stats.gone == 1);
  CHECK(run.stats.skipped == 2);
  CHECK(run.stats.duplicates == 1);
}

TEST_CASE("fetch-feeds: the cap ends a window as capped, a backfill as partial with its cursor", "[fetch_feeds]") {
  FakeAppView fake;
  fake.actors["did:plc:big"].items = history("did:plc:big", 450);
  fake.actors["did:plc:small"].items = history("did:plc:small", 150);
  fake.actors["did:plc:window"].items = history("did:plc:window", 450);
  fake.start();
  auto o = options_for(fake);
  o.max_posts = 150;
  const Run run = run_stage(user_line("did:plc:big", std::nullopt) + user_line("did:plc:small", std::nullopt) +
                                user_line("did:plc:window", base_time - 400 * hour),
                            o);
  CHECK(run.rc == ds::exit_code::partial);  // the capped window, not the partial backfill
  // A backfill stops after the page that reached the cap, where the next run continues.
  const Rec& big = run.user("did:plc:big");
  CHECK(big.status == "partial");
  CHECK(big.posts == 200);
  CHECK(run.posts_of("did:plc:big") == 200);
  CHECK(fake.hits("did:plc:big") == 2);  // no page fetched past the cap
  CHECK(big.cursor == ds::format_timestamp(base_time - 199 * hour));
  CHECK(big.error.empty());
  // Exactly the cap with nothing after it is complete, not capped.
  CHECK(run.user("did:plc:small").status == "complete");
  CHECK(run.user("did:plc:small").posts == 150);
  // An incremental window past the cap is capped as before: no cursor, an error naming the cap.
  const Rec& window = run.user("did:plc:window");
  CHECK(window.status == "capped");
  CHECK(window.posts == 150);
  CHECK(run.posts_of("did:plc:window") == 150);
  CHECK(fake.hits("did:plc:window") == 2);
  CHECK_THAT(window.error, Catch::Contains("150"));
  CHECK(window.cursor.empty());
  CHECK(run.stats.capped == 1);
  CHECK(run.stats.backfill_partial == 1);
}

TEST_CASE("fetch-feeds: one backfill budget for the run, in input order, first pages free", "[fetch_feeds]") {
  FakeAppView fake;
  for (const char* d : {"did:plc:b1", "did:plc:b2", "did:plc:b3"}) fake.actors[d].items = history(d, 450);  // 5 pages
  fake.start();
  auto o = options_for(fake);
  o.backfill_max_requests = 5;
  ds::HttpOptions ho = test_http();
  ho.concurrency = 1;  // one request at a time: the budget's order is the input's
  const Run run = run_stage(
      user_line("did:plc:b1", std::nullopt) + user_line("did:plc:b2", std::nullopt) + user_line("did:plc:b3", std::nullopt),
      o, ho);
  CHECK(run.rc == ds::exit_code::ok);  // backfills in progress are no failure
  CHECK(run.user("did:plc:b1").status == "complete");
  CHECK(fake.hits("did:plc:b1") == 5);  // its first page free, 4 from the budget
  const Rec& b2 = run.user("did:plc:b2");
  CHECK(b2.status == "partial");
  CHECK(fake.hits("did:plc:b2") == 2);  // the budget's last request
  CHECK(b2.cursor == ds::format_timestamp(base_time - 199 * hour));
  const Rec& b3 = run.user("did:plc:b3");
  CHECK(b3.status == "partial");
  CHECK(fake.hits("did:plc:b3") == 1);  // only its free first page
  CHECK(b3.cursor == ds::format_timestamp(base_time - 99 * hour));
  CHECK(run.posts_of("did:plc:b3") == 100);
  CHECK(run.stats.backfill_requests == 5);
  CHECK(run.stats.backfill_partial == 2);
}

TEST_CASE("fetch-feeds: a resumed backfill refreshes its window, then goes on from its cursor", "[fetch_feeds]") {
  FakeAppView fake;
  for (const char* d : {"did:plc:r", "did:plc:deep", "did:plc:none"}) fake.actors[d].items = history(d, 450);
  fake.start();
  auto o = options_for(fake);
  const auto at = [](int i) { return ds::format_timestamp(base_time - i * hour); };
  // r: items 0-199 stored by earlier runs; window: items 0-50. deep: items 0-40 stored, and a
  // window (0-120) that reaches below them. none: like r, with no budget left.
  const std::string input = user_line("did:plc:r", base_time - 50 * hour, ds::ProfileStatus::ok, at(199)) +
                            user_line("did:plc:deep", base_time - 120 * hour, ds::ProfileStatus::ok, at(40));
  {
    const Run run = run_stage(input, o);
    CHECK(run.rc == ds::exit_code::ok);
    const Rec& r = run.user("did:plc:r");
    CHECK(r.status == "complete");
    CHECK(fake.hits("did:plc:r") == 4);  // 1 window page, then 3 from the cursor: none twice
    std::set<std::string> sent;
    for (const auto& p : run.recs)
      if (p.type == "post" && p.did == "did:plc:r") sent.insert(p.uri.substr(p.uri.rfind('/') + 2));
    CHECK(sent.size() == 51 + 250);
    CHECK(sent.count("50") == 1);
    CHECK(sent.count("51") == 0);   // stored, outside the window: not sent again
    CHECK(sent.count("199") == 0);
    CHECK(sent.count("200") == 1);  // the history's rest
    const Rec& deep = run.user("did:plc:deep");
    CHECK(deep.status == "complete");
    CHECK(fake.hits("did:plc:deep") == 5);  // the window passed the cursor: paging simply went on
    CHECK(run.posts_of("did:plc:deep") == 450);
    CHECK(run.stats.backfill_requests == 3 + 3);
  }
  o.backfill_max_requests = 0;
  const Run run = run_stage(user_line("did:plc:none", base_time - 50 * hour, ds::ProfileStatus::ok, at(199)), o);
  const Rec& none = run.user("did:plc:none");
  CHECK(none.status == "partial");
  CHECK(none.cursor == at(199));  // unchanged: tomorrow goes on from there
  CHECK(fake.hits("did:plc:none") == 1);
  CHECK(run.posts_of("did:plc:none") == 51);  // its window is refreshed all the same
}

TEST_CASE("fetch-feeds: a cursor that does not move fails the feed and terminates", "[fetch_feeds]") {
  FakeAppView fake;
  fake.actors["did:plc:loop"].items = history("did:plc:loop", 1);
  fake.actors["did:plc:loop"].stuck_cursor = true;
  fake.actors["did:plc:after"].items = history("did:plc:after", 3);
  fake.start();
  const Run run = run_stage(user_line("did:plc:loop", std::nullopt) + user_line("did:plc:after", std::nullopt),
                            options_for(fake));
  CHECK(run.rc == ds::exit_code::partial);
  const Rec& loop = run.user("did:plc:loop");
  CHECK(loop.status == "failed");
  CHECK_THAT(loop.error, Catch::Contains("cursor did not advance"));
  CHECK(fake.hits("did:plc:loop") == 2);
  CHECK(run.posts_of("did:plc:loop") == 1);  // the repeated post is de-duplicated by uri
  CHECK(run.user("did:plc:after").status == "complete");
}

TEST_CASE("fetch-feeds: output keeps input order and each user's posts together", "[fetch_feeds]") {
  FakeAppView fake;
  std::vector<std::string> order;
  std::string input;
  for (int i = 0; i < 12; ++i) {
    const std::string did = "did:plc:u" + std::to_string(i);
    auto& a = fake.actors[did];
    a.items = history(did, 40 + 70 * (i % 4));   // 1 to 3 pages
    a.delay_ms = i % 3 == 0 ? 60 : 5;             // early users slow: later ones finish first
    order.push_back(did);
    input += user_line(did, std::nullopt);
    if (i == 5) input += R"({"type":"note","text":"forwarded unchanged"})" "\n";
  }
  fake.start();
  SECTION("default buffering") {
    const Run run = run_stage(input, options_for(fake), test_http(6));
    CHECK(run.rc == ds::exit_code::ok);
    check_contiguous(run, order);
    for (int i = 0; i < 12; ++i) CHECK(run.posts_of(order[i]) == 40 + 70 * (i % 4));
    int forwarded = 0;
    for (const auto& l : run.lines) forwarded += l == R"({"type":"note","text":"forwarded unchanged"})";
    CHECK(forwarded == 1);
  }
  SECTION("a tiny buffer budget and streaming threshold still give the same output") {
    auto o = options_for(fake);
    o.max_buffered_bytes = 1;
    o.stream_after_bytes = 1;
    o.max_users_in_flight = 5;
    const Run run = run_stage(input, o, test_http(6));
    CHECK(run.rc == ds::exit_code::ok);
    check_contiguous(run, order);
    for (int i = 0; i < 12; ++i) CHECK(run.posts_of(order[i]) == 40 + 70 * (i % 4));
  }
}

TEST_CASE("fetch-feeds: input arriving slowly through a pipe", "[fetch_feeds]") {
  FakeAppView fake;
  std::vector<std::string> order;
  for (int i = 0; i < 4; ++i) {
    const std::string did = "did:plc:slow" + std::to_string(i);
    fake.actors[did].items = history(did, 120);
    order.push_back(did);
  }
  fake.start();
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::thread writer([&] {
    for (int i = 0; i < 4; ++i) {
      const std::string line = user_line(order[i], std::nullopt);
      (void)!::write(fds[1], line.data(), line.size());
      std::this_thread::sleep_for(std::chrono::milliseconds(150));
    }
    (void)!::write(fds[1], (end_line + "\n").data(), end_line.size() + 1);
    ::close(fds[1]);
  });
  Run run;
  const int out_fd = fetch_fixture::temp_fd("");
  {
    ds::HttpClient http(test_http());
    ds::LineReader reader(fds[0], "pipe");
    ds::OutputWriter out(out_fd);
    ds::RecordInput in("ds-fetch-feeds", reader, out, ds::want_user, false);
    auto o = options_for(fake);
    o.input_fd = fds[0];
    ds::feeds::FeedFetcher fetcher(o, http, out);
    run.rc = fetcher.run(reader, in);
  }
  writer.join();
  ::close(fds[0]);
  run.lines = fetch_fixture::read_lines(out_fd);
  for (const auto& line : run.lines) run.recs.push_back(parse(line));
  CHECK(run.rc == ds::exit_code::ok);
  check_contiguous(run, order);
  for (const auto& d : order) CHECK(run.posts_of(d) == 120);
  CHECK(run.recs.back().stage == "ds-fetch-feeds");
}

TEST_CASE("fetch-feeds: URLs carry the actor and cursor encoded", "[fetch_feeds]") {
  CHECK(ds::appview::author_feed_url("https://x.test/", "did:plc:a", 100, std::nullopt) ==
        "https://x.test/xrpc/app.bsky.feed.getAuthorFeed?actor=did%3Aplc%3Aa&limit=100");
  CHECK(ds::appview::author_feed_url("https://x.test", "did:plc:a", 100, std::string("2024-03-21T23:36:16.378Z")) ==
        "https://x.test/xrpc/app.bsky.feed.getAuthorFeed?actor=did%3Aplc%3Aa&limit=100&cursor=2024-03-21T23%3A36%3A16.378Z");
}

TEST_CASE("fetch-feeds: health check", "[fetch_feeds]") {
  FakeAppView fake;
  fake.actors["bsky.app"].items = history("did:plc:bsky", 1);
  fake.start();
  {
    ds::HttpClient http(test_http());
    CHECK(ds::feeds::health_check(http, fake.base(), "bsky.app").empty());
  }
  {
    auto ho = test_http();
    ho.max_attempts = 1;
    ds::HttpClient http(ho);
    const std::string msg = ds::feeds::health_check(http, "http://127.0.0.1:9", "bsky.app");
    CHECK_THAT(msg, Catch::StartsWith("API health check failed: http://127.0.0.1:9/xrpc/app.bsky.feed.getAuthorFeed"));
  }
}

// Economy: the page whose cursor sits exactly on `since` is the last one asked for, since the
// next page would hold only strictly older items.
TEST_CASE("fetch-feeds: a cursor exactly at the window start ends the paging", "[fetch_feeds]") {
  FakeAppView fake;
  fake.actors["did:plc:edge"].items = history("did:plc:edge", 300);
  fake.start();
  // Page 1 holds hours 0..99; its cursor is item 99's sort time, base_time - 99 h.
  const Run run = run_stage(user_line("did:plc:edge", base_time - 99 * hour), options_for(fake));
  CHECK(run.rc == ds::exit_code::ok);
  CHECK(run.user("did:plc:edge").status == "complete");
  CHECK(run.user("did:plc:edge").posts == 100);
  CHECK(run.user("did:plc:edge").pages == 1);
  CHECK(fake.hits("did:plc:edge") == 1);
}

// Bluesky's AppView sorts a repost by the repost's time and writes its cursor as "<ms>__<cid>"
// (docs/real-appview.md). A page ending in a self-repost of an old post must not end the window:
// the next page still holds window posts (it once did, and the load marked them deleted).
TEST_CASE("fetch-feeds: a page ending in a self-repost of an old post, real cursor format", "[fetch_feeds]") {
  FakeAppView fake;
  auto& echo = fake.actors["did:plc:echo"];
  echo.real_cursor = true;
  echo.items = history("did:plc:echo", 200);
  FakeItem old{"did:plc:echo", "old", base_time - 1000 * hour, base_time - 1000 * hour, 3, std::nullopt};
  old.repost_time = base_time - 98 * hour - hour / 2;
  echo.items.insert(echo.items.begin() + 99, old);  // the 100th item: page 1 ends with it
  fake.start();
  const Run run = run_stage(user_line("did:plc:echo", base_time - 140 * hour - hour / 2), options_for(fake));
  CHECK(run.rc == ds::exit_code::ok);
  const Rec& echo_rec = run.user("did:plc:echo");
  CHECK(echo_rec.status == "complete");
  CHECK(echo_rec.posts == 141);  // hours 0..140; the old post is outside the window
  CHECK(echo_rec.pages == 2);
  CHECK(fake.hits("did:plc:echo") == 2);
}

// Economy against the real fake AppView: over the whole dataset on day 2, each user costs exactly
// the pages its window (or backfill) needs, computed here from the dataset's own feed index, a
// repeated user costs nothing, and the server saw exactly the requests the stage reported.
TEST_CASE("fetch-feeds: every dataset user is paged exactly as far as needed, no further", "[fetch_feeds]") {
  const int day = 2;
  ds::fake::AppView app(ds::fake::DatasetParams{}, day);
  ds::fake::ServerOptions so;
  so.keep_alive_s = 2;
  ds::fake::HttpServer server(app, [&](const ds::fake::Request& r) { return app.handle(r); }, so);
  const int port = server.start();
  const ds::fake::Dataset& data = app.dataset();
  const Micros now = data.now_of_day(day);
  const Micros since = now - 7 * ds::micros_per_day;
  const auto floor_ms = [](Micros t) { return (t / 1000 - (t % 1000 < 0 ? 1 : 0)) * 1000; };

  std::string input;
  std::map<std::string, std::int64_t> expected_pages;
  std::map<std::string, std::int64_t> shaped;  // accounts whose window has that shape -> own window posts
  std::int64_t expected_requests = 0;
  for (int u = 0; u < data.registered_count(); ++u) {
    const auto& user = data.users()[static_cast<std::size_t>(u)];
    // Every third account is a backfill, the others refresh their window.
    const std::optional<Micros> window = u % 3 == 0 ? std::nullopt : std::optional<Micros>(since);
    ds::UserRecord r;
    r.did = user.did;
    r.handle = user.handle;
    r.as_of = now;
    r.since = window;
    r.profile_status = ds::ProfileStatus::ok;
    r.profile = ds::Profile{user.handle, std::nullopt, std::nullopt, 0, 0, 0};
    ds::encode(input, r);
    if (u == 1) ds::encode(input, r);  // listed twice: fetched once
    if (!data.exists(u, day)) {
      ++expected_requests;  // one 400 "Profile not found", not retried
      continue;
    }
    const auto& entries = data.feed_index(u, day)->entries;
    std::int64_t pages = 1;
    for (std::size_t end = 100; end < entries.size(); end += 100) {
      // Page `pages` ends at entries[end - 1] with a cursor; a refresh stops once it is at or
      // before the window start.
      if (window && floor_ms(entries[end - 1].sort_at) <= *window) break;
      ++pages;
    }
    expected_pages[user.did] = pages;
    expected_requests += pages;
    // The cursor bug's page shape (docs/real-appview.md): a full first page ending with a
    // self-repost of a post older than the window; the refresh must go on to the next page.
    if (window && entries.size() > 100 && entries[99].repost && entries[99].user == u &&
        data.post(ds::fake::PostRef{u, entries[99].post}, day).sort_at < since && floor_ms(entries[99].sort_at) > since) {
      CHECK(pages >= 2);
      std::set<std::string> own_in_window;
      for (const auto& item : data.author_feed(u, day))
        if (item.is_own_post() && item.sort_at >= since) own_in_window.insert(item.post.uri);
      shaped[user.did] = static_cast<std::int64_t>(own_in_window.size());
    }
  }
  auto fo = ds::feeds::FetcherOptions{};
  fo.base_url = "http://127.0.0.1:" + std::to_string(port);
  const Run run = run_stage(input, fo, test_http(8));
  server.stop();

  std::set<std::string> checked;
  for (const auto& r : run.recs) {
    if (r.type != "user" || checked.count(r.did)) continue;
    checked.insert(r.did);
    auto it = expected_pages.find(r.did);
    if (it == expected_pages.end()) {
      CHECK(r.status == "gone");
      CHECK(r.requests == 1);
      continue;
    }
    INFO(r.did);
    CHECK(r.status == "complete");
    CHECK(r.pages == it->second);
    CHECK(r.requests == it->second);
    // Every window post written once: the self-repost of the old post is not one of them.
    if (shaped.count(r.did)) CHECK(run.posts_of(r.did) == shaped[r.did]);
  }
  CHECK(shaped.count(data.users()[ds::fake::echo::kAccount].did) == 1);
  CHECK(checked.size() == static_cast<std::size_t>(data.registered_count()));
  CHECK(run.http.requests == expected_requests);
  CHECK(static_cast<std::int64_t>(app.stats().get_author_feed) == expected_requests);
  CHECK(run.end.counter("requests") == expected_requests);
  CHECK(run.end.counter("duplicates") == 1);
  // Reported per user: integer requests per 1000 users (the repeated record counts as a user).
  CHECK(run.end.counter("requests_per_1000_users") == expected_requests * 1000 / (data.registered_count() + 1));
  CHECK(expected_requests > data.registered_count());  // backfills of long histories took many pages
}
