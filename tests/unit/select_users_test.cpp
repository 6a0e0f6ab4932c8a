// Tests for ds-select-users' logic on a freshly migrated scratch database: which users are
// selected in each mode, the refresh window and backfill marker, baselines, and the records.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <simdjson.h>

#include "ds/pg.hpp"
#include "ds/record_input.hpp"
#include "ds/records.hpp"
#include "migrate/migrate.hpp"
#include "migrate/scratch_db.hpp"
#include "select_users.hpp"

// Readable failures for baseline comparisons.
namespace Catch {
template <>
struct StringMaker<ds::Totals> {
  static std::string convert(const ds::Totals& t) {
    return "{posts " + std::to_string(t.posts) + ", likes " + std::to_string(t.likes) + ", replies " +
           std::to_string(t.replies) + ", quotes " + std::to_string(t.quotes) + ", reposts " +
           std::to_string(t.reposts) + "}";
  }
};
}  // namespace Catch

namespace {

using ds::PgConnection;
using ds::UserRecord;
namespace su = ds::select_users;

constexpr ds::Micros day = ds::micros_per_day;

// Also used at namespace scope, where Catch's assertions are not available yet.
ds::Micros at(const char* text) {
  auto t = ds::parse_timestamp(text);
  if (!t) throw std::invalid_argument(std::string("bad test timestamp ") + text);
  return *t;
}

// The run clock of every test: 2026-11-29T06:00Z, so since (7 days) = 2026-11-22T06:00Z and the
// active cutoff (7 days) = 2026-11-22.
const ds::Micros as_of = at("2026-11-29T06:00:00Z");

// Users:  alice  active (view 11-28), backfilled, posts of every kind
//         bob    active (view exactly at the cutoff 11-22), old posts but no backfill marker
//         carol  inactive (view 11-21, one day too old), backfilled, no posts
//         dave   active, skip_user = true, backfilled, posts
//         erin   active, skip_user NULL (counts as false), never backfilled
//         frank  no views at all; marker row present but backfilled_at NULL (not a marker)
constexpr const char* fixture = R"SQL(
INSERT INTO users (did, handle, "displayName", avatar, skip_user) VALUES
  ('did:plc:alice', 'alice.test', E'Alice "A" \u2728\\', 'https://cdn.example/alice.jpg', false),
  ('did:plc:bob', 'bob.test', NULL, NULL, false),
  ('did:plc:carol', 'carol.test', 'Carol', NULL, false),
  ('did:plc:dave', 'dave.test', 'Dave', NULL, true),
  ('did:plc:erin', 'erin.test', E'Erin\nNewline', NULL, NULL),
  ('did:plc:frank', 'frank.test', 'Frank', NULL, false);
INSERT INTO views (did, date, view_count) VALUES
  ('did:plc:alice', '2026-11-28', 4), ('did:plc:alice', '2026-11-27', 1),
  ('did:plc:bob', '2026-11-22', 1),
  ('did:plc:carol', '2026-11-21', 9),
  ('did:plc:dave', '2026-11-28', 1),
  ('did:plc:erin', '2026-11-29', 1);
INSERT INTO ds_user_state (did, backfilled_at, backfill_posts) VALUES
  ('did:plc:alice', '2026-11-01T06:00:00Z', 120),
  ('did:plc:carol', '2026-11-01T06:00:00Z', 0),
  ('did:plc:dave', '2026-11-01T06:00:00Z', 3),
  ('did:plc:frank', NULL, NULL);
INSERT INTO posts (uri, did, likes, replies, quotes, reposts, "createdAt", sort_at, deleted_at) VALUES
  -- alice, counted in the baseline:
  ('at://alice/1-old', 'did:plc:alice', 10, 1, 2, 3, '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z', NULL),
  ('at://alice/2-no-sort-at', 'did:plc:alice', 5, 5, 0, 1, '2026-11-10T00:00:00Z', NULL, NULL),
  ('at://alice/3-sorted-before', 'did:plc:alice', 7, 0, 1, 0, '2026-11-22T06:30:00Z', '2026-11-22T05:59:59.999Z', NULL),
  -- alice, not counted:
  ('at://alice/4-deleted', 'did:plc:alice', 100, 100, 100, 100, '2026-11-02T00:00:00Z', '2026-11-02T00:00:00Z', '2026-11-20T00:00:00Z'),
  ('at://alice/5-recent', 'did:plc:alice', 1000, 1000, 1000, 1000, '2026-11-25T00:00:00Z', '2026-11-25T00:00:00Z', NULL),
  ('at://alice/6-at-since', 'did:plc:alice', 2000, 0, 0, 0, '2026-11-22T06:00:00Z', '2026-11-22T06:00:00Z', NULL),
  ('at://alice/7-created-recent', 'did:plc:alice', 3000, 0, 0, 0, '2026-11-23T00:00:00Z', NULL, NULL),
  -- bob: old posts the original stored, but no marker, so they are no baseline:
  ('at://bob/1', 'did:plc:bob', 50, 5, 5, 5, '2026-11-01T00:00:00Z', NULL, NULL),
  ('at://bob/2', 'did:plc:bob', 60, 6, 6, 6, '2026-11-02T00:00:00Z', '2026-11-02T00:00:00Z', NULL),
  -- dave (skip_user):
  ('at://dave/1', 'did:plc:dave', 70, 7, 7, 7, '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z', NULL);
)SQL";

std::string server_url() {
  auto url = ds::testing::test_database_url();
  if (!url) FAIL("DS_TEST_DATABASE_URL is not set: run [db] tests under tests/scripts/with-pg.sh");
  return *url;
}

struct Selection {
  std::vector<UserRecord> users;
  su::Counters counters;
  std::vector<std::string> dids() const {
    std::vector<std::string> out;
    for (const auto& u : users) out.push_back(u.did);
    return out;
  }
  const UserRecord& get(const std::string& did) const {
    for (const auto& u : users)
      if (u.did == did) return u;
    FAIL("no user record for " << did);
    return users.front();
  }
};

Selection run(PgConnection& c, su::Options o) {
  if (o.as_of == 0) o.as_of = as_of;
  Selection s;
  s.counters = su::select(c, o, [&s](const UserRecord& u) { s.users.push_back(u); });
  return s;
}

using Dids = std::vector<std::string>;

// Decodes one encoded line as a stage downstream would.
ds::InputRecord decode(const std::string& line, ds::EndRecord* end = nullptr) {
  std::string buf = line;
  if (!buf.empty() && buf.back() == '\n') buf.pop_back();
  const std::size_t len = buf.size();
  buf.append(simdjson::SIMDJSON_PADDING, ' ');
  ds::RecordDecoder decoder;
  ds::InputRecord rec;
  const std::string err = decoder.decode(std::string_view(buf.data(), len), buf.size(), ds::want_user, rec, end);
  INFO(line);
  REQUIRE(err.empty());
  return rec;
}

}  // namespace

TEST_CASE("ds-select-users selection, windows and baselines", "[db][select-users]") {
  ds::testing::ScratchDatabase db(server_url(), "ds_test_select_users");
  PgConnection c(db.params());
  CHECK_FALSE(su::schema_problem(c).empty());  // not migrated yet
  ds::migrate::apply(c, ds::migrate::embedded_migrations());
  CHECK(su::schema_problem(c).empty());
  c.exec(fixture);

  SECTION("default: users with a view within ACTIVE_DAYS, skip_user never") {
    const auto s = run(c, {});
    CHECK(s.dids() == Dids{"did:plc:alice", "did:plc:bob", "did:plc:erin"});
    CHECK(s.counters.users == 3);
    CHECK(s.counters.skipped == 1);  // dave
    CHECK(s.counters.backfill == 2);  // bob, erin
    CHECK(s.counters.incremental == 1);
    CHECK(s.counters.missing == 0);

    su::Options one_day;
    one_day.active_days = 1;  // views on 11-28 or later
    CHECK(run(c, one_day).dids() == Dids{"did:plc:alice", "did:plc:erin"});
    su::Options today;
    today.active_days = 0;
    CHECK(run(c, today).dids() == Dids{"did:plc:erin"});
    su::Options eight;
    eight.active_days = 8;
    CHECK(run(c, eight).dids() == Dids{"did:plc:alice", "did:plc:bob", "did:plc:carol", "did:plc:erin"});
  }

  SECTION("the request economy's fields: the last complete snapshot and the window's URIs") {
    c.exec("UPDATE ds_user_state SET last_snapshot_date = '2026-11-28', last_snapshot_posts = 131, "
           "refresh_clock_date = '2026-11-26' WHERE did = 'did:plc:alice'");
    su::Options o;
    o.mode = su::Mode::all;
    const auto s = run(c, o);
    const auto& alice = s.get("did:plc:alice");
    REQUIRE(alice.last_snapshot);
    CHECK(alice.last_snapshot->date == "2026-11-28");
    CHECK(alice.last_snapshot->posts == 131);
    CHECK(alice.refresh_clock == std::optional<std::string>("2026-11-26"));
    CHECK_FALSE(s.get("did:plc:carol").refresh_clock);  // none stored: its hash day decides
    // The stored live window posts, newest first by sort key ("createdAt" where sort_at is NULL);
    // the deleted and the baseline's posts are not in it.
    REQUIRE(alice.window_uris);
    CHECK(*alice.window_uris == Dids{"at://alice/5-recent", "at://alice/7-created-recent", "at://alice/6-at-since"});
    const auto& carol = s.get("did:plc:carol");  // backfilled, nothing stored, no snapshot yet
    CHECK_FALSE(carol.last_snapshot);
    REQUIRE(carol.window_uris);
    CHECK(carol.window_uris->empty());
    CHECK_FALSE(s.get("did:plc:bob").window_uris);  // a backfill: no window
    CHECK(s.counters.window_lists == 2);
    // The line downstream reads carries them.
    std::string line;
    ds::encode(line, alice);
    const auto back = decode(line);
    CHECK(back.user.window_uris == alice.window_uris);
    CHECK(back.user.refresh_clock == alice.refresh_clock);
    CHECK(back.user.last_snapshot == alice.last_snapshot);

    // A window of 25 or more posts is cheaper by feed: its URIs are not carried.
    for (int i = 0; i < 25; ++i)
      c.exec("INSERT INTO posts (uri, did, likes, replies, quotes, reposts, \"createdAt\", sort_at) "
             "VALUES ($1, 'did:plc:carol', 0, 0, 0, 0, '2026-11-27T00:00:00Z', '2026-11-27T00:00:00Z')",
             {"at://carol/" + std::to_string(i)});
    const auto again = run(c, o);
    CHECK_FALSE(again.get("did:plc:carol").window_uris);
    CHECK(again.counters.window_lists == 1);
  }

  SECTION("--all: every user but skip_user, in did order, across several cursor batches") {
    su::Options o;
    o.mode = su::Mode::all;
    o.fetch_rows = 2;
    const auto s = run(c, o);
    CHECK(s.dids() == Dids{"did:plc:alice", "did:plc:bob", "did:plc:carol", "did:plc:erin", "did:plc:frank"});
    CHECK(s.counters.skipped == 1);
    CHECK(s.counters.incremental == 2);  // alice, carol
    CHECK(s.counters.backfill == 3);     // bob, erin, frank (a state row without backfilled_at is no marker)
  }

  SECTION("--did: just those accounts, never skip_user, unknown ones counted") {
    su::Options o;
    o.mode = su::Mode::dids;
    o.dids = {"did:plc:carol", "did:plc:dave", "did:plc:nobody", "did:plc:alice", "did:plc:carol"};
    const auto s = run(c, o);
    CHECK(s.dids() == Dids{"did:plc:alice", "did:plc:carol"});  // carol is inactive but named
    CHECK(s.counters.missing == 1);
    CHECK(s.counters.skipped == 1);

    o.dids = {"did:plc:dave"};
    const auto only_skipped = run(c, o);
    CHECK(only_skipped.users.empty());
    CHECK(only_skipped.counters.skipped == 1);

    o.dids = {"did:plc:x\"y\\z", "did:plc:a,b", "{}"};  // quoting in the array parameter holds
    CHECK(run(c, o).counters.missing == 3);
  }

  SECTION("since and baseline") {
    su::Options o;
    o.mode = su::Mode::all;
    const auto s = run(c, o);

    const UserRecord& alice = s.get("did:plc:alice");
    CHECK(alice.handle == "alice.test");
    CHECK(alice.display_name == std::optional<std::string>("Alice \"A\" \u2728\\"));
    CHECK(alice.avatar == std::optional<std::string>("https://cdn.example/alice.jpg"));
    CHECK(alice.as_of == as_of);
    REQUIRE(alice.since);
    CHECK(*alice.since == as_of - 7 * day);
    CHECK(ds::format_timestamp(*alice.since) == "2026-11-22T06:00:00.000Z");
    // 1-old + 2-no-sort-at (by createdAt) + 3-sorted-before (by sort_at, though created after since).
    CHECK(alice.baseline == ds::Totals{3, 22, 6, 3, 4});
    CHECK(alice.profile_status == ds::ProfileStatus::not_fetched);

    // Stored posts but no marker: a full backfill, and no baseline.
    const UserRecord& bob = s.get("did:plc:bob");
    CHECK_FALSE(bob.since);
    CHECK(bob.baseline == ds::Totals{});
    CHECK_FALSE(bob.display_name);
    CHECK_FALSE(bob.avatar);

    const UserRecord& carol = s.get("did:plc:carol");
    REQUIRE(carol.since);
    CHECK(carol.baseline == ds::Totals{});
    CHECK_FALSE(s.get("did:plc:frank").since);
    CHECK(s.counters.baseline_posts == 3);

    // A one-day window moves 5-recent, 6-at-since and 7-created-recent into the baseline.
    o.window_days = 1;
    const auto narrow = run(c, o);
    CHECK(*narrow.get("did:plc:alice").since == as_of - day);
    CHECK(narrow.get("did:plc:alice").baseline == ds::Totals{6, 6022, 1006, 1003, 1004});

    // A deleted post that comes back (deleted_at cleared) counts again.
    c.exec("UPDATE posts SET deleted_at = NULL WHERE uri = 'at://alice/4-deleted'");
    o.window_days = 7;
    CHECK(run(c, o).get("did:plc:alice").baseline == ds::Totals{4, 122, 106, 103, 104});

    // Recording the marker turns bob's next run into an incremental one.
    c.exec("INSERT INTO ds_user_state (did, backfilled_at, backfill_posts) VALUES ('did:plc:bob', now(), 2)");
    const auto after = run(c, o);
    REQUIRE(after.get("did:plc:bob").since);
    CHECK(after.get("did:plc:bob").baseline == ds::Totals{2, 110, 11, 11, 11});
  }

  SECTION("records round-trip through the decoder, and the end record carries the counters") {
    su::Options o;
    o.mode = su::Mode::all;
    const auto s = run(c, o);
    REQUIRE(s.users.size() == 5);
    for (const auto& u : s.users) {
      std::string line;
      ds::encode(line, u);
      REQUIRE(std::count(line.begin(), line.end(), '\n') == 1);  // erin's newline is escaped
      const auto rec = decode(line);
      REQUIRE(rec.type == ds::RecordType::user);
      CHECK(rec.user == u);
    }
    std::string alice_line;
    ds::encode(alice_line, s.get("did:plc:alice"));
    CHECK(alice_line.find("\"since\":\"2026-11-22T06:00:00.000Z\",\"baseline\":{\"posts\":3,\"likes\":22,") !=
          std::string::npos);
    CHECK(alice_line.find("profileStatus") == std::string::npos);
    std::string bob_line;
    ds::encode(bob_line, s.get("did:plc:bob"));
    CHECK(bob_line.find("\"since\":null") != std::string::npos);

    const ds::EndRecord end = su::end_record(s.counters, 0.25);
    CHECK(end.stage == "ds-select-users");
    CHECK(end.contract == ds::record_contract_version);
    CHECK(end.counter("users") == 5);
    CHECK(end.counter("backfill") == 3);
    CHECK(end.counter("incremental") == 2);
    CHECK(end.counter("skipped") == 1);
    CHECK(end.counter("missing") == 0);
    CHECK(end.counter("baseline_posts") == 3);
    std::string end_line;
    ds::encode(end_line, end);
    ds::EndRecord decoded;
    CHECK(decode(end_line, &decoded).type == ds::RecordType::end);
    CHECK(decoded == end);
  }

  SECTION("the selection is read-only and leaves no transaction open") {
    run(c, {});
    CHECK(c.exec("SELECT 1").rows() == 1);
    CHECK(PQtransactionStatus(c.get()) == PQTRANS_IDLE);
    CHECK(c.exec("SELECT count(*) FROM ds_user_state").text(0, 0) == "4");
  }
}

TEST_CASE("ds-select-users on an empty migrated database emits nothing", "[db][select-users]") {
  ds::testing::ScratchDatabase db(server_url(), "ds_test_select_users_empty");
  PgConnection c(db.params());
  ds::migrate::apply(c, ds::migrate::embedded_migrations());
  for (auto mode : {su::Mode::active, su::Mode::all}) {
    su::Options o;
    o.mode = mode;
    const auto s = run(c, o);
    CHECK(s.users.empty());
    CHECK(s.counters.users == 0);
  }
}
