// ds-load: the pipeline's last stage and the only one that writes the database. Parses flags and
// hands stdin to the load logic (load.hpp); the exit code is the run's status.
#include <signal.h>
#include <unistd.h>

#include <iostream>

#include <spdlog/spdlog.h>

#include "ds/config.hpp"
#include "ds/exit_codes.hpp"
#include "ds/metrics.hpp"
#include "ds/ndjson.hpp"
#include "ds/progress.hpp"
#include "ds/stage.hpp"
#include "load.hpp"

int main(int argc, char** argv) {
  CLI::App app{"ds-load: write post, user and snapshot records from stdin to PostgreSQL and record "
               "the run in snapshot_logs. Exit 0 completed, 3 partial, 1 failed, 2 usage, 4 another "
               "run holds the lock, 130 interrupted."};
  ds::CommonOptions common;
  std::optional<std::string> db;
  std::optional<std::int64_t> batch_records;
  double batch_seconds = 5;
  std::optional<std::string> shard;
  double reconnect_seconds = 30;
  app.add_option("--db", db, "Database: conninfo string or postgresql:// URL (else DATABASE_URL, DB_*, PG*)");
  app.add_option("--batch-records", batch_records, "Commit after this many records (default 50000)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{100'000'000}));
  app.add_option("--batch-seconds", batch_seconds, "Commit after this many seconds (default 5)")
      ->check(CLI::Range(0.0, 86'400.0));
  app.add_option("--shard", shard,
                 "The run's shard. Not needed: the stream's first line, ds-select-users' selection record, says "
                 "it, and then --shard must agree (exit 2). For a stream that names no shard (unsharded, or "
                 "contract 1): the label stored in snapshot_logs.shard; the run lock is per label");
  app.add_option("--reconnect-seconds", reconnect_seconds,
                 "After losing the database, keep trying this long to record the run as failed (default 30)")
      ->check(CLI::Range(0.0, 3'600.0));
  std::optional<std::string> metrics_file;
  app.add_option("--metrics-file", metrics_file,
                 "At the end, write the run's Prometheus metrics here (env METRICS_FILE; docs/operations.md)");
  ds::add_common_options(app, common);
  if (auto code = ds::parse_command_line(app, argc, argv)) return *code;
  if (!ds::init_program("ds-load", common)) return ds::exit_code::usage;

  ds::load::LoadOptions o;
  o.db = ds::database_params(db);
  o.batch_records = batch_records.value_or(o.batch_records);
  o.batch_seconds = batch_seconds;
  o.shard = shard;
  o.reconnect_seconds = reconnect_seconds;
  o.strict = common.strict;
  o.stop = ds::load::install_stop_handlers(STDIN_FILENO);
  // A closed stdout must show up as a write error, not kill the run before it records its status.
  signal(SIGPIPE, SIG_IGN);

  // Records come from stdin: how many users they hold is known only at the end.
  ds::Progress progress("ds-load", common.quiet);
  o.progress = &progress;
  ds::LineReader input(STDIN_FILENO);
  ds::OutputWriter output(STDOUT_FILENO);
  const ds::load::LoadResult r = ds::load::run_load(o, input, output);
  progress.finish();  // the summary must not share its line
  if (r.run_id != 0) {
    const std::string line = ds::load::summary_line(r);
    if (r.status == "completed") spdlog::info("{}", line);
    else spdlog::warn("{}", line);
  }
  // Success or not: the metrics file is how dashboards and alerts learn about a failed run.
  if (const std::string path = ds::setting(metrics_file, "METRICS_FILE", ""); !path.empty()) {
    ds::metrics::RunReport m;
    m.shard = r.shard;
    m.status = r.status;
    m.exit_code = r.exit_code;
    m.run_id = r.run_id;
    m.duration_s = r.wall_s;
    m.ends = r.upstream_ends;
    m.users_selected = r.upstream.users_selected;
    m.users_gone = r.upstream.users_gone;
    m.users_failed = r.upstream.users_failed;
    m.users_snapshotted = r.stats.snapshots_loaded();
    m.posts_loaded = r.stats.posts_loaded();
    m.api_requests = r.upstream.api_requests;
    m.api_retries = r.upstream.api_retries;
    const auto& s = r.stats;
    m.load_counters = {{"records", s.records}, {"batches", s.batches}, {"users", s.users_seen},
                       {"users_updated", s.users_updated}, {"posts", s.posts_loaded()},
                       {"posts_inserted", s.posts_inserted}, {"posts_updated", s.posts_updated},
                       {"posts_deleted", s.posts_deleted}, {"snapshots", s.snapshots_loaded()}};
    ds::metrics::write_run_metrics(path, std::move(m), o.db);
  }
  return r.exit_code;
}
