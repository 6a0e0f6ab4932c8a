// Tests for ds-load: the run verdict from end records (pure), and [db] tests that load NDJSON into a
// fresh migrated database and check posts, deletion marks, handles, snapshots, the run log and the lock.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>

#include "ds/exit_codes.hpp"
#include "ds/pg.hpp"
#include "ds/progress.hpp"
#include "ds/shard.hpp"
#include "load.hpp"
#include "select_users.hpp"
#include "post_fingerprint.hpp"

namespace {

using ds::FeedStatus;

ds::EndRecord end_record(const std::string& stage, std::vector<std::pair<std::string, std::int64_t>> counters) {
  ds::EndRecord e;
  e.stage = stage;
  e.counters = std::move(counters);
  return e;
}

// The four upstream end records of a clean run over `users` users.
std::vector<ds::EndRecord> clean_ends(std::int64_t users) {
  return {end_record("ds-select-users", {{"users", users}, {"bad_lines", 0}}),
          end_record("ds-fetch-profiles", {{"users", users}, {"ok", users}, {"gone", 0}, {"failed", 0},
                                           {"requests", 1}, {"requests_get_profiles", 1}, {"retries", 0},
                                           {"bad_lines", 0}}),
          end_record("ds-fetch-feeds", {{"users", users}, {"complete", users}, {"gone", 0}, {"failed", 0},
                                        {"posts", 5}, {"requests", 3}, {"requests_get_author_feed", 2},
                                        {"requests_get_posts", 1}, {"path_feed", users - 1}, {"path_posts", 1},
                                        {"path_none", 0}, {"retries", 1}, {"bad_lines", 0}}),
          end_record("ds-aggregate", {{"users", users}, {"snapshots", users}, {"bad_lines", 0}})};
}

void set_counter(std::vector<ds::EndRecord>& ends, const std::string& stage, const std::string& name,
                 std::int64_t v) {
  for (auto& e : ends)
    if (e.stage == stage) e.set(name, v);
}

}  // namespace

TEST_CASE("load: a post's fingerprint covers each stored value, and its function does not change") {
  const std::string uri = "at://did:plc:aaaa/app.bsky.feed.post/3lf2aaaaaaa2a", did = "did:plc:aaaa";
  const ds::load::PostValues base{uri, did, 10, 2, 1, 3, 1'732'000'000'000'000, 1'732'000'000'500'000};
  const std::int64_t fp = ds::load::post_fingerprint(base);
  // The same bytes at other addresses: it hashes what the views show, not where they point.
  const std::string uri_copy = uri, did_copy = did;
  ds::load::PostValues same = base;
  same.uri = uri_copy;
  same.did = did_copy;
  CHECK(ds::load::post_fingerprint(same) == fp);
  // Stored rows carry this value (posts.load_fp): a new function would make every stored
  // fingerprint a mismatch and one daily run compare everything by value. Change it on purpose only.
  CHECK(fp == -6631824167529543246);

  std::vector<ds::load::PostValues> variants(10, base);
  variants[0].uri = "at://did:plc:aaaa/app.bsky.feed.post/3lf2aaaaaaa2b";
  variants[1].did = "did:plc:aaab";
  variants[2].likes = 11;
  variants[3].replies = 3;
  variants[4].quotes = 2;
  variants[5].reposts = 4;
  variants[6].created_at += 1;
  variants[7].sort_at += 1;
  std::swap(variants[8].likes, variants[8].replies);  // the same numbers in other fields
  const std::string moved_uri = uri + "d", moved_did = did.substr(1);  // PostValues holds views
  variants[9].uri = moved_uri;  // bytes moving from the DID's start to the URI's end
  variants[9].did = moved_did;
  std::vector<std::int64_t> seen{fp};
  for (const auto& v : variants) seen.push_back(ds::load::post_fingerprint(v));
  std::sort(seen.begin(), seen.end());
  CHECK(std::adjacent_find(seen.begin(), seen.end()) == seen.end());

  // The URI's own fingerprint, stored too (posts.load_uri_fp): the same for any values.
  CHECK(ds::load::uri_fingerprint(uri) == -7311811444883718115);
  CHECK(ds::load::uri_fingerprint(uri) != ds::load::uri_fingerprint(variants[0].uri));
  CHECK(ds::load::uri_fingerprint(uri) != fp);
}

TEST_CASE("load: a run is completed only with all four end records and nothing failed") {
  auto ends = clean_ends(3);
  auto v = ds::load::judge_stream(ends, 0);
  CHECK(v.status == "completed");
  CHECK(v.error.empty());
  CHECK(v.counters.users_selected == 3);
  CHECK(v.counters.api_requests == 4);
  CHECK(v.counters.api_retries == 1);
  CHECK(v.counters.requests_get_profiles == 1);
  CHECK(v.counters.requests_get_author_feed == 2);
  CHECK(v.counters.requests_get_posts == 1);
  CHECK(v.counters.path_feed == 2);
  CHECK(v.counters.path_posts == 1);

  set_counter(ends, "ds-fetch-feeds", "capped", 1);
  set_counter(ends, "ds-fetch-profiles", "gone", 2);
  set_counter(ends, "ds-fetch-feeds", "gone", 1);
  v = ds::load::judge_stream(ends, 0);
  CHECK(v.status == "partial");
  CHECK(v.counters.users_failed == 1);
  CHECK(v.counters.users_gone == 3);
  CHECK(v.error.find("feeds capped 1") != std::string::npos);

  // ds-load's own skipped lines make a run partial too.
  v = ds::load::judge_stream(clean_ends(3), 2);
  CHECK(v.status == "partial");
  CHECK(v.counters.bad_lines == 2);

  auto missing = clean_ends(3);
  missing.erase(missing.begin() + 2);
  v = ds::load::judge_stream(missing, 0);
  CHECK(v.status == "failed");
  CHECK(v.error == "the stream ended without the end record of ds-fetch-feeds");
  v = ds::load::judge_stream({}, 0);
  CHECK(v.error == "the stream ended without the end records of ds-select-users, ds-fetch-profiles, "
                   "ds-fetch-feeds, ds-aggregate");
}

TEST_CASE("load: displayName truncation counts characters and cuts at a character boundary") {
  const std::string s = "a\xC3\xA9\xE2\x82\xAC" "b";  // a é € b
  CHECK(ds::load::count_chars(s) == 4);
  CHECK(ds::load::truncate_chars(s, 2) == "a\xC3\xA9");
  CHECK(ds::load::truncate_chars(s, 3) == "a\xC3\xA9\xE2\x82\xAC");
  CHECK(ds::load::truncate_chars(s, 10) == s);
  CHECK(ds::load::truncate_chars(s, 0).empty());
}

TEST_CASE("load: the summary line gives counts and skips and wall time") {
  ds::load::LoadResult r;
  r.run_id = 42;
  r.status = "partial";
  r.wall_s = 12.5;
  r.stats.users_seen = 120;
  r.stats.users_updated = 12;
  r.stats.posts_inserted = 130;
  r.stats.posts_updated = 5;
  r.stats.posts_unchanged = 7;
  r.stats.posts_deleted = 2;
  r.stats.snapshots_inserted = 100;
  r.stats.snapshots_updated = 10;
  r.stats.snapshots_unchanged = 1;
  r.stats.batches = 3;
  CHECK(ds::load::summary_line(r) ==
        "run 42 partial: 120 users (12 updated), posts 130 inserted / 5 updated / 7 unchanged, 2 marked "
        "deleted, 110 snapshots written (1 unchanged), 3 batches, 12.50 s");
  r.stats.posts_skipped = 4;
  r.stats.snapshots_skipped = 6;
  r.bad_lines = 9;
  CHECK(ds::load::summary_line(r) ==
        "run 42 partial: 120 users (12 updated), posts 130 inserted / 5 updated / 7 unchanged / 4 skipped, "
        "2 marked deleted, 110 snapshots written (1 unchanged, 6 skipped), 9 bad input lines skipped, "
        "3 batches, 12.50 s");
}

namespace {

const char* const as_of = "2026-11-29T06:00:00Z";
const char* const since = "2026-11-22T06:00:00Z";
const char* const alice = "did:plc:aaaa";
const char* const bob = "did:plc:bbbb";
const char* const carol = "did:plc:cccc";

ds::Micros ts(const char* s) { return *ds::parse_timestamp(s); }

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A fresh database per test, with every migration in sql/ applied and three tracked users; dropped
// at the end so tests stay independent in the one cluster.
class TestDb {
 public:
  explicit TestDb(const std::string& name) : name_(name) {
    const char* base = std::getenv("DS_TEST_DATABASE_URL");
    REQUIRE(base);
    const std::string url = base;
    admin_ = std::make_unique<ds::PgConnection>(ds::database_params(url));
    // Identifiers cannot be parameters; the names are constants of this file.
    admin_->exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    admin_->exec("CREATE DATABASE " + name_);
    url_ = url.substr(0, url.rfind('/') + 1) + name_;
    conn_ = connect();
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(DS_SOURCE_DIR "/sql"))
      if (e.path().extension() == ".sql") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) conn_->exec("BEGIN;\n" + read_file(f) + "\nCOMMIT;");
    add_user(alice, "alice.test");
    add_user(bob, "bob.test");
    add_user(carol, "carol.test");
  }
  ~TestDb() {
    conn_.reset();
    try {
      admin_->exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    } catch (...) {
    }
  }
  ds::DbParams params() const { return ds::database_params(url_); }
  // The same database as another role (URL user part replaced).
  ds::DbParams params_as(const std::string& role) const {
    const auto at = url_.find('@'), scheme = url_.find("://");
    return ds::database_params(url_.substr(0, scheme + 3) + role + url_.substr(at));
  }
  std::unique_ptr<ds::PgConnection> connect() const { return std::make_unique<ds::PgConnection>(params()); }
  ds::PgConnection& sql() { return *conn_; }

  void add_user(const std::string& did, const std::string& handle) {
    conn_->exec("INSERT INTO users (did, handle) VALUES ($1, $2)", {did, handle});
  }

  // Rows of a query, each as its columns joined by '|' (NULL as "~").
  std::vector<std::string> rows(const std::string& query, const std::vector<ds::PgParam>& params = {}) {
    const ds::PgResult r = conn_->exec(query, params);
    std::vector<std::string> out;
    for (int i = 0; i < r.rows(); ++i) {
      std::string line;
      for (int c = 0; c < r.columns(); ++c) {
        if (c) line += '|';
        line += r.is_null(i, c) ? std::string("~") : std::string(r.text(i, c));
      }
      out.push_back(line);
    }
    return out;
  }
  std::string value(const std::string& query, const std::vector<ds::PgParam>& params = {}) {
    const auto r = rows(query, params);
    REQUIRE(r.size() == 1);
    return r[0];
  }
  std::int64_t count(const std::string& query, const std::vector<ds::PgParam>& params = {}) {
    return std::stoll(value(query, params));
  }

 private:
  std::string name_;
  std::string url_;
  std::unique_ptr<ds::PgConnection> admin_;
  std::unique_ptr<ds::PgConnection> conn_;
};

// Builds an NDJSON stream with the project's own encoders, so lines follow the record contract.
struct Stream {
  std::string text;

  // The first line of a stream from ds-select-users: its shard, or none.
  Stream& selection(std::optional<std::string> shard) {
    ds::encode(text, ds::SelectionRecord{std::move(shard)});
    return *this;
  }
  Stream& post(const std::string& did, const std::string& rkey, const char* at, std::int64_t likes,
               std::int64_t replies = 0, std::int64_t quotes = 0, std::int64_t reposts = 0) {
    ds::encode(text, ds::PostRecord{uri(did, rkey), did, ts(at), ts(at), likes, replies, quotes, reposts});
    return *this;
  }
  // A user record after its posts: profile ok with `profile_handle`, feed `status` over the window
  // starting at `window_start` (nullptr: a backfill).
  Stream& user(const std::string& did, const std::string& profile_handle, const char* window_start = since,
               FeedStatus status = FeedStatus::complete,
               std::optional<std::string> display_name = std::nullopt) {
    ds::UserRecord u;
    u.did = did;
    u.handle = profile_handle;
    u.as_of = ts(as_of);
    if (window_start) u.since = ts(window_start);
    u.profile_status = ds::ProfileStatus::ok;
    u.profile = ds::Profile{profile_handle, display_name, std::nullopt, 10, 20, 30};
    u.feed.status = status;
    ds::encode(text, u);
    return *this;
  }
  Stream& snapshot(const std::string& did, const std::string& date, std::int64_t followers,
                   std::int64_t likes) {
    ds::encode(text, ds::SnapshotRecord{did, date, followers, 20, 30, likes, 1, 2, 3});
    return *this;
  }
  // The end records of all four upstream stages, minus `drop`, with feeds reporting `feeds_failed`.
  Stream& ends(std::int64_t feeds_failed = 0, const std::string& drop = "") {
    auto all = clean_ends(2);
    set_counter(all, "ds-fetch-feeds", "failed", feeds_failed);
    for (const auto& e : all)
      if (e.stage != drop) ds::encode(text, e);
    return *this;
  }
  Stream& raw(const std::string& line) {
    text += line + "\n";
    return *this;
  }
  static std::string uri(const std::string& did, const std::string& rkey) {
    return "at://" + did + "/app.bsky.feed.post/" + rkey;
  }
};

template <class F>
ds::load::LoadOptions options(F set) {
  ds::load::LoadOptions o;
  set(o);
  return o;
}

// Runs the load logic over `text` as its stdin would be, with forwarded output thrown away.
ds::load::LoadResult load(const TestDb& db, const std::string& text, ds::load::LoadOptions o = {}) {
  char path[] = "/tmp/ds-load-test-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  lseek(fd, 0, SEEK_SET);
  unlink(path);
  const int null_fd = open("/dev/null", O_WRONLY);
  if (o.db.keywords.empty()) o.db = db.params();  // a test may connect otherwise
  ds::Progress progress("ds-load", ds::Progress::Settings{});  // silent; counts only
  o.progress = &progress;
  ds::load::LoadResult r;
  {
    ds::LineReader reader(fd, "test-input");
    ds::OutputWriter out(null_fd);
    r = ds::load::run_load(o, reader, out);
  }
  CHECK(progress.counts().users == r.stats.users_seen);  // the live view counts what was loaded
  close(fd);
  close(null_fd);
  return r;
}

}  // namespace

TEST_CASE("load: posts are inserted, unchanged rows left untouched, changed counts updated", "[db]") {
  TestDb db("t_load_posts");
  Stream s;
  s.post(alice, "p1", "2026-11-25T10:00:00Z", 4, 1)
      .post(alice, "p2", "2026-11-26T10:00:00Z", 7)
      .user(alice, "alice.test")
      .post(bob, "q1", "2026-11-27T10:00:00Z", 1, 0, 0, 5000000000)  // reposts beyond INTEGER
      .user(bob, "bob.test")
      .ends();
  auto r = load(db, s.text);
  CHECK(r.exit_code == ds::exit_code::ok);
  CHECK(r.status == "completed");
  CHECK(r.stats.posts_inserted == 3);
  CHECK(db.rows("SELECT uri, did, likes, replies, reposts, sort_at, deleted_at FROM posts ORDER BY uri") ==
        std::vector<std::string>{
            "at://did:plc:aaaa/app.bsky.feed.post/p1|did:plc:aaaa|4|1|0|2026-11-25 10:00:00+00|~",
            "at://did:plc:aaaa/app.bsky.feed.post/p2|did:plc:aaaa|7|0|0|2026-11-26 10:00:00+00|~",
            "at://did:plc:bbbb/app.bsky.feed.post/q1|did:plc:bbbb|1|0|2147483647|2026-11-27 10:00:00+00|~"});
  const auto before = db.rows(R"(SELECT uri, "updatedAt" FROM posts ORDER BY uri)");

  // The same stream again: nothing differs, so no row is rewritten ("updatedAt" would move).
  r = load(db, s.text);
  CHECK(r.stats.posts_inserted == 0);
  CHECK(r.stats.posts_updated == 0);
  CHECK(r.stats.posts_unchanged == 3);
  CHECK(db.rows(R"(SELECT uri, "updatedAt" FROM posts ORDER BY uri)") == before);

  // One count changes: only that row is updated.
  Stream changed;
  changed.post(alice, "p1", "2026-11-25T10:00:00Z", 9, 1)
      .post(alice, "p2", "2026-11-26T10:00:00Z", 7)
      .user(alice, "alice.test")
      .ends();
  r = load(db, changed.text);
  CHECK(r.stats.posts_updated == 1);
  CHECK(r.stats.posts_unchanged == 1);
  CHECK(db.value("SELECT likes FROM posts WHERE uri = $1", {Stream::uri(alice, "p1")}) == "9");
  const auto after = db.rows(R"(SELECT uri, "updatedAt" FROM posts ORDER BY uri)");
  CHECK(after[0] != before[0]);
  CHECK(after[1] == before[1]);
  CHECK(after[2] == before[2]);
}

TEST_CASE("load: duplicates in a batch keep the last occurrence; unknown authors are skipped", "[db]") {
  TestDb db("t_load_dups");
  Stream s;
  s.post(alice, "p1", "2026-11-25T10:00:00Z", 1)
      .post(alice, "p1", "2026-11-25T10:00:00Z", 2)
      .post("did:plc:nobody", "x1", "2026-11-25T10:00:00Z", 3)
      .user(alice, "alice.test")
      .ends();
  const auto r = load(db, s.text);
  CHECK(r.status == "completed");  // a skipped orphan is a warning, not a failure
  CHECK(r.stats.posts_skipped == 1);
  CHECK(db.rows("SELECT uri, likes FROM posts") ==
        std::vector<std::string>{Stream::uri(alice, "p1") + "|2"});
  CHECK(db.count("SELECT posts_loaded FROM snapshot_logs") == 1);
}

TEST_CASE("load: a complete feed marks missing window posts deleted; a returning post revives", "[db]") {
  TestDb db("t_load_deleted");
  Stream first;
  first.post(alice, "old", "2026-11-01T10:00:00Z", 1)  // before the window
      .post(alice, "p1", "2026-11-25T10:00:00Z", 1)
      .post(alice, "p2", "2026-11-26T10:00:00Z", 1)
      .user(alice, "alice.test")
      .post(bob, "q1", "2026-11-26T10:00:00Z", 1)
      .user(bob, "bob.test")
      .ends();
  REQUIRE(load(db, first.text).exit_code == 0);

  // p2 was deleted on Bluesky; "old" is outside the refreshed window, so its absence proves nothing.
  Stream second;
  second.post(alice, "p1", "2026-11-25T10:00:00Z", 1).user(alice, "alice.test").ends();
  auto r = load(db, second.text);
  CHECK(r.stats.posts_deleted == 1);
  CHECK(db.rows("SELECT uri FROM posts WHERE deleted_at IS NOT NULL") ==
        std::vector<std::string>{Stream::uri(alice, "p2")});
  CHECK(db.value("SELECT load_fp IS NULL FROM posts WHERE uri = $1", {Stream::uri(alice, "p2")}) == "t");

  // It comes back (an API hiccup): the mark is cleared.
  Stream third;
  third.post(alice, "p1", "2026-11-25T10:00:00Z", 1)
      .post(alice, "p2", "2026-11-26T10:00:00Z", 1)
      .user(alice, "alice.test")
      .ends();
  r = load(db, third.text);
  CHECK(r.stats.posts_updated == 1);
  CHECK(db.count("SELECT count(*) FROM posts WHERE deleted_at IS NOT NULL") == 0);
  CHECK(db.count("SELECT count(*) FROM posts WHERE load_fp IS NULL") == 0);
}

TEST_CASE("load: an incomplete feed marks nothing deleted and sets no backfill marker", "[db]") {
  TestDb db("t_load_incomplete");
  Stream first;
  first.post(alice, "p1", "2026-11-25T10:00:00Z", 1)
      .post(alice, "p2", "2026-11-26T10:00:00Z", 1)
      .user(alice, "alice.test", since)
      .ends();
  REQUIRE(load(db, first.text).exit_code == 0);

  for (const FeedStatus status : {FeedStatus::failed, FeedStatus::capped, FeedStatus::gone}) {
    Stream s;
    s.post(alice, "p1", "2026-11-25T10:00:00Z", 2).user(alice, "alice.test", nullptr, status).ends(1);
    const auto r = load(db, s.text);
    CHECK(r.exit_code == ds::exit_code::partial);
    CHECK(r.status == "partial");
    CHECK(r.stats.posts_deleted == 0);
    CHECK(db.count("SELECT count(*) FROM posts WHERE deleted_at IS NOT NULL") == 0);
    CHECK(db.count("SELECT count(*) FROM ds_user_state") == 0);
    // What it did return is still stored.
    CHECK(db.value("SELECT likes FROM posts WHERE uri = $1", {Stream::uri(alice, "p1")}) == "2");
  }
  CHECK(db.value("SELECT status || ' ' || users_failed FROM snapshot_logs ORDER BY id DESC LIMIT 1") ==
        "partial 1");
}

TEST_CASE("load: the newest snapshot's date and postsCount are kept for the request economy", "[db]") {
  TestDb db("t_load_last_snapshot");
  const auto last = [&] {
    return db.value("SELECT last_snapshot_date, last_snapshot_posts FROM ds_user_state WHERE did = $1", {alice});
  };
  const auto day = [&](const char* date, std::int64_t posts) {
    Stream s;
    s.user(alice, "alice.test");
    ds::encode(s.text, ds::SnapshotRecord{alice, date, 10, 20, posts, 1, 1, 2, 3});
    s.ends();
    REQUIRE(load(db, s.text).exit_code == 0);
  };
  day("2026-11-28", 7);
  CHECK(last() == "2026-11-28|7");
  day("2026-11-29", 8);
  CHECK(last() == "2026-11-29|8");
  day("2026-11-29", 9);  // a rerun of the same day takes its value
  CHECK(last() == "2026-11-29|9");
  day("2026-11-27", 3);  // a replay of an older day does not move it back
  CHECK(last() == "2026-11-29|9");
  // Writing it creates no backfill marker: the account still counts as not backfilled.
  CHECK(db.value("SELECT backfilled_at IS NULL FROM ds_user_state WHERE did = $1", {alice}) == "t");
}

TEST_CASE("load: a complete feed taken for the account's own reason restarts its refresh clock", "[db]") {
  TestDb db("t_load_refresh_clock");
  const auto clock = [&] {
    return db.value("SELECT COALESCE(refresh_clock_date::text, 'none') FROM ds_user_state WHERE did = $1", {alice});
  };
  // One day's run for alice: her feed taken on `path` for `reason`, ending `status`.
  const auto day = [&](const char* at, const char* path, const char* reason, FeedStatus status = FeedStatus::complete) {
    Stream s;
    ds::UserRecord u;
    u.did = alice;
    u.handle = "alice.test";
    u.as_of = ts(at);
    u.since = u.as_of - 7 * ds::micros_per_day;
    u.profile_status = ds::ProfileStatus::ok;
    u.profile = ds::Profile{"alice.test", std::nullopt, std::nullopt, 10, 20, 30};
    u.feed.status = status;
    u.feed.path = path;
    u.feed.reason = reason;
    ds::encode(s.text, u);
    const bool complete = status == FeedStatus::complete;
    s.ends(complete ? 0 : 1);
    const auto r = load(db, s.text);
    REQUIRE(r.exit_code == (complete ? 0 : ds::exit_code::partial));
    return r.stats.refresh_clocks;
  };
  db.sql().exec("INSERT INTO ds_user_state (did, backfilled_at) VALUES ($1, now())", {alice});
  CHECK(day("2026-11-20T06:00:00Z", "feed", "economy_off") == 0);  // a cause many accounts share: no clock
  CHECK(clock() == "none");
  day("2026-11-21T06:00:00Z", "posts", "quiet");  // not a feed
  day("2026-11-21T06:00:00Z", "feed", "full_refresh", FeedStatus::failed);  // not complete
  CHECK(clock() == "none");
  CHECK(day("2026-11-22T06:00:00Z", "feed", "posts_count_changed") == 1);
  CHECK(clock() == "2026-11-22");
  day("2026-11-23T06:00:00Z", "feed", "posts_failed");  // shared cause: the clock stays
  CHECK(clock() == "2026-11-22");
  day("2026-11-25T06:00:00Z", "feed", "full_refresh");
  CHECK(clock() == "2026-11-25");
  CHECK(day("2026-11-24T06:00:00Z", "feed", "post_missing") == 0);  // an older day replayed: never back
  CHECK(clock() == "2026-11-25");
  // A stream written before the field (no reason): no clock is started or moved.
  day("2026-11-26T06:00:00Z", "feed", "");
  CHECK(clock() == "2026-11-25");
}

TEST_CASE("load: a complete backfill sets the marker and covers all of the user's posts", "[db]") {
  TestDb db("t_load_backfill");
  // A database migrated from the original: a post the new feed no longer returns, from years ago.
  db.sql().exec(R"(INSERT INTO posts (uri, did, likes, "createdAt") VALUES ($1, $2, 5, '2020-01-01Z'))",
                {Stream::uri(alice, "ancient"), alice});
  Stream s;
  s.post(alice, "p1", "2026-11-25T10:00:00Z", 1)
      .post(alice, "p0", "2023-05-01T10:00:00Z", 1)
      .user(alice, "alice.test", nullptr)
      .ends();
  const auto r = load(db, s.text);
  CHECK(r.exit_code == 0);
  CHECK(r.stats.backfills_marked == 1);
  CHECK(db.value("SELECT backfilled_at IS NOT NULL, backfill_posts FROM ds_user_state WHERE did = $1",
                 {alice}) == "t|2");
  CHECK(db.rows("SELECT uri FROM posts WHERE deleted_at IS NOT NULL") ==
        std::vector<std::string>{Stream::uri(alice, "ancient")});
  CHECK(db.count("SELECT count(*) FROM ds_user_state WHERE did = $1", {bob}) == 0);
}

TEST_CASE("load: handles moving between tracked accounts never fail the batch", "[db]") {
  TestDb db("t_load_handles");
  const auto handles = [&] { return db.rows("SELECT did, handle FROM users ORDER BY did"); };
  SECTION("A takes B's handle and B gets a new one in the same run") {
    Stream s;
    s.user(alice, "bob.test").user(bob, "bobby.test").ends();
    const auto r = load(db, s.text);
    CHECK(r.exit_code == 0);
    CHECK(handles() ==
          std::vector<std::string>{"did:plc:aaaa|bob.test", "did:plc:bbbb|bobby.test", "did:plc:cccc|carol.test"});
  }
  SECTION("A and B swap handles") {
    Stream s;
    s.user(alice, "bob.test").user(bob, "alice.test").ends();
    CHECK(load(db, s.text).exit_code == 0);
    CHECK(handles() ==
          std::vector<std::string>{"did:plc:aaaa|bob.test", "did:plc:bbbb|alice.test", "did:plc:cccc|carol.test"});
  }
  SECTION("B is not in the run: it keeps its DID as handle") {
    Stream s;
    s.user(alice, "bob.test").ends();
    const auto r = load(db, s.text);
    CHECK(r.exit_code == 0);
    CHECK(r.stats.handles_moved == 1);
    CHECK(handles() ==
          std::vector<std::string>{"did:plc:aaaa|bob.test", "did:plc:bbbb|did:plc:bbbb", "did:plc:cccc|carol.test"});
  }
  SECTION("handle.invalid never replaces a stored handle") {
    Stream s;
    s.user(alice, "handle.invalid").user(bob, "handle.invalid").ends();
    CHECK(load(db, s.text).exit_code == 0);
    CHECK(db.value("SELECT handle FROM users WHERE did = $1", {alice}) == "alice.test");
    CHECK(db.value("SELECT handle FROM users WHERE did = $1", {bob}) == "bob.test");
  }
}

TEST_CASE("load: profile fields update only when they differ; displayName is truncated", "[db]") {
  TestDb db("t_load_profiles");
  std::string long_name;
  for (int i = 0; i < 300; ++i) long_name += "\xC3\xA9";  // 300 × é: 600 bytes
  Stream s;
  s.user(alice, "alice.test", since, FeedStatus::complete, long_name)
      .user(bob, "bob.test")  // same as stored: no update
      .ends();
  auto r = load(db, s.text);
  CHECK(r.exit_code == 0);
  CHECK(r.stats.users_updated == 1);
  CHECK(db.value(R"(SELECT char_length("displayName") FROM users WHERE did = $1)", {alice}) == "255");
  const auto stamps = db.rows("SELECT did, updated_at FROM users ORDER BY did");
  r = load(db, s.text);
  CHECK(r.stats.users_updated == 0);
  CHECK(db.rows("SELECT did, updated_at FROM users ORDER BY did") == stamps);
}

TEST_CASE("load: snapshots upsert one row per (did, date) and update on change", "[db]") {
  TestDb db("t_load_snapshots");
  Stream s;
  s.user(alice, "alice.test")
      .snapshot(alice, "2026-11-29", 100, 40)
      .snapshot(alice, "2026-11-29", 101, 41)  // duplicate in the batch: the last wins
      .user(bob, "bob.test")
      .snapshot(bob, "2026-11-29", 5, 6)
      .snapshot("did:plc:nobody", "2026-11-29", 1, 1)
      .ends();
  auto r = load(db, s.text);
  CHECK(r.exit_code == 0);
  CHECK(r.stats.snapshots_skipped == 1);
  CHECK(db.rows("SELECT did, date, followers, likes, reposts FROM snapshots ORDER BY did") ==
        std::vector<std::string>{"did:plc:aaaa|2026-11-29|101|41|3", "did:plc:bbbb|2026-11-29|5|6|3"});
  const auto uuids = db.rows("SELECT uuid FROM snapshots ORDER BY did");

  Stream again;
  again.user(alice, "alice.test").snapshot(alice, "2026-11-29", 150, 41).ends();
  r = load(db, again.text);
  CHECK(r.stats.snapshots_updated == 1);
  CHECK(db.rows("SELECT did, date, followers FROM snapshots ORDER BY did") ==
        std::vector<std::string>{"did:plc:aaaa|2026-11-29|150", "did:plc:bbbb|2026-11-29|5"});
  CHECK(db.rows("SELECT uuid FROM snapshots ORDER BY did") == uuids);  // updated in place

  Stream next_day;
  next_day.user(alice, "alice.test").snapshot(alice, "2026-11-30", 150, 41).ends();
  r = load(db, next_day.text);
  CHECK(r.stats.snapshots_inserted == 1);
  CHECK(db.count("SELECT count(*) FROM snapshots WHERE did = $1", {alice}) == 2);
}

TEST_CASE("load: the run log records status, counters and why a run failed", "[db]") {
  TestDb db("t_load_runlog");
  // A run of the same shard that died earlier left its row in_progress.
  db.sql().exec("INSERT INTO snapshot_logs (status, time_started, shard) VALUES ('in_progress', now(), 'east')");

  Stream s;
  s.post(alice, "p1", "2026-11-25T10:00:00Z", 1)
      .user(alice, "alice.test")
      .snapshot(alice, "2026-11-29", 1, 1)
      .ends();
  setenv("DS_NOW", "2026-11-29T06:30:00Z", 1);
  auto r = load(db, s.text, options([](auto& o) { o.shard = "east"; }));
  unsetenv("DS_NOW");
  CHECK(r.exit_code == ds::exit_code::ok);
  REQUIRE(r.run_id > 0);
  CHECK(db.value("SELECT status, error FROM snapshot_logs WHERE id <> $1", {std::to_string(r.run_id)}) ==
        "failed|run did not finish");
  CHECK(db.value("SELECT status, time_started, time_completed >= time_started, duration >= 0, total_users, "
                 "users_selected, users_gone, users_failed, posts_loaded, api_requests, api_retries, "
                 "bad_lines, error, shard FROM snapshot_logs WHERE id = $1",
                 {std::to_string(r.run_id)}) ==
        "completed|2026-11-29 06:30:00+00|t|t|1|2|0|0|1|4|1|0|~|east");
  CHECK(db.value("SELECT requests_get_profiles, requests_get_author_feed, requests_get_posts FROM snapshot_logs "
                 "WHERE id = $1",
                 {std::to_string(r.run_id)}) == "1|2|1");
  const std::string line = ds::load::summary_line(r);
  CHECK(line.find("4 requests (1 getProfiles, 2 getAuthorFeed, 1 getPosts; 2.00 per account)") != std::string::npos);
  CHECK(line.find("feeds by path: 1 feed, 1 getPosts, 0 no request") != std::string::npos);

  Stream missing;
  missing.user(alice, "alice.test").ends(0, "ds-fetch-feeds");
  r = load(db, missing.text);
  CHECK(r.exit_code == ds::exit_code::runtime);
  CHECK(db.value("SELECT status, error FROM snapshot_logs WHERE id = $1", {std::to_string(r.run_id)}) ==
        "failed|the stream ended without the end record of ds-fetch-feeds");

  Stream failed_users;
  failed_users.user(alice, "alice.test").ends(2);
  r = load(db, failed_users.text);
  CHECK(r.exit_code == ds::exit_code::partial);
  CHECK(db.value("SELECT status, users_failed FROM snapshot_logs WHERE id = $1", {std::to_string(r.run_id)}) ==
        "partial|2");

  // A bad line is skipped and counted; --strict stops at it instead.
  Stream bad;
  bad.user(alice, "alice.test").raw("{not json").ends();
  r = load(db, bad.text);
  CHECK(r.exit_code == ds::exit_code::partial);
  CHECK(r.bad_lines == 1);
  CHECK(db.value("SELECT status, bad_lines FROM snapshot_logs WHERE id = $1", {std::to_string(r.run_id)}) ==
        "partial|1");
  r = load(db, bad.text, options([](auto& o) { o.strict = true; }));
  CHECK(r.exit_code == ds::exit_code::runtime);
  CHECK(db.value("SELECT status FROM snapshot_logs WHERE id = $1", {std::to_string(r.run_id)}) == "failed");
  CHECK(db.count("SELECT count(*) FROM snapshot_logs WHERE status = 'in_progress'") == 0);
}

namespace {

std::string param(std::int64_t v) { return std::to_string(v); }
std::int64_t shard_key(const std::string& shard) { return ds::shard_lock_key(ds::load::run_lock_key, shard); }

// Takes a run lock on `c` as a ds-load of `shard` (nullopt: unsharded) would, and keeps it.
void hold_run_lock(ds::PgConnection& c, const std::optional<std::string>& shard) {
  const std::string base = param(ds::load::run_lock_key);
  const auto r = shard ? c.exec("SELECT pg_try_advisory_lock_shared($1::bigint) AND pg_try_advisory_lock($2::bigint)",
                                {base, param(shard_key(*shard))})
                       : c.exec("SELECT pg_try_advisory_lock($1::bigint)", {base});
  REQUIRE(r.text(0, 0) == "t");
}

// Advisory locks held in `db`'s database, by any session.
constexpr const char* advisory_locks_sql =
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";

// Waits for the locks of closed sessions to go: that happens once their server process has exited.
void wait_for_advisory_locks_released(TestDb& db) {
  for (int i = 0; i < 500 && db.count(advisory_locks_sql) > 0; ++i) usleep(10'000);
}

}  // namespace

TEST_CASE("load: a run exits 4 while another holds the run lock", "[db]") {
  TestDb db("t_load_lock");
  auto other = db.connect();
  hold_run_lock(*other, std::nullopt);
  Stream s;
  s.post(alice, "p1", "2026-11-25T10:00:00Z", 1).user(alice, "alice.test").ends();
  auto r = load(db, s.text);
  CHECK(r.exit_code == ds::exit_code::locked);
  CHECK(r.error.find("another ds-load run is in progress") != std::string::npos);
  CHECK(db.count("SELECT count(*) FROM snapshot_logs") == 0);
  CHECK(db.count("SELECT count(*) FROM posts") == 0);

  other.reset();  // the lock goes with the session, once its server process has exited
  wait_for_advisory_locks_released(db);
  r = load(db, s.text);
  CHECK(r.exit_code == ds::exit_code::ok);
  CHECK(db.count("SELECT count(*) FROM posts") == 1);

  // ds-load releases its lock before it returns: a run right after it never finds it held.
  for (int i = 0; i < 20; ++i) {
    r = load(db, s.text);
    REQUIRE(r.exit_code == ds::exit_code::ok);
    REQUIRE(db.count(advisory_locks_sql) == 0);
  }
}

TEST_CASE("load: a sharded selection's stream loads under that shard's lock, with no --shard", "[db]") {
  TestDb db("t_load_stream_shard");
  Stream s;
  s.selection("1/4").post(alice, "p1", "2026-11-25T10:00:00Z", 1).user(alice, "alice.test").ends();
  // Shard 2/4's run is loading meanwhile: shard 1/4 runs beside it.
  auto other = db.connect();
  hold_run_lock(*other, "2/4");
  auto r = load(db, s.text);
  CHECK(r.exit_code == ds::exit_code::ok);
  CHECK(r.shard == "1/4");
  CHECK(db.value("SELECT status, shard FROM snapshot_logs WHERE id = $1", {param(r.run_id)}) == "completed|1/4");
  CHECK(db.count("SELECT count(*) FROM posts") == 1);

  // Another run of shard 1/4 holds its key: refused, naming that key, nothing written.
  auto same = db.connect();
  hold_run_lock(*same, "1/4");
  r = load(db, s.text);
  CHECK(r.exit_code == ds::exit_code::locked);
  CHECK(r.error == "another ds-load run is in progress (lock key " + param(shard_key("1/4")) + "); not loading");
  CHECK(db.count("SELECT count(*) FROM snapshot_logs") == 1);
}

TEST_CASE("load: --shard that disagrees with the stream's selection record is a usage error", "[db]") {
  TestDb db("t_load_shard_disagrees");
  Stream s;
  s.selection("0/4").post(alice, "p1", "2026-11-25T10:00:00Z", 1).user(alice, "alice.test").ends();
  auto r = load(db, s.text, options([](auto& o) { o.shard = "1/4"; }));
  CHECK(r.exit_code == ds::exit_code::usage);
  CHECK(r.error == "--shard 1/4 disagrees with the stream's selection record (line 1): shard 0/4");
  CHECK(db.value("SELECT status, error, shard FROM snapshot_logs WHERE id = $1", {param(r.run_id)}) ==
        "failed|" + r.error + "|1/4");
  CHECK(db.count("SELECT count(*) FROM posts") == 0);

  // Agreeing, it is what the stream says anyway; a stream that names no shard takes it as its label.
  r = load(db, s.text, options([](auto& o) { o.shard = "0/4"; }));
  CHECK(r.exit_code == ds::exit_code::ok);
  CHECK(db.value("SELECT shard FROM snapshot_logs WHERE id = $1", {param(r.run_id)}) == "0/4");
  Stream unsharded;
  unsharded.selection(std::nullopt).user(alice, "alice.test").ends();
  r = load(db, unsharded.text, options([](auto& o) { o.shard = "east"; }));
  CHECK(r.exit_code == ds::exit_code::ok);
  CHECK(db.value("SELECT shard FROM snapshot_logs WHERE id = $1", {param(r.run_id)}) == "east");
}

TEST_CASE("load: shards' streams concatenated load as one unsharded run, when no other run is loading", "[db]") {
  TestDb db("t_load_shards_concatenated");
  Stream s;  // what `cat shard-0-of-2/4-aggregate.ndjson shard-1-of-2/4-aggregate.ndjson` gives
  s.selection("0/2").post(alice, "p1", "2026-11-25T10:00:00Z", 1).user(alice, "alice.test").ends();
  s.selection("1/2").post(bob, "q1", "2026-11-25T10:00:00Z", 1).user(bob, "bob.test").ends();
  // Shard 1/2's run is loading: the stream's shard 0/2 part loads, then the run stops at shard 1/2.
  {
    auto other = db.connect();
    hold_run_lock(*other, "1/2");
    const auto r = load(db, s.text);
    CHECK(r.exit_code == ds::exit_code::locked);
    CHECK(r.error.find("the stream goes on with shard 1/2 (line 8) after shard 0/2") != std::string::npos);
    CHECK(db.value("SELECT status, shard FROM snapshot_logs WHERE id = $1", {param(r.run_id)}) == "failed|0/2");
    CHECK(db.rows("SELECT uri FROM posts") == std::vector<std::string>{Stream::uri(alice, "p1")});
  }
  // Alone, the run takes the whole database, as an unsharded run, for the second selection.
  wait_for_advisory_locks_released(db);
  const auto r = load(db, s.text);
  CHECK(r.exit_code == ds::exit_code::ok);
  CHECK_FALSE(r.shard.has_value());
  CHECK(db.value("SELECT status, shard, users_selected FROM snapshot_logs WHERE id = $1", {param(r.run_id)}) ==
        "completed|~|4");  // each shard's ds-select-users end says 2
  CHECK(db.count("SELECT count(*) FROM posts") == 2);
}

TEST_CASE("load: loading the same stream twice, in any batch size, gives identical rows", "[db]") {
  TestDb db("t_load_idempotent");
  Stream s;
  s.post(alice, "p1", "2026-11-25T10:00:00Z", 4, 1, 0, 2)
      .post(alice, "p2", "2026-11-26T10:00:00Z", 7)
      .user(alice, "bob.test", nullptr)
      .snapshot(alice, "2026-11-29", 10, 11)
      .post(bob, "q1", "2026-11-27T10:00:00Z", 1)
      .user(bob, "robert.test")
      .snapshot(bob, "2026-11-29", 3, 1)
      .post(carol, "r1", "2026-11-27T10:00:00Z", 1)
      .user(carol, "carol.test", since, FeedStatus::failed)
      .ends(1);
  const auto dump = [&] {
    auto all = db.rows(R"(SELECT uri, did, likes, replies, quotes, reposts, "createdAt", "updatedAt", sort_at,
                                 deleted_at FROM posts ORDER BY uri)");
    for (auto& row : db.rows("SELECT uuid, did, date, followers, following, posts, likes, replies, quotes, "
                             "reposts, created_at FROM snapshots ORDER BY did, date"))
      all.push_back(row);
    for (auto& row : db.rows(R"(SELECT did, handle, "displayName", avatar, updated_at FROM users ORDER BY did)"))
      all.push_back(row);
    return all;
  };
  auto r = load(db, s.text, options([](auto& o) { o.batch_records = 1; }));
  CHECK(r.exit_code == ds::exit_code::partial);
  CHECK(r.stats.batches == 3);  // one per user record
  const auto first = dump();
  CHECK(first.size() == 4 + 2 + 3);
  r = load(db, s.text);
  CHECK(r.stats.batches == 1);
  CHECK(r.stats.posts_unchanged == 4);
  CHECK(dump() == first);
}

TEST_CASE("load: a database error fails the run with the line, keeping earlier batches", "[db]") {
  TestDb db("t_load_dberror");
  db.sql().exec("ALTER TABLE posts ADD CONSTRAINT small_likes CHECK (likes < 1000)");
  Stream s;
  s.post(alice, "p1", "2026-11-25T10:00:00Z", 1)
      .user(alice, "alice.test")
      .post(bob, "q1", "2026-11-25T10:00:00Z", 5000)
      .user(bob, "bob.test")
      .ends();
  const auto r = load(db, s.text, options([](auto& o) { o.batch_records = 1; }));
  CHECK(r.exit_code == ds::exit_code::runtime);
  // New posts go in by COPY, so the server's message comes as a failed COPY.
  CHECK(r.error.find("violates check constraint \"small_likes\"") != std::string::npos);
  CHECK(r.error.find("while loading line 4") != std::string::npos);
  const auto logged = db.value("SELECT status, error LIKE '%small_likes%' FROM snapshot_logs WHERE id = $1",
                               {std::to_string(r.run_id)});
  CHECK(logged == "failed|t");
  CHECK(db.rows("SELECT uri FROM posts") == std::vector<std::string>{Stream::uri(alice, "p1")});
}

TEST_CASE("load: a batch compares with what the batch before it wrote, even while that commits", "[db]") {
  // Batch 2 changes alice's p1 back while batch 1's commit (which changed it) is still running: a
  // trigger makes that commit take 300 ms. Windows of a full group of accounts are read on the
  // reading connection meanwhile; alice's must not be, since that connection still sees p1 as it
  // was before batch 1 and would take the returning value for unchanged. The last line must win.
  TestDb db("t_load_read_after_write");
  std::vector<std::string> group1, group2;  // 70 accounts in each batch besides alice
  for (int i = 0; i < 140; ++i) (i < 70 ? group1 : group2).push_back("did:plc:other" + std::to_string(100 + i));
  Stream first;
  first.post(alice, "p1", "2026-11-25T10:00:00Z", 1).user(alice, "alice.test");
  for (const auto& g : {group1, group2})
    for (const auto& did : g) {
      db.add_user(did, did.substr(8) + ".test");
      first.post(did, "x", "2026-11-25T10:00:00Z", 1).user(did, did.substr(8) + ".test");
    }
  REQUIRE(load(db, first.ends().text).exit_code == 0);
  db.sql().exec("CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "PERFORM pg_sleep(0.3); RETURN NULL; END $$");
  db.sql().exec("CREATE TRIGGER slow_commit AFTER INSERT ON snapshots FOR EACH STATEMENT EXECUTE FUNCTION slow_commit()");

  // 142 records per batch: batch 1 is group 1 then alice (with her snapshot), batch 2 alice then group 2.
  Stream s;
  for (const auto& did : group1) s.post(did, "x", "2026-11-25T10:00:00Z", 2).user(did, did.substr(8) + ".test");
  s.post(alice, "p1", "2026-11-25T10:00:00Z", 5).user(alice, "alice.test").snapshot(alice, "2026-11-29", 10, 5);
  s.post(alice, "p1", "2026-11-25T10:00:00Z", 1).user(alice, "alice.test");
  for (const auto& did : group2) s.post(did, "x", "2026-11-25T10:00:00Z", 2).user(did, did.substr(8) + ".test");
  const auto r = load(db, s.ends().text, options([](auto& o) { o.batch_records = 142; }));
  CHECK(r.status == "completed");
  CHECK(r.stats.batches == 2);
  CHECK(r.stats.posts_updated == 142);
  CHECK(db.value("SELECT likes FROM posts WHERE uri = $1", {Stream::uri(alice, "p1")}) == "1");
}

TEST_CASE("load: an error in a batch's commit fails the run naming the batch's lines", "[db]") {
  // A batch's last statements (here the snapshot merge) and its COMMIT run while the next batch
  // is read; their error surfaces later but still names the batch, and nothing of it stays.
  TestDb db("t_load_commit_error");
  db.sql().exec("ALTER TABLE snapshots ADD CONSTRAINT few_followers CHECK (followers < 1000)");
  Stream s;
  s.post(alice, "p1", "2026-11-25T10:00:00Z", 1)
      .user(alice, "alice.test")
      .snapshot(alice, "2026-11-29", 10, 1)
      .post(bob, "q1", "2026-11-25T10:00:00Z", 2)  // line 4
      .user(bob, "bob.test")
      .snapshot(bob, "2026-11-29", 5000, 2)  // line 6
      .post(carol, "c1", "2026-11-25T10:00:00Z", 3)
      .user(carol, "carol.test")
      .ends();
  const auto r = load(db, s.text, options([](auto& o) { o.batch_records = 1; }));
  CHECK(r.exit_code == ds::exit_code::runtime);
  CHECK(r.error.find("violates check constraint \"few_followers\"") != std::string::npos);
  CHECK(r.error.find("(writing the batch of lines 4-6)") != std::string::npos);
  CHECK(db.value("SELECT status FROM snapshot_logs WHERE id = $1", {std::to_string(r.run_id)}) == "failed");
  CHECK(db.rows("SELECT uri FROM posts") == std::vector<std::string>{Stream::uri(alice, "p1")});
  CHECK(db.rows("SELECT did FROM snapshots") == std::vector<std::string>{alice});
  CHECK(r.stats.batches == 1);
}

namespace {

// Runs the load logic on a pipe fed in two parts, calling `between` after the first part has had
// time to be read and loaded, before the second is written.
template <class F>
ds::load::LoadResult load_in_two_parts(const TestDb& db, const std::string& first, const std::string& second,
                                       ds::load::LoadOptions o, F between) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  std::thread writer([&] {
    (void)!write(fds[1], first.data(), first.size());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    between();
    (void)!write(fds[1], second.data(), second.size());
    close(fds[1]);
  });
  o.db = db.params();
  const int null_fd = open("/dev/null", O_WRONLY);
  ds::load::LoadResult r;
  {
    ds::LineReader reader(fds[0], "pipe");
    ds::OutputWriter out(null_fd);
    r = ds::load::run_load(o, reader, out);
  }
  writer.join();
  close(fds[0]);
  close(null_fd);
  return r;
}

}  // namespace

TEST_CASE("load: a stop request rolls back the open batch and records the interruption", "[db]") {
  TestDb db("t_load_signal");
  // The stop request (what SIGTERM sets) comes while bob's post sits in the open batch, and takes
  // effect at the next record.
  Stream part1, part2;
  part1.post(alice, "p1", "2026-11-25T10:00:00Z", 1).user(alice, "alice.test").post(bob, "q1", "2026-11-25T10:00:00Z", 1);
  part2.user(bob, "bob.test").ends();
  volatile std::sig_atomic_t stop = 0;
  const auto r = load_in_two_parts(db, part1.text, part2.text,
                                   options([&](auto& o) { o.batch_records = 1, o.stop = &stop; }),
                                   [&] { stop = 1; });
  CHECK(r.exit_code == ds::exit_code::interrupted);
  CHECK(db.value("SELECT status, error FROM snapshot_logs WHERE id = $1", {std::to_string(r.run_id)}) ==
        "failed|interrupted by signal");
  // Alice's batch was committed before the stop; bob's open batch was rolled back.
  CHECK(db.rows("SELECT uri FROM posts") == std::vector<std::string>{Stream::uri(alice, "p1")});
}

TEST_CASE("load: when the connection dies, a new one records the run as failed", "[db]") {
  TestDb db("t_load_lostconn");
  Stream part1, part2;
  part1.post(alice, "p1", "2026-11-25T10:00:00Z", 1).user(alice, "alice.test").post(bob, "q1", "2026-11-25T10:00:00Z", 1);
  part2.user(bob, "bob.test").ends();
  std::int64_t killed = 0;
  const auto r = load_in_two_parts(db, part1.text, part2.text, options([](auto& o) { o.batch_records = 1; }), [&] {
    killed = db.count("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'dopplersky'");
  });
  CHECK(killed == 1);
  CHECK(r.exit_code == ds::exit_code::runtime);
  CHECK(r.error.find("while loading line 4") != std::string::npos);
  CHECK(db.value("SELECT status, error IS NOT NULL FROM snapshot_logs WHERE id = $1", {std::to_string(r.run_id)}) ==
        "failed|t");
  CHECK(db.rows("SELECT uri FROM posts") == std::vector<std::string>{Stream::uri(alice, "p1")});
}

namespace {

// What a load decides about posts, markers and snapshots, without the times it stamps.
std::vector<std::string> decided_state(TestDb& db) {
  auto all = db.rows(R"(SELECT uri, did, likes, replies, quotes, reposts, "createdAt", sort_at, deleted_at IS NOT NULL
                          FROM posts ORDER BY uri)");
  for (auto& row : db.rows("SELECT did, backfilled_at IS NOT NULL, backfill_posts FROM ds_user_state ORDER BY did"))
    all.push_back(row);
  for (auto& row : db.rows("SELECT did, date, followers, likes FROM snapshots ORDER BY did, date")) all.push_back(row);
  return all;
}

// Rows the original program left: one of alice's from long ago, one of bob's inside today's window.
void seed_original_posts(TestDb& db) {
  db.sql().exec(R"(INSERT INTO posts (uri, did, likes, "createdAt") VALUES ($1, $2, 5, '2020-01-01Z'), ($3, $4, 2, '2026-11-24Z'))",
                {Stream::uri(alice, "ancient"), alice, Stream::uri(bob, "gone"), bob});
}

}  // namespace

TEST_CASE("load: posts compared and written in several flushes within a batch give the same rows", "[db]") {
  // Duplicates across flushes, a backfill's deletion and marker count, an incremental window's
  // deletion, a failed feed and an unknown account: with a flush after every post, each account's
  // returned URIs must be carried until its user record, as in one flush.
  Stream s;
  s.post(alice, "p3", "2026-11-27T10:00:00Z", 1)
      .post(alice, "p2", "2026-11-26T10:00:00Z", 4)
      .post(alice, "p3", "2026-11-27T10:00:00Z", 9)  // the later line wins
      .post(alice, "p1", "2023-01-01T10:00:00Z", 2)
      .user(alice, "alice.test", nullptr)
      .snapshot(alice, "2026-11-29", 10, 15)
      .post(bob, "q1", "2026-11-26T10:00:00Z", 1)
      .post("did:plc:nobody", "x", "2026-11-26T10:00:00Z", 1)
      .user(bob, "bob.test")
      .post(carol, "r1", "2026-11-26T10:00:00Z", 3)
      .user(carol, "carol.test", since, FeedStatus::failed)
      .ends(1);
  TestDb one("t_load_flush_one");
  TestDb many("t_load_flush_many");
  seed_original_posts(one);
  seed_original_posts(many);
  const auto a = load(one, s.text);
  const auto b = load(many, s.text, options([](auto& o) { o.max_buffered_posts = 1; }));
  CHECK(a.status == "partial");
  CHECK(b.status == "partial");
  CHECK(a.stats.posts_inserted == 5);
  CHECK(a.stats.posts_deleted == 2);
  CHECK(a.stats.posts_skipped == 1);
  CHECK(a.stats.backfills_marked == 1);
  // Counts may differ (a duplicate line in a later flush updates the row the earlier one inserted);
  // what is stored may not.
  CHECK(b.stats.posts_inserted == a.stats.posts_inserted);
  CHECK(b.stats.posts_deleted == a.stats.posts_deleted);
  CHECK(b.stats.posts_skipped == a.stats.posts_skipped);
  CHECK(one.value("SELECT likes FROM posts WHERE uri = $1", {Stream::uri(alice, "p3")}) == "9");
  CHECK(one.value("SELECT backfill_posts FROM ds_user_state WHERE did = $1", {alice}) == "3");
  CHECK(one.rows("SELECT uri FROM posts WHERE deleted_at IS NOT NULL ORDER BY uri") ==
        std::vector<std::string>{Stream::uri(alice, "ancient"), Stream::uri(bob, "gone")});
  CHECK(decided_state(many) == decided_state(one));

  // The same stream again: nothing to write.
  const auto again = load(many, s.text);
  CHECK(again.stats.posts_inserted == 0);
  CHECK(again.stats.posts_updated == 0);
  CHECK(again.stats.posts_unchanged == 5);
  CHECK(decided_state(many) == decided_state(one));
}

TEST_CASE("load: a new post colliding with a row the comparison could not see is merged, not failed", "[db]") {
  // The stored row carries another author, so alice's window does not contain it: taken for new,
  // its COPY meets the primary key and the batch falls back to the ON CONFLICT merge.
  TestDb db("t_load_collision");
  db.sql().exec(R"(INSERT INTO posts (uri, did, likes, "createdAt") VALUES ($1, $2, 1, '2026-11-25Z'))",
                {Stream::uri(alice, "p1"), bob});
  Stream s;
  s.post(alice, "p1", "2026-11-25T10:00:00Z", 7).post(alice, "p2", "2026-11-26T10:00:00Z", 3).user(alice, "alice.test", nullptr).ends();
  const auto r = load(db, s.text);
  CHECK(r.exit_code == ds::exit_code::ok);
  CHECK(r.stats.posts_inserted == 1);
  CHECK(r.stats.posts_updated == 1);
  CHECK(db.rows("SELECT uri, likes FROM posts ORDER BY uri") ==
        std::vector<std::string>{Stream::uri(alice, "p1") + "|7", Stream::uri(alice, "p2") + "|3"});
}

TEST_CASE("load: windows read ahead for many accounts give the rows of one read per flush", "[db]") {
  // 150 accounts: their windows are read in groups while later records are parsed. With a flush
  // after every post each window is read at the flush instead; both must store the same.
  const auto stream = [](int day) {
    Stream s;
    for (int i = 0; i < 150; ++i) {
      const std::string did = "did:plc:many" + std::to_string(1000 + i);
      for (int j = 0; j < 4; ++j) {
        if (day == 2 && j == i % 4) continue;  // deleted on day 2
        const std::int64_t likes = j + (day == 2 && j == (i + 1) % 4 ? 10 : 0);  // grew on day 2
        const std::string at = "2026-11-2" + std::to_string(3 + j) + "T10:00:00Z";
        s.post(did, "p" + std::to_string(j), at.c_str(), likes);
      }
      s.user(did, "many" + std::to_string(i) + ".test", day == 1 ? nullptr : since);
      s.snapshot(did, day == 1 ? "2026-11-28" : "2026-11-29", i, i);
    }
    return s.ends().text;
  };
  TestDb ahead("t_load_ahead");
  TestDb flushed("t_load_ahead_flushed");
  for (auto* db : {&ahead, &flushed})
    db->sql().exec("INSERT INTO users (did, handle) SELECT 'did:plc:many' || (1000 + i), 'many' || i || '.test' "
                   "FROM generate_series(0, 149) AS i");
  const auto every_post = options([](auto& o) { o.max_buffered_posts = 1; });
  for (const int day : {1, 2}) {
    const auto a = load(ahead, stream(day));
    const auto b = load(flushed, stream(day), every_post);
    CHECK(a.status == "completed");
    CHECK(b.status == "completed");
    CHECK(a.stats.posts_deleted == (day == 2 ? 150 : 0));
    CHECK(a.stats.posts_updated == (day == 2 ? 150 : 0));
    CHECK(b.stats.posts_deleted == a.stats.posts_deleted);
    CHECK(decided_state(ahead) == decided_state(flushed));
  }
  CHECK(ahead.count("SELECT count(*) FROM posts WHERE deleted_at IS NULL") == 450);
}

TEST_CASE("load: accounts with different windows in one flush keep only their own window's rows", "[db]") {
  // One flush holds a backfill (no window), a 7-day window and a 4-day window: each start gets a
  // read of its own, and rows before an account's own start must not count as deleted.
  TestDb db("t_load_mixed_windows");
  Stream first;
  first.post(alice, "old", "2026-11-01T10:00:00Z", 1)
      .post(alice, "p1", "2026-11-25T10:00:00Z", 1)
      .post(alice, "p2", "2026-11-26T10:00:00Z", 1)
      .user(alice, "alice.test")
      .post(bob, "b_old", "2026-11-20T10:00:00Z", 1)
      .post(bob, "b2", "2026-11-24T10:00:00Z", 1)
      .post(bob, "b1", "2026-11-26T10:00:00Z", 1)
      .user(bob, "bob.test")
      .ends();
  REQUIRE(load(db, first.text).exit_code == 0);

  Stream second;
  second.post(carol, "c1", "2026-11-27T10:00:00Z", 1)
      .user(carol, "carol.test", nullptr)  // a backfill: the read starts at -infinity
      .post(alice, "p1", "2026-11-25T10:00:00Z", 2)
      .user(alice, "alice.test")  // window from 11-22: p2 is gone, "old" is outside
      .post(bob, "b1", "2026-11-26T10:00:00Z", 1)
      .user(bob, "bob.test", "2026-11-25T00:00:00Z")  // b2 and b_old are outside
      .ends();
  for (const auto& o : {ds::load::LoadOptions{}, options([](auto& x) { x.max_buffered_posts = 1; })}) {
    const auto r = load(db, second.text, o);
    CHECK(r.status == "completed");
    CHECK(db.rows("SELECT uri FROM posts WHERE deleted_at IS NOT NULL ORDER BY uri") ==
          std::vector<std::string>{Stream::uri(alice, "p2")});
    CHECK(db.count("SELECT count(*) FROM posts WHERE deleted_at IS NULL") == 6);
  }
}

TEST_CASE("load: a changed post whose row moved after it was read is updated by URI", "[db]") {
  // Changed posts are updated through the row version the comparison read. A trigger on the new
  // posts' COPY (which runs between that read and the update) updates alice's p1 the way another
  // writer could, so its version moves: the update by version misses it and the one by URI must
  // catch it.
  TestDb db("t_load_moved_row");
  Stream first;
  first.post(alice, "p1", "2026-11-25T10:00:00Z", 1).user(alice, "alice.test").ends();
  REQUIRE(load(db, first.text).exit_code == 0);
  db.sql().exec("CREATE FUNCTION touch_p1() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "UPDATE posts SET \"updatedAt\" = \"updatedAt\" WHERE uri = '" + Stream::uri(alice, "p1") +
                "'; RETURN NULL; END $$");
  db.sql().exec("CREATE TRIGGER touch_p1 AFTER INSERT ON posts FOR EACH STATEMENT EXECUTE FUNCTION touch_p1()");

  Stream second;
  second.post(alice, "p1", "2026-11-25T10:00:00Z", 5).post(alice, "p2", "2026-11-26T10:00:00Z", 2).user(alice, "alice.test").ends();
  const auto r = load(db, second.text);
  CHECK(r.status == "completed");
  CHECK(r.stats.posts_inserted == 1);
  CHECK(r.stats.posts_updated == 1);
  CHECK(db.rows("SELECT uri, likes FROM posts ORDER BY uri") ==
        std::vector<std::string>{Stream::uri(alice, "p1") + "|5", Stream::uri(alice, "p2") + "|2"});
}

TEST_CASE("load: rows from before migration 002 (no sort_at) take part in the window by createdAt", "[db]") {
  // The original program's rows have sort_at NULL. A complete daily feed that no longer returns
  // one inside the window marks it deleted; one before the window is left alone; one it returns
  // again gets its sort_at.
  TestDb db("t_load_legacy_rows");
  db.sql().exec(R"(INSERT INTO posts (uri, did, likes, "createdAt") VALUES
                   ($1, $4, 1, '2026-11-01T10:00:00Z'), ($2, $4, 1, '2026-11-24T10:00:00Z'),
                   ($3, $4, 1, '2026-11-25T10:00:00Z'))",
                {Stream::uri(alice, "old"), Stream::uri(alice, "gone"), Stream::uri(alice, "kept"), alice});
  Stream s;
  s.post(alice, "kept", "2026-11-25T10:00:00Z", 1).user(alice, "alice.test").ends();  // window from 11-22
  const auto r = load(db, s.text);
  CHECK(r.status == "completed");
  CHECK(r.stats.posts_deleted == 1);
  CHECK(db.rows("SELECT uri, deleted_at IS NOT NULL, sort_at IS NOT NULL FROM posts ORDER BY uri") ==
        std::vector<std::string>{Stream::uri(alice, "gone") + "|t|f", Stream::uri(alice, "kept") + "|f|t",
                                 Stream::uri(alice, "old") + "|f|f"});
}

TEST_CASE("load: the stored fingerprint is the post's, and a daily run writes nothing unchanged", "[db]") {
  TestDb db("t_load_fingerprint");
  Stream s;
  s.post(alice, "p1", "2026-11-25T10:00:00Z", 4, 1, 2, 3).user(alice, "alice.test").ends();
  REQUIRE(load(db, s.text).exit_code == 0);
  const std::string uri = Stream::uri(alice, "p1");
  const ds::Micros at = ts("2026-11-25T10:00:00Z");
  CHECK(db.value("SELECT load_fp, load_uri_fp FROM posts WHERE uri = $1", {uri}) ==
        std::to_string(ds::load::post_fingerprint({uri, alice, 4, 1, 2, 3, at, at})) + "|" +
            std::to_string(ds::load::uri_fingerprint(uri)));
  const auto version = db.value("SELECT ctid FROM posts WHERE uri = $1", {uri});
  const auto r = load(db, s.text);
  CHECK(r.stats.posts_unchanged == 1);
  CHECK(r.stats.posts_updated == 0);
  CHECK(db.value("SELECT ctid FROM posts WHERE uri = $1", {uri}) == version);  // not even rewritten
}

TEST_CASE("load: a row another writer changed is compared by value, not by its old fingerprint", "[db]") {
  // The original program's engagement update changes likes and knows nothing of load_fp. Migration
  // 005's trigger drops the fingerprint, so the next run sees the difference. Without it the
  // unchanged stream would match the old fingerprint and leave the other writer's value.
  TestDb db("t_load_foreign_writer");
  Stream s;
  s.post(alice, "p1", "2026-11-25T10:00:00Z", 4).post(alice, "p2", "2026-11-26T10:00:00Z", 5).user(alice, "alice.test").ends();
  REQUIRE(load(db, s.text).exit_code == 0);
  const std::string p1 = Stream::uri(alice, "p1"), p2 = Stream::uri(alice, "p2");
  db.sql().exec(R"(UPDATE posts SET likes = 13, "updatedAt" = NOW() WHERE uri = $1)", {p1});
  CHECK(db.value("SELECT load_fp IS NULL FROM posts WHERE uri = $1", {p1}) == "t");
  // A write that leaves the values alone keeps it.
  db.sql().exec(R"(UPDATE posts SET "updatedAt" = NOW() WHERE uri = $1)", {p2});
  CHECK(db.value("SELECT load_fp IS NULL FROM posts WHERE uri = $1", {p2}) == "f");

  const auto r = load(db, s.text);
  CHECK(r.status == "completed");
  CHECK(r.stats.posts_updated == 1);
  CHECK(r.stats.posts_unchanged == 1);
  CHECK(db.rows("SELECT likes, load_fp IS NOT NULL FROM posts ORDER BY uri") == std::vector<std::string>{"4|t", "5|t"});
}

TEST_CASE("load: rows without a fingerprint get one once, counted unchanged", "[db]") {
  // Rows written before migration 005 (or by the original program) have none: their first daily
  // run compares them by value and writes only the fingerprint; later runs write nothing.
  TestDb db("t_load_no_fingerprint");
  Stream s;
  s.post(alice, "p1", "2026-11-25T10:00:00Z", 4)
      .post(alice, "p2", "2026-11-26T10:00:00Z", 5)
      .user(alice, "alice.test")
      .post(bob, "q1", "2026-11-26T10:00:00Z", 1)
      .user(bob, "bob.test")
      .ends();
  REQUIRE(load(db, s.text).exit_code == 0);
  const auto fingerprints = db.rows("SELECT uri, load_fp, load_uri_fp FROM posts ORDER BY uri");
  db.sql().exec("UPDATE posts SET load_fp = NULL, load_uri_fp = NULL WHERE did = $1", {alice});
  for (const auto& o : {ds::load::LoadOptions{}, options([](auto& x) { x.max_buffered_posts = 1; })}) {
    auto r = load(db, s.text, o);
    CHECK(r.status == "completed");
    CHECK(r.stats.posts_updated == 0);
    CHECK(r.stats.posts_unchanged == 3);
    CHECK(db.rows("SELECT uri, load_fp, load_uri_fp FROM posts ORDER BY uri") == fingerprints);
    const auto written = db.rows(R"(SELECT uri, "updatedAt" FROM posts ORDER BY uri)");
    r = load(db, s.text, o);
    CHECK(r.stats.posts_unchanged == 3);
    CHECK(db.rows(R"(SELECT uri, "updatedAt" FROM posts ORDER BY uri)") == written);
    db.sql().exec("UPDATE posts SET load_fp = NULL WHERE did = $1", {alice});  // the URI's stays, this time
  }
}

TEST_CASE("load: a URI fingerprint collision costs a lookup, never a wrong row or a deletion", "[db]") {
  // p2's stored URI fingerprint is made p1's, so the changed p1 is paired with p2's row. The
  // update checks the URI and falls back to it; p1's own row, then unexplained, is read in full and
  // must not be taken for gone. (p2's values are unchanged, so its row is not rewritten.)
  TestDb db("t_load_uri_collision");
  Stream first;
  first.post(alice, "p1", "2026-11-25T10:00:00Z", 1).post(alice, "p2", "2026-11-26T10:00:00Z", 1).user(alice, "alice.test").ends();
  REQUIRE(load(db, first.text).exit_code == 0);
  const std::string p1 = Stream::uri(alice, "p1"), p2 = Stream::uri(alice, "p2");
  db.sql().exec("UPDATE posts SET load_uri_fp = $1::bigint WHERE uri = $2",
                {std::to_string(ds::load::uri_fingerprint(p1)), p2});
  db.sql().exec("UPDATE posts SET load_uri_fp = NULL WHERE uri = $1", {p1});  // so p2's row is the one found
  Stream second;
  second.post(alice, "p1", "2026-11-25T10:00:00Z", 5).post(alice, "p2", "2026-11-26T10:00:00Z", 1).user(alice, "alice.test").ends();
  const auto r = load(db, second.text);
  CHECK(r.status == "completed");
  CHECK(r.stats.posts_deleted == 0);
  CHECK(r.stats.posts_updated == 1);
  CHECK(db.rows("SELECT uri, likes, deleted_at IS NULL FROM posts ORDER BY uri") ==
        std::vector<std::string>{p1 + "|5|t", p2 + "|1|t"});
  CHECK(db.value("SELECT load_uri_fp FROM posts WHERE uri = $1", {p1}) == std::to_string(ds::load::uri_fingerprint(p1)));
}

TEST_CASE("load: a server ending the session counts as a lost connection, though libpq still calls it good", "[db]") {
  // A fast restart sends each session 57P01 before libpq has seen the socket close: ds-load must
  // report a lost connection (and record the run on a new one), not an ordinary SQL error.
  TestDb db("t_load_connection_lost");
  const auto c = db.connect();
  REQUIRE(c->ok());
  CHECK(ds::connection_lost(c->get(), "57P01"));  // admin_shutdown: a fast shutdown or restart
  CHECK(ds::connection_lost(c->get(), "57P02"));  // crash_shutdown
  CHECK(ds::connection_lost(c->get(), "08006"));  // connection_failure
  CHECK_FALSE(ds::connection_lost(c->get(), "23505"));
  CHECK_FALSE(ds::connection_lost(c->get(), ""));
  CHECK(ds::connection_lost(nullptr, ""));
}

TEST_CASE("load: a run that cannot open its second connection fails saying so, and is recorded", "[db]") {
  // ds-load reads on a second connection. A role allowed one connection gets the first (the lock,
  // the run row) and not the second.
  TestDb db("t_load_one_connection");
  db.sql().exec("DROP ROLE IF EXISTS ds_one_conn");
  db.sql().exec("CREATE ROLE ds_one_conn LOGIN CONNECTION LIMIT 1");
  db.sql().exec("GRANT ALL ON ALL TABLES IN SCHEMA public TO ds_one_conn");
  db.sql().exec("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO ds_one_conn");
  Stream s;
  s.post(alice, "p1", "2026-11-25T10:00:00Z", 1).user(alice, "alice.test").ends();
  const auto r = load(db, s.text, options([&](auto& o) { o.db = db.params_as("ds_one_conn"); }));
  CHECK(r.exit_code == ds::exit_code::runtime);
  CHECK(r.error.find("cannot open ds-load's second connection (for reading)") != std::string::npos);
  CHECK(r.error.find("too many connections for role") != std::string::npos);
  CHECK(db.value("SELECT status FROM snapshot_logs WHERE id = $1", {std::to_string(r.run_id)}) == "failed");
  CHECK(db.count("SELECT count(*) FROM posts") == 0);
  db.sql().exec("DROP OWNED BY ds_one_conn");
  db.sql().exec("DROP ROLE ds_one_conn");
}

// A progressive backfill through the database and back: ds-load stores a partial backfill's
// cursor and progress, ds-select-users carries them into the next run's record with a window
// reaching back to the last run, and the run that completes it sets the marker, marking deleted
// only what its window no longer holds.
TEST_CASE("load and select: a backfill's state round-trips over the runs that complete it", "[db]") {
  using ds::Micros;
  TestDb db("t_load_progressive");
  // Left by the original program: no later run returns it, and only a complete backfill may mark it.
  db.sql().exec(R"(INSERT INTO posts (uri, did, likes, "createdAt") VALUES ($1, $2, 5, '2020-01-01Z'))",
                {Stream::uri(alice, "ancient"), alice});
  const std::string cursor = "2026-10-01T00:00:00.000Z";
  const auto user = [&](Stream& s, Micros run_as_of, std::optional<Micros> window, std::optional<std::string> resume,
                        FeedStatus status, std::optional<std::string> next) {
    ds::UserRecord u;
    u.did = alice;
    u.handle = "alice.test";
    u.as_of = run_as_of;
    u.since = window;
    u.backfill_cursor = std::move(resume);
    u.profile_status = ds::ProfileStatus::ok;
    u.profile = ds::Profile{"alice.test", std::nullopt, std::nullopt, 10, 20, 30};
    u.feed.status = status;
    u.feed.cursor = std::move(next);
    ds::encode(s.text, u);
    auto all = clean_ends(1);
    set_counter(all, "ds-fetch-feeds", "backfill_partial", status == FeedStatus::partial);
    for (const auto& e : all) ds::encode(s.text, e);
  };
  const auto select_alice = [&](Micros run_as_of) {
    ds::select_users::Options o;
    o.mode = ds::select_users::Mode::dids;
    o.dids = {alice};
    o.as_of = run_as_of;
    std::vector<ds::UserRecord> out;
    const auto k = ds::select_users::select(db.sql(), o, [&](const ds::UserRecord& u) { out.push_back(u); });
    REQUIRE(out.size() == 1);
    return std::pair{out[0], k};
  };
  const auto state = [&] {
    return db.value("SELECT backfilled_at IS NOT NULL, backfill_cursor, backfill_posts, backfill_started_at = $2, "
                    "backfill_covered_to = $2 FROM ds_user_state WHERE did = $1",
                    {alice, std::string(as_of)});
  };

  // Day 1: a fresh backfill stopped at the run's limit.
  Stream day1;
  day1.post(alice, "recent", "2026-11-28T10:00:00Z", 1).post(alice, "old1", "2026-10-02T10:00:00Z", 2)
      .post(alice, "old2", "2026-10-01T10:00:00Z", 3);
  user(day1, ts(as_of), std::nullopt, std::nullopt, FeedStatus::partial, cursor);
  auto r = load(db, day1.text);
  CHECK(r.exit_code == 0);  // a backfill in progress is no failure
  CHECK(r.status == "completed");
  CHECK(db.value("SELECT backfills_partial FROM snapshot_logs ORDER BY id DESC LIMIT 1") == "1");
  CHECK(state() == "f|" + cursor + "|4|t|t");
  CHECK(db.count("SELECT count(*) FROM posts WHERE deleted_at IS NOT NULL") == 0);

  // Day 2 selects it as a backfill in progress: its cursor, and a window from its last run.
  const Micros day2 = ts(as_of) + ds::micros_per_day;
  auto [rec, k] = select_alice(day2);
  CHECK(k.backfill_resumed == 1);
  CHECK(k.backfill == 0);
  CHECK(k.incremental == 0);
  CHECK(rec.backfill_cursor == cursor);
  CHECK(rec.backfill_posts == 4);
  CHECK(rec.since == day2 - 7 * ds::micros_per_day);  // the run's window reaches past day 1
  CHECK(rec.baseline.posts == 3);                      // old1, old2, ancient: before the window
  CHECK(rec.baseline.likes == 2 + 3 + 5);
  CHECK(!rec.window_uris);
  // Runs skipped for longer than the window: it starts at the last run instead, leaving no gap.
  auto [late, late_k] = select_alice(ts(as_of) + 30 * ds::micros_per_day);
  CHECK(late.since == ts(as_of));
  CHECK(late.baseline.posts == 4);

  // Day 2 completes it: the window lost "recent", the history's rest has "older".
  Stream s2;
  s2.post(alice, "new", "2026-11-30T01:00:00Z", 1).post(alice, "older", "2026-09-01T10:00:00Z", 4);
  user(s2, day2, rec.since, rec.backfill_cursor, FeedStatus::complete, std::nullopt);
  r = load(db, s2.text);
  CHECK(r.exit_code == 0);
  CHECK(r.stats.backfills_marked == 1);
  CHECK(db.value("SELECT backfilled_at IS NOT NULL, backfill_cursor IS NULL, backfill_covered_to IS NULL, "
                 "backfill_posts FROM ds_user_state WHERE did = $1",
                 {alice}) == "t|t|t|5");
  // Only the window's missing post is deleted: earlier runs' posts were not in this run's feed.
  CHECK(db.rows("SELECT uri FROM posts WHERE deleted_at IS NOT NULL") ==
        std::vector<std::string>{Stream::uri(alice, "recent")});
  auto [after, after_k] = select_alice(day2 + ds::micros_per_day);
  CHECK(after_k.incremental == 1);
  CHECK(!after.backfill_cursor);
  CHECK(after.since == day2 + ds::micros_per_day - 7 * ds::micros_per_day);
}
