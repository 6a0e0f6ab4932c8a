// ds-report's model and entry points: what is read from the database (runs, data, one account)
// and the pure rendering of it into one self-contained HTML page (inline CSS and SVG, no script).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ds/clock.hpp"
#include "ds/pg.hpp"
#include "svg.hpp"

namespace ds::report {

// The 22-hour budget a nightly run has (the systemd unit's TimeoutStartSec, docs/operations.md).
constexpr double deadline_seconds = 22 * 3600.0;

// One snapshot_logs row.
struct RunRow {
  std::int64_t id = 0;
  std::string status;  // in_progress, completed, partial, failed (or whatever another writer left)
  std::optional<Micros> started, completed;
  std::optional<double> duration_s;
  std::optional<std::int64_t> selected, snapshotted, failed, gone, posts_loaded, requests, retries, bad_lines;
  std::optional<std::string> error, shard;
  // By endpoint (getProfiles, getAuthorFeed, getPosts): null for runs logged before migration 006.
  std::optional<std::int64_t> requests_profiles, requests_feed, requests_posts;
};

// An account without a recent snapshot, and the likeliest reason the database can tell.
struct QuietAccount {
  std::string did, handle;
  std::optional<Day> last_snapshot;
  std::string reason;
};

// A backfill spread over several runs and not finished (ds_user_state.backfill_cursor, migration 007).
struct BackfillProgress {
  std::string did, handle;
  std::optional<Micros> started, covered_to;
  std::int64_t posts = 0;                  // stored live posts so far
};

struct DataOverview {
  std::int64_t accounts = 0;    // users rows
  std::int64_t skipped = 0;     // skip_user
  std::int64_t active = 0;      // a views row within active_days (the default selection)
  std::int64_t backfilled = 0;  // with the backfill marker
  std::int64_t posts = 0, live_posts = 0;
  Day first_day = 0;                       // of snapshots_per_day
  std::vector<std::int64_t> snapshots_per_day;  // one per day up to today; 0 = none that day
  std::vector<QuietAccount> quiet;         // the first `quiet_limit` of them, longest quiet first
  std::int64_t quiet_total = 0;
  std::vector<BackfillProgress> backfills;  // the oldest first, at most quiet_limit of them
  std::int64_t backfills_total = 0;
};

struct AccountPoint {
  Day day = 0;
  std::optional<std::int64_t> followers, following, posts, likes, replies, quotes, reposts;
};
struct AccountData {
  std::string did, handle;
  std::optional<std::string> display_name;
  bool skip_user = false;
  std::optional<Micros> backfilled_at;
  std::int64_t stored_posts = 0, live_posts = 0;
  std::vector<AccountPoint> points;  // ascending by day
};

struct ReportInput {
  Micros generated = 0;        // the run clock (DS_NOW)
  std::string database;        // described without password
  double rate_limit_rps = 10;  // RATE_LIMIT_RPS, per stage; 0 = no cap
  int stale_days = 3;
  int active_days = 7;
  int days = 30;               // the data section's span of days
  std::vector<RunRow> runs;    // newest first
  DataOverview data;
  std::optional<AccountData> account;  // --account: the page is about this account only
};

struct LoadOptions {
  int runs = 30;
  int days = 30;
  int stale_days = 3;
  int active_days = 7;
  int quiet_limit = 50;
  std::optional<std::string> account;  // handle (case-insensitive) or did
  Micros now = 0;
};

// Reads everything in one read-only REPEATABLE READ transaction. Throws PgError, or
// std::runtime_error when --account names no account.
ReportInput load(PgConnection& c, const LoadOptions& o);

// The whole page. Pure: the same input gives the same bytes.
std::string render(const ReportInput& in);

// Parts, exposed for the tests.
std::string render_runs_section(const ReportInput& in);
std::string render_data_section(const ReportInput& in);
std::string render_account_section(const ReportInput& in, const AccountData& a);

// What the database tells about a quiet account, and the likeliest reason told from it and the
// last finished run (`runs` newest first): not selected, handle moved, never backfilled, or what
// the last run said about its failures.
struct QuietFacts {
  std::string did, handle;
  bool active = false;      // a views row within active_days: the default selection picks it
  bool backfilled = false;  // has the backfill marker
  std::optional<std::string> last_view;
};
std::string quiet_reason(const QuietFacts& f, const std::vector<RunRow>& runs, int active_days);

// The utilisation of the rate cap: requests over RATE_LIMIT_RPS x duration, where a shard K/N's
// cap is RATE_LIMIT_RPS / N (snapshot-sharded.sh splits it). nullopt without a cap or a duration.
std::optional<double> cap_capacity(const RunRow& r, double rate_limit_rps);

}  // namespace ds::report
