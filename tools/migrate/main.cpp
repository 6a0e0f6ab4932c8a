// ds-migrate: brings a PostgreSQL database to the current schema (sql/NNN_*.sql, embedded at build
// time), or with --status reports what is applied and pending. Safe to run twice or concurrently.
#include <cstdio>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "ds/config.hpp"
#include "ds/exit_codes.hpp"
#include "ds/pg.hpp"
#include "ds/stage.hpp"
#include "migrate/migrate.hpp"

namespace {

// --status: one line per migration on stdout (the report is this mode's output), exit 0 only
// when nothing is pending.
int report_status(ds::PgConnection& c, const std::vector<ds::migrate::Migration>& migrations) {
  const auto s = ds::migrate::read_status(c, migrations);
  for (const auto& a : s.applied) std::printf("applied  %03d_%s  %s\n", a.version, a.name.c_str(), a.applied_at.c_str());
  for (const auto& m : s.pending) std::printf("pending  %s\n", m.label().c_str());
  for (const auto& u : s.unknown)
    std::printf("unknown  %03d_%s  %s  (not in this ds-migrate)\n", u.version, u.name.c_str(), u.applied_at.c_str());
  std::fflush(stdout);
  if (s.current()) {
    spdlog::info("schema is current: {} migrations applied", s.applied.size());
    return ds::exit_code::ok;
  }
  spdlog::error("schema is not current: {} migration(s) pending; run ds-migrate", s.pending.size());
  return ds::exit_code::health_db;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "ds-migrate: applies the schema migrations (sql/NNN_*.sql, built in) that the database lacks.\n"
      "Each runs in its own transaction and is recorded in ds_schema_migrations; migrations only add.\n"
      "Exit codes: 0 ok, 1 runtime failure, 2 usage, 5 (--status) pending or unreachable."};
  app.name("ds-migrate");
  ds::CommonOptions common;
  std::optional<std::string> db;
  std::optional<std::string> sql_dir;
  bool status = false;
  app.add_option("--db", db, "Database (conninfo string or postgresql:// URL); default DATABASE_URL, DB_*, PG*");
  app.add_option("--sql-dir", sql_dir, "Read NNN_*.sql from this directory instead of the built-in set");
  app.add_flag("--status,--check", status, "Print applied/pending migrations; exit 0 when current, 5 otherwise");
  ds::add_common_options(app, common, /*with_strict=*/false);
  if (auto code = ds::parse_command_line(app, argc, argv)) return *code;
  if (!ds::init_program("ds-migrate", common)) return ds::exit_code::usage;

  std::vector<ds::migrate::Migration> migrations;
  try {
    migrations = sql_dir ? ds::migrate::load_directory(*sql_dir) : ds::migrate::embedded_migrations();
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return ds::exit_code::usage;
  }
  if (migrations.empty()) {
    spdlog::error("no migrations found{}", sql_dir ? " in " + *sql_dir : std::string());
    return ds::exit_code::usage;
  }

  const ds::DbParams params = ds::database_params(db);
  try {
    ds::PgConnection c(params);
    if (status) return report_status(c, migrations);
    spdlog::debug("connected to {}", params.describe());
    const auto applied = ds::migrate::apply(c, migrations);
    if (applied.empty())
      spdlog::info("schema is current ({} migrations); nothing to apply", migrations.size());
    else
      spdlog::info("applied {} migration(s), {} through {}; schema is current", applied.size(),
                   applied.front().label(), applied.back().label());
    return ds::exit_code::ok;
  } catch (const ds::PgError& e) {
    spdlog::error("{}", e.what());
    return status ? ds::exit_code::health_db : ds::exit_code::runtime;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return ds::exit_code::runtime;
  }
}
