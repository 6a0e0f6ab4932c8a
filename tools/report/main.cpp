// ds-report: writes one self-contained HTML report (inline CSS and SVG, no script, no network) of
// the last nights and the data, or of one account with --account; to -o FILE or stdout.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include <unistd.h>

#include <spdlog/spdlog.h>

#include "ds/clock.hpp"
#include "ds/config.hpp"
#include "ds/exit_codes.hpp"
#include "ds/pg.hpp"
#include "ds/stage.hpp"
#include "report.hpp"

namespace {

// Written beside the target and renamed over it, so a mail or a web server never picks up half a file.
bool write_file(const std::string& path, const std::string& html) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << html;
    f.close();
    if (!f) {
      spdlog::error("cannot write {}", tmp);
      std::error_code ignored;
      std::filesystem::remove(tmp, ignored);
      return false;
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    spdlog::error("cannot rename {} to {}: {}", tmp, path, ec.message());
    std::filesystem::remove(tmp, ec);
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "ds-report: writes one self-contained HTML page (inline CSS and SVG, no script, nothing loaded\n"
      "from the network) about the last runs (status, duration against the 22 h deadline, users,\n"
      "requests against the rate cap) and the data (accounts, snapshots per day, accounts without a\n"
      "recent snapshot), or with --account about one account's totals over time.\n"
      "Exit codes: 0 written, 1 database or file error, 2 usage (or --account not found).",
      "ds-report"};
  ds::CommonOptions common;
  std::optional<std::string> db, output, account;
  std::optional<std::int64_t> runs, days, stale_days, active_days;
  std::optional<double> rate_limit;
  app.add_option("--db", db, "Database (conninfo string or postgresql:// URL); default DATABASE_URL, DB_*, PG*");
  app.add_option("-o,--output", output, "Write the HTML here (atomically); default stdout");
  app.add_option("--account", account, "A page about this account (handle or DID) instead of the nightly report");
  app.add_option("--runs", runs, "Runs shown (default 30)");
  app.add_option("--days", days, "Days of snapshots per day shown (default 30)");
  app.add_option("--stale-days", stale_days, "List accounts without a snapshot for this many days (default 3)");
  app.add_option("--active-days", active_days, "Active = a views row this many days back (env ACTIVE_DAYS, default 7)");
  app.add_option("--rate-limit", rate_limit,
                 "The stages' cap in requests per second, for the capacity (env RATE_LIMIT_RPS, default 10)");
  ds::add_common_options(app, common, /*with_strict=*/false);
  if (auto code = ds::parse_command_line(app, argc, argv)) return *code;
  if (!ds::init_program("ds-report", common)) return ds::exit_code::usage;

  ds::report::LoadOptions opts;
  double rps = 10;
  try {
    opts.runs = static_cast<int>(ds::setting_int(runs, "DS_REPORT_RUNS", 30, 1, 1000));
    opts.days = static_cast<int>(ds::setting_int(days, "DS_REPORT_DAYS", 30, 2, 366));
    opts.stale_days = static_cast<int>(ds::setting_int(stale_days, "DS_VERIFY_STALE_DAYS", 3, 1, 365));
    opts.active_days = static_cast<int>(ds::setting_int(active_days, "ACTIVE_DAYS", 7, 0, 36500));
    rps = ds::setting_double(rate_limit, "RATE_LIMIT_RPS", 10, 0, 1000);
    opts.now = ds::now();
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return ds::exit_code::usage;
  }
  opts.account = account;

  const ds::DbParams params = ds::database_params(db);
  ds::report::ReportInput in;
  try {
    ds::PgConnection c(params);
    in = ds::report::load(c, opts);
  } catch (const ds::PgError& e) {
    std::string what = e.what();
    if (e.sqlstate == "42P01" || e.sqlstate == "42703") what += " (is the database migrated? run ds-migrate)";
    spdlog::error("{}", what);
    return ds::exit_code::runtime;
  } catch (const std::runtime_error& e) {  // --account names nobody
    spdlog::error("{}", e.what());
    return ds::exit_code::usage;
  }
  in.database = params.describe();
  in.rate_limit_rps = rps;
  const std::string html = ds::report::render(in);
  if (output && *output != "-") {
    if (!write_file(*output, html)) return ds::exit_code::runtime;
    spdlog::info("wrote {} ({} bytes, {} runs{})", *output, html.size(), in.runs.size(),
                 in.account ? ", account " + in.account->handle : std::string());
    return ds::exit_code::ok;
  }
  if (std::fwrite(html.data(), 1, html.size(), stdout) != html.size() || std::fflush(stdout) != 0) {
    spdlog::error("cannot write to stdout");
    return ds::exit_code::runtime;
  }
  return ds::exit_code::ok;
}
