// Tests for ds-verify: the judging rules and finding texts on their own, then every check on a
// scratch database, clean first and then with one planted fault of each kind.
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <simdjson.h>

#include "ds/clock.hpp"
#include "ds/pg.hpp"
#include "ds/shard.hpp"
#include "findings.hpp"
#include "load.hpp"
#include "migrate/migrate.hpp"
#include "migrate/scratch_db.hpp"
#include "verify.hpp"

namespace {

namespace dv = ds::verify;

dv::Day day(const char* iso) { return static_cast<dv::Day>(*ds::parse_timestamp(std::string(iso) + "T00:00:00Z") / ds::micros_per_day); }

bool parses_as_json_object(const std::string& s) {
  simdjson::dom::parser p;
  simdjson::dom::element e;
  return p.parse(s).get(e) == simdjson::SUCCESS && e.is_object();
}

}  // namespace

TEST_CASE("ds-verify judges a latest snapshot only when this pipeline wrote it and its posts stood still",
          "[verify]") {
  dv::LatestSnapshot s;
  s.snapshot = {10, 2, 1, 3};
  s.live = {10, 2, 1, 3};
  CHECK(dv::judge_snapshot(s) == dv::SnapshotVerdict::not_ours);
  s.written_by_pipeline = true;
  CHECK(dv::judge_snapshot(s) == dv::SnapshotVerdict::ok);
  s.live.reposts = 4;
  CHECK(dv::judge_snapshot(s) == dv::SnapshotVerdict::mismatch);
  s.posts_changed_since = true;
  CHECK(dv::judge_snapshot(s) == dv::SnapshotVerdict::changed_since);
}

TEST_CASE("ds-verify's finding lines name the account and both values; the JSON says the same", "[verify]") {
  const dv::Account alice{"did:plc:alice", std::string("alice.test")};
  const auto f = dv::snapshot_sums_finding(alice, day("2026-11-28"), {16, 1, 1, 2}, {15, 1, 1, 3});
  CHECK(f.text ==
        "snapshot_sums  alice.test (did:plc:alice)  2026-11-28: likes 16 in the snapshot, 15 over live posts; "
        "reposts 2 in the snapshot, 3 over live posts");
  REQUIRE(parses_as_json_object(f.json));
  CHECK(f.json.find("\"check\":\"snapshot_sums\"") != std::string::npos);
  CHECK(f.json.find("\"snapshot\":{\"likes\":16,\"replies\":1,\"quotes\":1,\"reposts\":2}") != std::string::npos);
  CHECK(f.json.find("\"live\":{\"likes\":15,\"replies\":1,\"quotes\":1,\"reposts\":3}") != std::string::npos);

  // A handle holding a newline or quotes stays one line of text and valid JSON.
  const dv::Account odd{"did:plc:odd", std::string("evil\n\"x\".test")};
  const auto g = dv::shared_handle_finding("evil.test", {alice, odd});
  CHECK(g.text.find('\n') == std::string::npos);
  CHECK(g.text.find("evil\\x0a\"x\".test (did:plc:odd)") != std::string::npos);
  REQUIRE(parses_as_json_object(g.json));
  CHECK(g.json.find("\"holders\":[{\"did\":\"did:plc:alice\",\"handle\":\"alice.test\"},") != std::string::npos);

  const auto n = dv::untracked_post_finding("at://x/1", std::nullopt);
  CHECK(n.text == "untracked_post  no did  post at://x/1: has no did (NULL), so no account");
  CHECK(parses_as_json_object(n.json));
  const auto r = dv::stale_run_finding(7, std::string("1/4"), "2026-11-28T06:00:00Z", 42);
  CHECK(r.text.rfind("stale_run  run 7 (shard 1/4)  started 2026-11-28T06:00:00Z: in_progress", 0) == 0);
  CHECK(parses_as_json_object(r.json));
  const auto a = dv::stale_account_finding(alice, {day("2026-11-27"), day("2026-11-28")}, std::nullopt);
  CHECK(a.text ==
        "stale_account  alice.test (did:plc:alice)  selected on the last 2 run days (2026-11-27, 2026-11-28) "
        "without a snapshot; last snapshot never");
  CHECK(a.json.find("\"selected_days\":[\"2026-11-27\",\"2026-11-28\"],\"last_snapshot\":null") != std::string::npos);
  CHECK(parses_as_json_object(a.json));
}

TEST_CASE("ds-verify reconstructs which run days covered an account, shards included", "[verify]") {
  const auto half = ds::parse_shard("0/2"), other = ds::parse_shard("1/2");
  // One DID per shard of 2.
  std::string in0, in1;
  for (int i = 0; in0.empty() || in1.empty(); ++i) {
    const std::string did = "did:plc:x" + std::to_string(i);
    (half->contains(did) ? in0 : in1) = did;
  }
  const std::vector<dv::RunDay> runs = {{100, std::nullopt}, {101, half}, {101, other}, {102, half}, {103, std::nullopt}};
  CHECK(dv::covering_days(runs, in0, 3) == std::vector<dv::Day>{103, 102, 101});
  CHECK(dv::covering_days(runs, in1, 3) == std::vector<dv::Day>{103, 101, 100});
  CHECK(dv::covering_days(runs, in1, 9) == std::vector<dv::Day>{103, 101, 100});
  // The bound reaches back to every account's third day.
  CHECK(dv::earliest_covering_day(runs, 3) == 100);
  CHECK(dv::earliest_covering_day(runs, 1) == 101);
  CHECK_FALSE(dv::earliest_covering_day({}, 3).has_value());

  // Selected (a view within 7 days before each day) on both days, no snapshot on either.
  CHECK(dv::selected_without_snapshot({103, 102}, {96}, {}, 7));
  CHECK_FALSE(dv::selected_without_snapshot({103, 102}, {95}, {}, 7));     // the view is too old for day 103
  CHECK_FALSE(dv::selected_without_snapshot({103, 102}, {96}, {102}, 7));  // a snapshot on one of them
  CHECK_FALSE(dv::selected_without_snapshot({103, 102}, {96}, {}, 2));     // inactive on both
  CHECK_FALSE(dv::selected_without_snapshot({103, 102}, {103}, {}, 7));    // viewed only after day 102
  CHECK_FALSE(dv::selected_without_snapshot({}, {103}, {}, 7));

  CHECK(dv::parse_day_array("{}").empty());
  CHECK(dv::parse_day_array("{20500,20501}") == std::vector<dv::Day>{20500, 20501});
  CHECK_THROWS(dv::parse_day_array("{1,x}"));
}

TEST_CASE("ds-verify uses ds-load's run lock key", "[verify]") {
  CHECK(dv::ds_load_lock_key == ds::load::run_lock_key);
}

namespace {

std::string server_url() {
  auto url = ds::testing::test_database_url();
  if (!url) FAIL("DS_TEST_DATABASE_URL is not set: run [db] tests under tests/scripts/with-pg.sh");
  return *url;
}

// alice: written by the pipeline, equal to her live posts (a deleted post left out);
// bob: his post was written after his snapshot (a later run whose feed failed): not compared;
// carol: no backfill marker, so her snapshot is the original program's: not compared;
// dave: skip_user. One completed run on 11-28; the run clock is 2026-11-29T06:00Z.
constexpr const char* fixture = R"SQL(
INSERT INTO users (did, handle, skip_user) VALUES
  ('did:plc:alice', 'alice.test', false), ('did:plc:bob', 'bob.test', false),
  ('did:plc:carol', 'carol.test', false), ('did:plc:dave', 'dave.test', true);
INSERT INTO ds_user_state (did, backfilled_at) VALUES
  ('did:plc:alice', '2026-11-01T06:00Z'), ('did:plc:bob', '2026-11-01T06:00Z');
INSERT INTO posts (uri, did, likes, replies, quotes, reposts, "createdAt", "updatedAt", deleted_at) VALUES
  ('at://alice/1', 'did:plc:alice', 10, 1, 0, 2, '2026-11-20', '2026-11-28T06:00Z', NULL),
  ('at://alice/2', 'did:plc:alice', 5, 0, 1, 0, '2026-11-21', '2026-11-28T06:00Z', NULL),
  ('at://alice/3', 'did:plc:alice', 100, 9, 9, 9, '2026-11-22', '2026-11-28T06:00Z', '2026-11-28T06:00Z'),
  ('at://bob/1', 'did:plc:bob', 3, 0, 0, 0, '2026-11-20', '2026-11-29T07:00Z', NULL),
  ('at://carol/1', 'did:plc:carol', 1, 0, 0, 0, '2026-11-20', '2026-11-01', NULL);
INSERT INTO snapshots (did, date, likes, replies, quotes, reposts, created_at) VALUES
  ('did:plc:alice', '2026-11-27', 14, 1, 1, 2, '2026-11-27T06:00Z'),
  ('did:plc:alice', '2026-11-28', 15, 1, 1, 2, '2026-11-28T06:00Z'),
  ('did:plc:bob', '2026-11-28', 1, 0, 0, 0, '2026-11-28T06:00Z'),
  ('did:plc:carol', '2026-11-28', 99, 0, 0, 0, '2026-11-28T06:00Z');
INSERT INTO views (did, date) VALUES
  ('did:plc:alice', '2026-11-28'), ('did:plc:bob', '2026-11-28'), ('did:plc:carol', '2026-11-28'),
  ('did:plc:dave', '2026-11-20');
INSERT INTO snapshot_logs (status, time_started, created_at) VALUES ('completed', '2026-11-28T06:00Z', '2026-11-28T06:00Z');
)SQL";

struct Outcome {
  dv::Summary summary;
  std::vector<dv::Finding> findings;
  std::string texts() const {
    std::string all;
    for (const auto& f : findings) all += f.text + "\n";
    return all;
  }
  std::int64_t count(dv::Check c) const { return summary.problems[static_cast<std::size_t>(c)]; }
};

Outcome run_verify(ds::PgConnection& c, int stale_days = 1) {
  dv::Options o;
  o.now = *ds::parse_timestamp("2026-11-29T06:00:00Z");
  o.stale_days = stale_days;
  o.fetch_rows = 2;  // several FETCHes per cursor
  Outcome out;
  out.summary = dv::verify(c, o, [&out](const dv::Finding& f) { out.findings.push_back(f); });
  return out;
}

}  // namespace

TEST_CASE("ds-verify is clean on a consistent database and finds each planted fault", "[db][verify]") {
  ds::testing::ScratchDatabase db(server_url(), "ds_test_verify");
  ds::PgConnection c(db.params());
  ds::migrate::apply(c, ds::migrate::embedded_migrations());
  c.exec(fixture);

  const Outcome clean = run_verify(c);
  INFO(clean.texts());
  CHECK(clean.summary.total() == 0);
  CHECK(clean.summary.snapshots_checked == 1);
  CHECK(clean.summary.snapshots_not_ours == 1);
  CHECK(clean.summary.snapshots_changed_since == 1);
  CHECK(clean.summary.duplicate_snapshots_by_index);
  CHECK(clean.summary.untracked_posts_by_key);
  CHECK(clean.summary.accounts_judged == 3);  // alice, bob, carol: active on the run day; dave skip_user

  // The faults. A run killed mid-load (no lock), one alive (another session holds its lock, as a
  // running ds-load does) and one that started after verify looked at the locks.
  ds::PgConnection holder(db.params());
  holder.exec("SELECT pg_advisory_lock($1::bigint)", {std::to_string(ds::load::run_lock_key)});
  holder.exec("SELECT pg_advisory_lock($1::bigint)",
              {std::to_string(ds::shard_lock_key(ds::load::run_lock_key, std::string("2/4")))});
  c.exec(R"SQL(
UPDATE snapshots SET likes = 16 WHERE did = 'did:plc:alice' AND date = '2026-11-28';
INSERT INTO posts (uri, did, "createdAt") VALUES ('at://nobody/1', NULL, '2026-11-20');
INSERT INTO snapshot_logs (status, time_started, created_at, shard) VALUES
  ('in_progress', '2026-11-29T06:00Z', now() - interval '1 hour', '1/4'),
  ('in_progress', '2026-11-29T06:00Z', now() - interval '1 hour', '2/4'),
  ('in_progress', '2026-11-29T06:00Z', now() - interval '1 hour', NULL),
  ('in_progress', '2026-11-29T06:00Z', now() + interval '1 hour', '3/4');
UPDATE users SET handle = 'ALICE.test' WHERE did = 'did:plc:carol';
INSERT INTO snapshots (did, date, likes) VALUES ('did:plc:bob', '2026-12-05', 3);
INSERT INTO users (did, handle) VALUES ('did:plc:erin', 'erin.test');
INSERT INTO views (did, date) VALUES ('did:plc:erin', '2026-11-27');
)SQL");
  Outcome found = run_verify(c);
  INFO(found.texts());
  CHECK(found.count(dv::Check::snapshot_sums) == 1);
  CHECK(found.texts().find("snapshot_sums  alice.test (did:plc:alice)  2026-11-28: likes 16 in the snapshot, 15 over "
                           "live posts\n") != std::string::npos);
  CHECK(found.count(dv::Check::untracked_post) == 1);
  CHECK(found.texts().find("untracked_post  no did  post at://nobody/1") != std::string::npos);
  // Only the unsharded run and shard 1/4 are stale: 2/4 holds its lock, 3/4 started too late to judge.
  CHECK(found.count(dv::Check::stale_run) == 1);
  CHECK(found.texts().find("stale_run  run ") != std::string::npos);
  CHECK(found.texts().find("(shard 2/4)") == std::string::npos);
  CHECK(found.summary.runs_in_progress == 4);
  CHECK(found.summary.runs_too_recent == 1);
  CHECK(found.count(dv::Check::shared_handle) == 1);
  CHECK(found.texts().find("shared_handle  alice.test  held by 2 accounts, want 1: alice.test (did:plc:alice), "
                           "ALICE.test (did:plc:carol)") != std::string::npos);
  CHECK(found.count(dv::Check::future_snapshot) == 1);
  CHECK(found.texts().find("future_snapshot  bob.test (did:plc:bob)  dated 2026-12-05, after today 2026-11-29") !=
        std::string::npos);
  CHECK(found.count(dv::Check::stale_account) == 1);
  CHECK(found.texts().find("stale_account  erin.test (did:plc:erin)  selected on the last 1 run days (2026-11-28)") !=
        std::string::npos);
  for (const auto& f : found.findings) CHECK(parses_as_json_object(f.json));
  CHECK(parses_as_json_object(dv::summary_json(found.summary)));
  holder.exec("SELECT pg_advisory_unlock_all()");

  // Without the unique index and the foreign key (a database made by hand): duplicates and posts
  // of accounts that are not in users can exist, and are found.
  c.exec(R"SQL(
ALTER TABLE snapshots DROP CONSTRAINT snapshots_did_date_key;
INSERT INTO snapshots (did, date, likes) VALUES ('did:plc:carol', '2026-11-28', 99);
ALTER TABLE posts DROP CONSTRAINT posts_did_fkey;
INSERT INTO posts (uri, did, "createdAt") VALUES ('at://ghost/1', 'did:plc:ghost', '2026-11-20');
)SQL");
  found = run_verify(c);
  INFO(found.texts());
  CHECK_FALSE(found.summary.duplicate_snapshots_by_index);
  CHECK_FALSE(found.summary.untracked_posts_by_key);
  CHECK(found.count(dv::Check::duplicate_snapshot) == 1);
  CHECK(found.texts().find("duplicate_snapshot  ALICE.test (did:plc:carol)  2026-11-28: 2 snapshots of one day") !=
        std::string::npos);
  CHECK(found.count(dv::Check::untracked_post) == 2);
  CHECK(found.texts().find("untracked_post  did:plc:ghost  post at://ghost/1: its account is not in users") !=
        std::string::npos);
  CHECK(found.count(dv::Check::stale_run) == 3);  // nobody holds a lock now (3/4 is still too recent)
}

TEST_CASE("ds-verify does not call a backfill in progress stale while runs continue it", "[db][verify]") {
  ds::testing::ScratchDatabase db(server_url(), "ds_test_verify_backfill");
  ds::PgConnection c(db.params());
  ds::migrate::apply(c, ds::migrate::embedded_migrations());
  c.exec(fixture);
  // frank: the 11-28 run continued his backfill; gina's was last continued before the period.
  c.exec(R"SQL(
INSERT INTO users (did, handle) VALUES ('did:plc:frank', 'frank.test'), ('did:plc:gina', 'gina.test');
INSERT INTO views (did, date) VALUES ('did:plc:frank', '2026-11-28'), ('did:plc:gina', '2026-11-28');
INSERT INTO ds_user_state (did, backfill_cursor, backfill_started_at, backfill_covered_to) VALUES
  ('did:plc:frank', '2026-01-01T00:00:00.000Z', '2026-11-20T06:00Z', '2026-11-28T06:00Z'),
  ('did:plc:gina', '2026-01-01T00:00:00.000Z', '2026-11-10T06:00Z', '2026-11-20T06:00Z');
)SQL");
  const Outcome found = run_verify(c);
  INFO(found.texts());
  CHECK(found.count(dv::Check::stale_account) == 1);
  CHECK(found.texts().find("stale_account  gina.test") != std::string::npos);
  CHECK(found.texts().find("frank") == std::string::npos);
  CHECK(found.summary.accounts_judged == 4);  // alice, bob, carol, gina
}
