// ds-verify: audits a live database without changing it (the checks are in verify.hpp): one line
// per problem and a summary on stdout, or NDJSON with --json; exit 0 clean, 3 problems, 1 cannot check.
#include <cstdio>
#include <optional>
#include <string>

#include <spdlog/spdlog.h>

#include "ds/clock.hpp"
#include "ds/config.hpp"
#include "ds/exit_codes.hpp"
#include "ds/pg.hpp"
#include "ds/stage.hpp"
#include "verify.hpp"

namespace {

void put_line(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fputc('\n', stdout);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "ds-verify: audits the database without changing it, in one read-only transaction. Checks that\n"
      "every account's latest snapshot written by this pipeline equals the sums over its live posts,\n"
      "and looks for snapshots dated in the future or duplicated, posts of accounts not in users,\n"
      "handles held twice (case-insensitively), runs left in_progress with no live run lock, and\n"
      "accounts selected on the last --stale-days run days without a snapshot (docs/operations.md).\n"
      "Output: one line per problem and a summary line on stdout (--json: NDJSON).\n"
      "Exit codes: 0 no problems, 1 cannot check (database error), 2 usage, 3 problems found.",
      "ds-verify"};
  ds::CommonOptions common;
  std::optional<std::string> db;
  std::optional<std::int64_t> stale_days;
  std::optional<std::int64_t> active_days;
  bool json = false;
  app.add_option("--db", db, "Database (conninfo string or postgresql:// URL); default DATABASE_URL, DB_*, PG*");
  app.add_option("--stale-days", stale_days,
                 "Report accounts selected on this many run days in a row without a snapshot (default 3)");
  app.add_option("--active-days", active_days,
                 "Selection rule as ds-select-users: a views row this many days back (env ACTIVE_DAYS, default 7)");
  app.add_flag("--json", json, "NDJSON on stdout: one {\"type\":\"finding\"} object per problem, then a summary");
  ds::add_common_options(app, common, /*with_strict=*/false);
  if (auto code = ds::parse_command_line(app, argc, argv)) return *code;
  if (!ds::init_program("ds-verify", common)) return ds::exit_code::usage;

  ds::verify::Options opts;
  try {
    opts.stale_days = static_cast<int>(ds::setting_int(stale_days, "DS_VERIFY_STALE_DAYS", 3, 1, 365));
    opts.active_days = static_cast<int>(ds::setting_int(active_days, "ACTIVE_DAYS", 7, 0, 36500));
    opts.now = ds::now();
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return ds::exit_code::usage;
  }

  const ds::DbParams params = ds::database_params(db);
  try {
    ds::PgConnection c(params);
    spdlog::debug("verifying {}", params.describe());
    const auto summary = ds::verify::verify(c, opts, [json](const ds::verify::Finding& f) {
      put_line(json ? f.json : f.text);
    });
    put_line(json ? ds::verify::summary_json(summary) : ds::verify::summary_text(summary));
    if (std::fflush(stdout) != 0) {
      spdlog::error("cannot write to stdout");
      return ds::exit_code::runtime;
    }
    return summary.total() > 0 ? ds::exit_code::partial : ds::exit_code::ok;
  } catch (const ds::PgError& e) {
    std::string what = e.what();
    if (e.sqlstate == "42P01" || e.sqlstate == "42703") what += " (is the database migrated? run ds-migrate)";
    spdlog::error("cannot check: {}", what);
  } catch (const std::exception& e) {
    spdlog::error("cannot check: {}", e.what());
  }
  std::fflush(stdout);
  return ds::exit_code::runtime;
}
