// ds-load's logic, apart from main.cpp so the tests drive it directly: read post/user/snapshot/end
// records, write them to PostgreSQL in batches over one connection, and record the run in snapshot_logs.
#pragma once
#include <csignal>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ds/config.hpp"
#include "ds/ndjson.hpp"
#include "ds/progress.hpp"
#include "ds/records.hpp"

namespace ds::load {

// Key of the session-level advisory lock a run holds from start to end, so two runs never load
// into the same database at once: the ASCII bytes of "ds-load" read as a big-endian integer.
constexpr std::int64_t run_lock_key = 0x64732d6c6f6164;  // 28274136601026916

// The stages whose `end` records must all be in the stream for a run to count as complete.
inline constexpr const char* upstream_stages[] = {"ds-select-users", "ds-fetch-profiles",
                                                  "ds-fetch-feeds", "ds-aggregate"};

// Handle the API reports for an account whose handle failed verification. Many accounts can carry
// it at once, and users.handle is UNIQUE, so it never replaces a stored handle.
constexpr std::string_view invalid_handle = "handle.invalid";

// Run-log figures taken from the upstream `end` records (docs/records.md); a missing counter is 0.
struct UpstreamCounters {
  std::int64_t users_selected = 0;  // ds-select-users `users`
  std::int64_t users_gone = 0;      // ds-fetch-profiles `gone` + ds-fetch-feeds `gone`
  std::int64_t users_failed = 0;    // profiles `failed` + feeds `failed` + feeds `capped`
  std::int64_t api_requests = 0;    // sum of `requests`
  // By endpoint (the fetching stages' `requests_get_*`), and the accounts by feed path
  // (ds-fetch-feeds `path_feed`, `path_posts`, `path_none`): docs/request-economy.md.
  std::int64_t requests_get_profiles = 0, requests_get_author_feed = 0, requests_get_posts = 0;
  std::int64_t path_feed = 0, path_posts = 0, path_none = 0;
  // Backfills stopped at the run's limit, to be continued (ds-fetch-feeds `backfill_partial`):
  // progress, not failures, so they never make a run partial.
  std::int64_t backfills_partial = 0;
  std::int64_t api_retries = 0;     // sum of `retries`
  std::int64_t bad_lines = 0;       // sum of `bad_lines`, plus the lines ds-load itself skipped
};

// What the chain of end records says about the run: "completed", "partial" or "failed", with the
// reason in `error` for the last two.
struct StreamVerdict {
  std::string status;
  std::string error;
  UpstreamCounters counters;
};
StreamVerdict judge_stream(const std::vector<EndRecord>& ends, std::int64_t own_bad_lines);

struct LoadOptions {
  DbParams db;
  // Commit after this many records ... A batch costs a dozen statements and a commit whatever its
  // size, which at 5000 records was a third of a daily run; memory is bounded by
  // max_buffered_posts, not by this.
  std::int64_t batch_records = 50'000;
  double batch_seconds = 5;           // ... or this long, whichever first, at a user boundary
  // The run's shard (stored in snapshot_logs.shard, its own run lock). Without it the stream says
  // which, in its selection record; with it, a selection record that names a shard must agree (else
  // exit 2), and one that names none (unsharded), or none at all (contract 1), takes it as its label.
  std::optional<std::string> shard;
  bool strict = false;                // stop at the first bad input line
  // After losing the database, how long to keep trying to reconnect to record the run as failed.
  double reconnect_seconds = 30;
  // Posts held in memory before they are compared and written inside the open batch (a flush);
  // bounds memory whatever the batch size (tests lower it to exercise flushes).
  std::size_t max_buffered_posts = 100'000;
  // Set (by a signal handler, or a test) to stop at the next record boundary; may be null.
  const volatile std::sig_atomic_t* stop = nullptr;
  // Told about each user and post record handed to the database; may be null.
  Progress* progress = nullptr;
};

// What one run did to the database, for the summary line and the run log.
struct LoadStats {
  std::int64_t records = 0;  // post, user and snapshot records read
  std::int64_t batches = 0;  // transactions committed
  std::int64_t users_seen = 0;
  std::int64_t users_updated = 0;    // handle/displayName/avatar changed
  std::int64_t handles_moved = 0;    // accounts whose handle another tracked account took
  std::int64_t posts_inserted = 0;
  std::int64_t posts_updated = 0;    // counts, times or deletion mark changed
  std::int64_t posts_unchanged = 0;  // already stored exactly so: not touched
  std::int64_t posts_skipped = 0;    // author not in users, or a URI too long for the column
  std::int64_t posts_deleted = 0;    // marked deleted: missing from a complete feed's window
  std::int64_t backfills_marked = 0;
  std::int64_t backfills_saved = 0;  // partial backfills whose cursor was stored (progressive backfill)
  std::int64_t refresh_clocks = 0;   // full-refresh clocks restarted (ds_user_state.refresh_clock_date)
  std::int64_t snapshots_inserted = 0;
  std::int64_t snapshots_updated = 0;
  std::int64_t snapshots_unchanged = 0;
  std::int64_t snapshots_skipped = 0;  // user not in users
  std::int64_t posts_loaded() const { return posts_inserted + posts_updated + posts_unchanged; }
  std::int64_t snapshots_loaded() const {
    return snapshots_inserted + snapshots_updated + snapshots_unchanged;
  }
};

struct LoadResult {
  int exit_code = 0;   // ds::exit_code
  std::string status;  // as recorded in snapshot_logs ("completed", "partial", "failed"), or
                       // "locked" when another run held the lock and nothing was recorded
  std::int64_t run_id = 0;  // 0 when no run row was created
  std::optional<std::string> shard;  // the run's (or refused run's) shard: --shard or the stream's
  std::string error;
  LoadStats stats;
  double wall_s = 0;
  std::int64_t bad_lines = 0;  // input lines ds-load itself skipped (upstream's are in their ends)
  std::vector<EndRecord> upstream_ends;  // as read, for the metrics file (--metrics-file)
  UpstreamCounters upstream;             // what they say (judge_stream), as written to the run log
};

// The whole run: lock, run-log row, batches, final status. Never throws; every outcome is in the
// result (and logged).
LoadResult run_load(const LoadOptions& options, LineReader& input, OutputWriter& output);

// One line for stderr summarising a finished run.
std::string summary_line(const LoadResult& r);

// Makes SIGINT and SIGTERM set the returned flag (pass it as LoadOptions::stop). With `input_fd`,
// they also end the input at once (it is replaced by /dev/null) instead of at its next line.
const volatile std::sig_atomic_t* install_stop_handlers(int input_fd = -1);

// Shortens valid UTF-8 to at most `max_chars` code points, cutting only at a character boundary
// (varchar(n) counts characters).
std::string truncate_chars(std::string_view s, std::size_t max_chars);
std::size_t count_chars(std::string_view s);

}  // namespace ds::load
