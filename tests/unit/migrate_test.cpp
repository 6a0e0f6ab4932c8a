// Tests for ds-migrate: migration file naming and embedding, and ([db]) applying to an empty
// database, to a database the original program created, twice, and from two processes at once.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "ds/pg.hpp"
#include "migrate/migrate.hpp"
#include "migrate/scratch_db.hpp"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using ds::PgConnection;
using ds::migrate::Migration;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string server_url() {
  auto url = ds::testing::test_database_url();
  if (!url) FAIL("DS_TEST_DATABASE_URL is not set: run [db] tests under tests/scripts/with-pg.sh");
  return *url;
}

// Every row of a query as "a|b|c" lines, NULL shown as <null>: a comparable picture of a database.
std::string dump(PgConnection& c, const std::string& sql) {
  auto r = c.exec(sql);
  std::string out;
  for (int i = 0; i < r.rows(); ++i) {
    for (int j = 0; j < r.columns(); ++j) {
      if (j) out += '|';
      out += r.is_null(i, j) ? std::string("<null>") : std::string(r.text(i, j));
    }
    out += '\n';
  }
  return out;
}

// The schema as the catalogs describe it: columns, constraints, indexes, functions, sequences.
std::string catalog(PgConnection& c) {
  return dump(c,
              "SELECT table_name, ordinal_position, column_name, data_type, character_maximum_length,"
              "       is_nullable, column_default"
              "  FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2") +
         dump(c,
              "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
              " WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2") +
         dump(c, "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2") +
         dump(c,
              "SELECT proname, pg_get_functiondef(oid) FROM pg_proc"
              " WHERE pronamespace = 'public'::regnamespace ORDER BY 1") +
         dump(c, "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1") +
         dump(c, "SELECT version, name FROM ds_schema_migrations ORDER BY 1");
}

// Every original column of every original table, in key order: what the website reads.
std::string original_data(PgConnection& c) {
  return dump(c,
              "SELECT did, handle, \"displayName\", avatar, created_at, updated_at, last_active, skip_user"
              "  FROM users ORDER BY did") +
         dump(c,
              "SELECT uri, did, likes, replies, quotes, reposts, \"createdAt\", \"updatedAt\""
              "  FROM posts ORDER BY uri") +
         dump(c,
              "SELECT uuid, did, date, followers, following, posts, likes, replies, quotes, reposts, created_at"
              "  FROM snapshots ORDER BY uuid") +
         dump(c, "SELECT id, did, date, view_count, created_at FROM views ORDER BY id") +
         dump(c,
              "SELECT id, status, time_started, time_completed, duration, total_users, created_at"
              "  FROM snapshot_logs ORDER BY id");
}

std::vector<std::string> column_names(PgConnection& c, const std::string& table) {
  auto r = c.exec(
      "SELECT column_name FROM information_schema.columns"
      " WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
      {table});
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.emplace_back(r.text(i, 0));
  return out;
}

// The first columns of `table` are exactly `expected`, in order (later columns are additions).
void require_original_columns(PgConnection& c, const std::string& table, const std::vector<std::string>& expected) {
  auto cols = column_names(c, table);
  INFO("table " << table);
  REQUIRE(cols.size() >= expected.size());
  CHECK(std::vector<std::string>(cols.begin(), cols.begin() + static_cast<long>(expected.size())) == expected);
}

void require_design_schema(PgConnection& c) {
  require_original_columns(c, "users", {"did", "handle", "displayName", "avatar", "created_at", "updated_at",
                                        "last_active", "skip_user"});
  require_original_columns(c, "posts", {"uri", "did", "likes", "replies", "quotes", "reposts", "createdAt",
                                        "updatedAt"});
  require_original_columns(c, "snapshots", {"uuid", "did", "date", "followers", "following", "posts", "likes",
                                            "replies", "quotes", "reposts", "created_at"});
  require_original_columns(c, "views", {"id", "did", "date", "view_count", "created_at"});
  require_original_columns(c, "snapshot_logs", {"id", "status", "time_started", "time_completed", "duration",
                                                "total_users", "created_at"});
  // The additions.
  auto posts = column_names(c, "posts");
  CHECK(std::find(posts.begin(), posts.end(), "sort_at") != posts.end());
  CHECK(std::find(posts.begin(), posts.end(), "deleted_at") != posts.end());
  CHECK(column_names(c, "ds_user_state") ==
        std::vector<std::string>{"did", "backfilled_at", "backfill_posts", "last_snapshot_date", "last_snapshot_posts",
                                 "backfill_cursor", "backfill_started_at", "backfill_covered_to",
                                 "refresh_clock_date"});
  auto logs = column_names(c, "snapshot_logs");
  for (const char* col : {"requests_get_profiles", "requests_get_author_feed", "requests_get_posts", "backfills_partial"})
    CHECK(std::find(logs.begin(), logs.end(), col) != logs.end());

  const std::string indexes = dump(c, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1");
  for (const char* idx : {"idx_users_handle", "idx_users_last_active", "idx_posts_did", "idx_posts_created_at",
                          "idx_snapshots_did_date", "idx_snapshots_date", "idx_views_did_date", "idx_views_date",
                          "idx_posts_did_sort_at"})
    CHECK(indexes.find(std::string(idx) + "\n") != std::string::npos);

  const std::string constraints = dump(c,
                                       "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint"
                                       " WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2");
  CHECK(constraints.find("users|UNIQUE (handle)") != std::string::npos);
  CHECK(constraints.find("snapshots|UNIQUE (did, date)") != std::string::npos);
  CHECK(constraints.find("views|UNIQUE (did, date)") != std::string::npos);
  CHECK(constraints.find("posts|FOREIGN KEY (did) REFERENCES users(did) ON DELETE CASCADE") != std::string::npos);
  CHECK(constraints.find("snapshots|FOREIGN KEY (did) REFERENCES users(did) ON DELETE CASCADE") != std::string::npos);
  CHECK(constraints.find("views|FOREIGN KEY (did) REFERENCES users(did) ON DELETE CASCADE") != std::string::npos);
  CHECK(constraints.find("snapshot_logs|PRIMARY KEY (id)") != std::string::npos);
  CHECK(dump(c, "SELECT is_nullable FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'handle'") ==
        "NO\n");
}

pid_t spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  REQUIRE(posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) == 0);
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

}  // namespace

TEST_CASE("migration file names", "[migrate]") {
  using ds::migrate::parse_file_name;
  CHECK(parse_file_name("001_original_schema.sql") == std::make_pair(1, std::string("original_schema")));
  CHECK(parse_file_name("120_x-y.sql") == std::make_pair(120, std::string("x-y")));
  CHECK_FALSE(parse_file_name("1_short.sql"));
  CHECK_FALSE(parse_file_name("001-dash.sql"));
  CHECK_FALSE(parse_file_name("001_.sql"));
  CHECK_FALSE(parse_file_name("001_name.sql~"));
  CHECK_FALSE(parse_file_name("001_na me.sql"));
  CHECK_FALSE(parse_file_name("abc_name.sql"));
}

TEST_CASE("the embedded migrations are sql/ byte for byte", "[migrate]") {
  const auto embedded = ds::migrate::embedded_migrations();
  const auto on_disk = ds::migrate::load_directory(DS_SOURCE_DIR "/sql");
  REQUIRE(embedded.size() >= 3);
  REQUIRE(embedded.size() == on_disk.size());
  for (std::size_t i = 0; i < embedded.size(); ++i) {
    CHECK(embedded[i].version == on_disk[i].version);
    CHECK(embedded[i].name == on_disk[i].name);
    CHECK(embedded[i].sql == on_disk[i].sql);
    if (i) CHECK(embedded[i].version > embedded[i - 1].version);
  }
  CHECK(embedded[0].label() == "001_original_schema");
  CHECK(embedded[1].label() == "002_pipeline_state");
}

TEST_CASE("a migration directory with two files of one version is refused", "[migrate]") {
  const fs::path dir = fs::temp_directory_path() / ("ds-migrate-dup-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "001_a.sql") << "SELECT 1;";
  std::ofstream(dir / "001_b.sql") << "SELECT 2;";
  std::ofstream(dir / "README.md") << "not a migration";
  CHECK_THROWS_WITH(ds::migrate::load_directory(dir.string()), Catch::Contains("two migrations with version 1"));
  fs::remove(dir / "001_b.sql");
  const auto list = ds::migrate::load_directory(dir.string());
  REQUIRE(list.size() == 1);
  CHECK(list[0].sql == "SELECT 1;");
  fs::remove_all(dir);
  CHECK_THROWS_WITH(ds::migrate::load_directory(dir.string()), Catch::Contains("cannot read migration directory"));
}

TEST_CASE("migrating an empty database creates the schema, and a second run changes nothing", "[db][migrate]") {
  ds::testing::ScratchDatabase db(server_url(), "ds_test_migrate_empty");
  PgConnection c(db.params());
  const auto migrations = ds::migrate::embedded_migrations();

  auto status = ds::migrate::read_status(c, migrations);
  CHECK_FALSE(status.current());
  CHECK(status.pending.size() == migrations.size());
  CHECK(dump(c, "SELECT to_regclass('ds_schema_migrations') IS NULL") == "t\n");  // --status creates nothing

  const auto applied = ds::migrate::apply(c, migrations);
  REQUIRE(applied.size() == migrations.size());
  require_design_schema(c);
  status = ds::migrate::read_status(c, migrations);
  CHECK(status.current());
  CHECK(status.applied.size() == migrations.size());

  const std::string before = catalog(c);
  CHECK(ds::migrate::apply(c, migrations).empty());
  CHECK(catalog(c) == before);
  CHECK(dump(c, "SELECT count(*) FROM ds_schema_migrations") == std::to_string(migrations.size()) + "\n");

  // The session lock is released after a run, so a later run (or another session) can take it.
  CHECK(dump(c, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()") == "0\n");

  // A database migrated by a newer ds-migrate: versions we do not know are reported, not pending.
  auto older = migrations;
  older.pop_back();
  status = ds::migrate::read_status(c, older);
  CHECK(status.current());
  REQUIRE(status.unknown.size() == 1);
  CHECK(status.unknown[0].version == migrations.back().version);
}

TEST_CASE("a failing migration is rolled back and not recorded", "[db][migrate]") {
  ds::testing::ScratchDatabase db(server_url(), "ds_test_migrate_fail");
  PgConnection c(db.params());
  auto migrations = ds::migrate::embedded_migrations();
  const int broken_version = migrations.back().version + 1;
  migrations.push_back({broken_version, "broken", "CREATE TABLE ds_probe (x int); INSERT INTO ds_probe VALUES (1); SELECT 1/0;"});

  CHECK_THROWS_WITH(ds::migrate::apply(c, migrations), Catch::Contains("_broken failed and was rolled back") &&
                                                           Catch::Contains("division by zero"));
  CHECK(dump(c, "SELECT to_regclass('ds_probe') IS NULL") == "t\n");
  auto status = ds::migrate::read_status(c, migrations);
  REQUIRE(status.pending.size() == 1);
  CHECK(status.pending[0].version == broken_version);
  CHECK(status.applied.size() == migrations.size() - 1);  // the ones before it stay applied

  migrations.back().sql = "CREATE TABLE ds_probe (x int);";
  const auto applied = ds::migrate::apply(c, migrations);
  REQUIRE(applied.size() == 1);
  CHECK(applied[0].label() == migrations.back().label());
  CHECK(dump(c, "SELECT to_regclass('ds_probe') IS NOT NULL") == "t\n");
}

TEST_CASE("migrating a database the original program created keeps every row and query working", "[db][migrate]") {
  ds::testing::ScratchDatabase db(server_url(), "ds_test_migrate_original");
  PgConnection c(db.params());
  c.exec(read_file(DS_SOURCE_DIR "/tests/fixtures/original/schema.sql"));
  c.exec(read_file(DS_SOURCE_DIR "/tests/fixtures/original/data.sql"));
  const std::string before = original_data(c);
  REQUIRE(before.find("did:plc:alice|alice.bsky.social") != std::string::npos);

  const auto migrations = ds::migrate::embedded_migrations();
  REQUIRE(ds::migrate::apply(c, migrations).size() == migrations.size());
  CHECK(original_data(c) == before);
  require_design_schema(c);
  // Nobody has a backfill marker yet: every user gets one full backfill despite stored posts.
  CHECK(dump(c, "SELECT count(*) FROM ds_user_state") == "0\n");
  CHECK(dump(c, "SELECT count(*) FROM posts WHERE sort_at IS NOT NULL OR deleted_at IS NOT NULL OR load_fp IS NOT NULL OR load_uri_fp IS NOT NULL") == "0\n");

  // A second run leaves data and schema alone.
  const std::string schema = catalog(c);
  CHECK(ds::migrate::apply(c, migrations).empty());
  CHECK(catalog(c) == schema);
  CHECK(original_data(c) == before);

  SECTION("the original's queries still work") {
    // Active users: the original's JOIN (alice twice in views, dora 7 days back; carol 8, bob today).
    CHECK(dump(c,
               "SELECT DISTINCT u.did, u.handle FROM users u JOIN views v ON u.did = v.did"
               " WHERE v.date >= CURRENT_DATE - INTERVAL '7 days' ORDER BY u.did") ==
          "did:plc:alice|alice.bsky.social\ndid:plc:bob|bob.example.com\ndid:plc:dora|handle.invalid\n");
    CHECK(dump(c, "SELECT did, handle, \"displayName\", avatar, skip_user FROM users ORDER BY did").find(
              "did:plc:carol|carol.bsky.social|Carol\tO'Neil|<null>|<null>") != std::string::npos);

    // Its run log: id = COUNT(*)+1, then completed.
    const std::string next = std::string(c.exec("SELECT COUNT(*) + 1 FROM snapshot_logs").text(0, 0));
    CHECK(next == "4");
    c.exec("INSERT INTO snapshot_logs (id, status, time_started) VALUES ($1::int, 'in_progress', NOW())", {next});
    c.exec("UPDATE snapshot_logs SET status = 'completed', time_completed = NOW(), duration = 1.5, total_users = 2"
           " WHERE id = $1::int",
           {next});

    // Its snapshot upsert, on an existing (did, date).
    c.exec(
        "INSERT INTO snapshots (did, date, followers, following, posts, likes, replies, quotes, reposts)"
        " VALUES ($1, $2::date, 220, 81, 132, 300, 50, 9, 40)"
        " ON CONFLICT (did, date) DO UPDATE SET followers = EXCLUDED.followers, following = EXCLUDED.following,"
        " posts = EXCLUDED.posts, likes = EXCLUDED.likes, replies = EXCLUDED.replies, quotes = EXCLUDED.quotes,"
        " reposts = EXCLUDED.reposts",
        {std::string("did:plc:alice"), std::string("2025-01-10")});
    CHECK(dump(c, "SELECT count(*), max(followers) FROM snapshots WHERE did = 'did:plc:alice' AND date = '2025-01-10'") ==
          "1|220\n");

    // Its post insert and engagement update, which know nothing of the new columns.
    c.exec("INSERT INTO posts (uri, did, likes, replies, quotes, reposts, \"createdAt\") VALUES ($1, $2, 1, 2, 3, 4, $3)",
           {std::string("at://did:plc:alice/app.bsky.feed.post/3lfnew"), std::string("did:plc:alice"),
            std::string("2025-01-11T08:00:00Z")});
    c.exec("UPDATE posts SET likes = 13, \"updatedAt\" = NOW() WHERE uri = $1",
           {std::string("at://did:plc:alice/app.bsky.feed.post/3lf2aaaaaaa2a")});
    CHECK(dump(c, "SELECT likes, sort_at, deleted_at FROM posts WHERE uri = 'at://did:plc:alice/app.bsky.feed.post/3lfnew'") ==
          "1|<null>|<null>\n");
    // Its per-user total: a plain SUM over the user's posts.
    CHECK(dump(c, "SELECT SUM(likes), SUM(replies), SUM(quotes), SUM(reposts) FROM posts WHERE did = 'did:plc:alice'") ==
          "264|45|11|41\n");
    // Its profile update.
    c.exec("UPDATE users SET handle = $1, \"displayName\" = $2, avatar = $3, updated_at = NOW() WHERE did = $4",
           {std::string("alice.example.org"), std::string("Alice"), std::nullopt, std::string("did:plc:alice")});

    // A run of the new pipeline: no id given, the default picks one past every existing row...
    const std::string ours = std::string(c.exec(
        "INSERT INTO snapshot_logs (status, time_started) VALUES ('in_progress', NOW()) RETURNING id").text(0, 0));
    CHECK(std::stoi(ours) >= 5);
    // ...and the original's COUNT(*)+1 after it still finds a free id (rows 1..5 are dense).
    const std::string theirs = std::string(c.exec("SELECT COUNT(*) + 1 FROM snapshot_logs").text(0, 0));
    c.exec("INSERT INTO snapshot_logs (id, status, time_started) VALUES ($1::int, 'in_progress', NOW())", {theirs});
    const std::string ours2 = std::string(c.exec(
        "INSERT INTO snapshot_logs (status, time_started) VALUES ('in_progress', NOW()) RETURNING id").text(0, 0));
    CHECK(std::stoi(ours2) > std::stoi(theirs));
    CHECK(dump(c, "SELECT count(*), count(DISTINCT id) FROM snapshot_logs") == "7|7\n");
  }

  SECTION("an explicit id far ahead does not make the sequence collide") {
    c.exec("INSERT INTO snapshot_logs (id, status, time_started) VALUES (40, 'completed', NOW())");
    CHECK(dump(c, "INSERT INTO snapshot_logs (status, time_started) VALUES ('in_progress', NOW()) RETURNING id") ==
          "41\n");
  }
}

TEST_CASE("two ds-migrate processes at once both succeed and apply the schema once", "[db][migrate]") {
  const std::string bin = DS_BIN_DIR "/ds-migrate";
  REQUIRE(fs::exists(bin));
  ds::testing::ScratchDatabase db(server_url(), "ds_test_migrate_concurrent");
  PgConnection holder(db.params());
  // Hold the migration lock ourselves so both processes are certainly running at the same time,
  // both waiting on it; then let them go.
  holder.exec("SELECT pg_advisory_lock($1::bigint)", {std::to_string(ds::migrate::lock_key)});
  const pid_t a = spawn({bin, "--db", db.url(), "--quiet"});
  const pid_t b = spawn({bin, "--db", db.url(), "--quiet"});
  std::string waiting;
  for (int i = 0; i < 200; ++i) {
    waiting = dump(holder,
                   "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                   " WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()");
    if (waiting == "2\n") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(waiting == "2\n");
  CHECK(dump(holder, "SELECT to_regclass('ds_schema_migrations') IS NULL") == "t\n");  // nothing done before the lock
  holder.exec("SELECT pg_advisory_unlock($1::bigint)", {std::to_string(ds::migrate::lock_key)});

  CHECK(wait_exit(a) == 0);
  CHECK(wait_exit(b) == 0);
  const auto migrations = ds::migrate::embedded_migrations();
  CHECK(dump(holder, "SELECT count(*), count(DISTINCT version) FROM ds_schema_migrations") ==
        std::to_string(migrations.size()) + "|" + std::to_string(migrations.size()) + "\n");
  CHECK(ds::migrate::read_status(holder, migrations).current());
  require_design_schema(holder);

  // --status on the current database: exit 0; on an unreachable one: exit 5.
  CHECK(wait_exit(spawn({bin, "--db", db.url(), "--status", "--quiet"})) == 0);
  CHECK(wait_exit(spawn({bin, "--db", "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2", "--status",
                         "--quiet"})) == 5);
}
