// The run's metrics file: Prometheus text exposition format, written atomically for
// node_exporter's textfile collector (docs/operations.md lists every metric and the alert rules).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ds/config.hpp"
#include "ds/records.hpp"

namespace ds {
class PgConnection;
}

namespace ds::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

// A label value as the format wants it: backslash, double quote and newline escaped.
std::string escape_label_value(std::string_view v);
// HELP text: backslash and newline escaped.
std::string escape_help(std::string_view v);
// A sample value: integers exactly, other numbers in the shortest round-trip form, NaN, +Inf, -Inf.
std::string format_value(double v);

// Builds an exposition: families in the order first declared, each with its HELP and TYPE lines
// followed by all of its samples (the format requires a family's samples to be contiguous).
// Families that get no sample are left out.
class Exposition {
 public:
  // Declares (or finds) a family; `type` is gauge, counter or untyped.
  void family(const std::string& name, std::string_view help, std::string_view type = "gauge");
  // Adds a sample to a declared family.
  void sample(const std::string& name, const Labels& labels, double value);
  std::string text() const;

 private:
  struct Family {
    std::string name, help, type;
    std::vector<std::string> samples;  // rendered "name{labels} value" lines
  };
  Family* find(const std::string& name);
  std::vector<Family> families_;
};

// Writes `text` to a temporary file beside `path` ("<path>.tmp.<pid>", which the textfile
// collector ignores since it reads only *.prom), fsyncs it and renames it over `path`, so a
// scrape never sees half a file. Throws std::system_error.
void write_file_atomic(const std::string& path, std::string_view text);

// The value of the first sample of metric `name` in an existing metrics file; nullopt when the
// file or the metric is missing or unreadable.
std::optional<double> read_sample(const std::string& path, std::string_view name);

// What ds-load knows when a run ends (filled by ds-load's main from its LoadResult).
struct RunReport {
  std::optional<std::string> shard;  // the run's shard (the stream's, or --shard); the `shard` label ("" when none)
  std::string status;                // completed, partial, failed, locked
  int exit_code = 0;
  std::int64_t run_id = 0;           // 0 when no run row was created
  double duration_s = 0;
  double end_time_s = 0;             // the run clock at the end, Unix seconds; 0 = now
  std::vector<EndRecord> ends;       // the upstream end records, in stream order
  // Run-level figures (ds::load::judge_stream's definitions).
  std::int64_t users_selected = 0;
  std::int64_t users_gone = 0;
  std::int64_t users_failed = 0;     // profiles failed + feeds failed + feeds capped
  std::int64_t users_snapshotted = 0;
  std::int64_t posts_loaded = 0;
  std::int64_t api_requests = 0;
  std::int64_t api_retries = 0;
  // ds-load's own figures as a stage (it writes no end record): counter name -> value.
  std::vector<std::pair<std::string, std::int64_t>> load_counters;
  // From snapshot_logs (completed runs of this shard; completed or partial), when known.
  std::optional<double> last_success_s;
  std::optional<double> last_finished_s;
};

// The metrics file's text for one run.
std::string render(const RunReport& r);

// max(time_completed) of this shard's completed runs, and of its completed or partial runs, as
// Unix seconds (rows with a NULL shard are the unsharded runs). Throws PgError.
std::pair<std::optional<double>, std::optional<double>> query_last_runs(
    PgConnection& c, const std::optional<std::string>& shard);

// Fills last_success_s/last_finished_s from the database (a fresh connection), or, when it cannot
// be asked, from the previous file at `path`, so a failed run never loses the time of the last
// good one; then renders and writes the file. Logs and returns false on failure; never throws.
bool write_run_metrics(const std::string& path, RunReport r, const DbParams& db);

}  // namespace ds::metrics
