// ds-select-users: the first pipeline stage. Reads the users of today's run from PostgreSQL and
// writes their `user` records, then its `end` record, to stdout (docs/records.md). No stdin.
#include <cstdint>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <spdlog/spdlog.h>

#include "ds/clock.hpp"
#include "ds/config.hpp"
#include "ds/exit_codes.hpp"
#include "ds/ndjson.hpp"
#include "ds/pg.hpp"
#include "ds/progress.hpp"
#include "ds/shard.hpp"
#include "ds/stage.hpp"
#include "select_users.hpp"

namespace {

// --health: connect and check the schema is current; one line either way.
int health(const ds::DbParams& params) {
  try {
    ds::PgConnection c(params);
    if (auto problem = ds::select_users::schema_problem(c); !problem.empty()) {
      spdlog::error("database health check failed: {}", problem);
      return ds::exit_code::health_db;
    }
  } catch (const ds::PgError& e) {
    spdlog::error("database health check failed: {}", e.what());
    return ds::exit_code::health_db;
  }
  spdlog::info("database ok ({})", params.describe());
  return ds::exit_code::ok;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "ds-select-users: writes one `user` record per account of today's run (NDJSON on stdout),\n"
      "with its stored profile, refresh window and baseline, then an `end` record. Default: users\n"
      "with a views row in the last ACTIVE_DAYS days; skip_user accounts are never selected.\n"
      "--shard K/N selects a stable, disjoint part of them (docs/operations.md, sharded runs); the\n"
      "stream says which in its first line, a `selection` record, and ds-load locks and labels by it.\n"
      "Exit codes: 0 ok, 1 failure, 2 usage, 5 (--health) database unreachable or not migrated.",
      "ds-select-users"};
  ds::CommonOptions common;
  std::optional<std::string> db;
  bool all = false;
  std::vector<std::string> dids;
  std::optional<std::int64_t> active_days;
  std::optional<std::int64_t> days;
  bool health_check = false;
  std::optional<std::string> shard;
  app.add_option("--db", db, "Database (conninfo string or postgresql:// URL); default DATABASE_URL, DB_*, PG*");
  auto* all_opt = app.add_flag("--all,--simple-query", all, "Every user, not only the recently viewed ones");
  app.add_option("--did", dids, "Only this account (repeatable)")->excludes(all_opt);
  app.add_option("--active-days", active_days, "Active = a views row this many days back (env ACTIVE_DAYS, default 7)");
  app.add_option("--days", days, "Refresh window in days (env TIME_RANGE_DAYS, default 7)");
  app.add_option("--shard", shard,
                 "Only shard K of N (0 <= K < N): users whose FNV-1a 64 hash of the DID mod N is K");
  app.add_flag("--health,--health-check", health_check, "Check the database connection and schema, then exit (0 ok, 5 not)");
  ds::add_common_options(app, common, /*with_strict=*/false);
  if (auto code = ds::parse_command_line(app, argc, argv)) return *code;
  if (!ds::init_program("ds-select-users", common)) return ds::exit_code::usage;

  const ds::DbParams params = ds::database_params(db);
  if (health_check) return health(params);

  ds::select_users::Options opts;
  try {
    opts.active_days = ds::setting_int(active_days, "ACTIVE_DAYS", 7, 0, 36500);
    opts.window_days = ds::setting_int(days, "TIME_RANGE_DAYS", 7, 1, 36500);
    opts.as_of = ds::now();
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return ds::exit_code::usage;
  }
  opts.mode = all ? ds::select_users::Mode::all
                  : !dids.empty() ? ds::select_users::Mode::dids : ds::select_users::Mode::active;
  opts.dids = dids;
  if (shard) {
    opts.shard = ds::parse_shard(*shard);
    if (!opts.shard) {
      spdlog::error("--shard {}: expected K/N with 0 <= K < N <= {}", *shard, ds::max_shards);
      return ds::exit_code::usage;
    }
  }

  const double started = ds::monotonic_seconds();
  try {
    ds::PgConnection c(params);
    if (auto problem = ds::select_users::schema_problem(c); !problem.empty()) {
      spdlog::error("database schema is not current: {}", problem);
      return ds::exit_code::runtime;
    }
    ds::OutputWriter out(1);
    // First and at once: ds-load takes its run lock by it before any user record arrives.
    ds::encode(out.buffer(), ds::select_users::selection_record(opts));
    out.flush();
    // The total is not known before the cursor is read; done-so-far is what a watcher can get.
    ds::Progress progress("ds-select-users", common.quiet);
    const auto k = ds::select_users::select(c, opts, [&out, &progress](const ds::UserRecord& u) {
      ds::encode(out.buffer(), u);
      out.record_done();
      progress.add_users();
    });
    progress.finish();
    const double elapsed = ds::monotonic_seconds() - started;
    ds::encode(out.buffer(), ds::select_users::end_record(k, elapsed));
    out.flush();
    spdlog::info("selected {} users ({} backfill, {} backfill resumed, {} incremental; {} skip_user, {} unknown --did{}) "
                 "as of {} in {:.2f} s",
                 k.users, k.backfill, k.backfill_resumed, k.incremental, k.skipped, k.missing,
                 opts.shard ? fmt::format("; shard {}, {} in other shards", opts.shard->label(), k.other_shards)
                            : std::string(),
                 ds::format_timestamp(opts.as_of), elapsed);
    return ds::exit_code::ok;
  } catch (const ds::PgError& e) {
    spdlog::error("{}", e.what());
  } catch (const std::system_error& e) {
    spdlog::error("cannot write to stdout: {}", e.what());
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
  }
  return ds::exit_code::runtime;
}
