// ds-report's reads: the run log, the data overview, the quiet accounts with the likeliest reason,
// and one account's snapshots, in one read-only REPEATABLE READ transaction (one consistent view).
#include <stdexcept>

#include "report.hpp"

namespace ds::report {
namespace {

constexpr const char* runs_sql = R"SQL(
SELECT id, COALESCE(status, ''),
       (extract(epoch FROM time_started) * 1000000)::bigint, (extract(epoch FROM time_completed) * 1000000)::bigint,
       duration, users_selected, total_users, users_failed, users_gone, posts_loaded, api_requests, api_retries,
       bad_lines, error, shard, requests_get_profiles, requests_get_author_feed, requests_get_posts
  FROM snapshot_logs ORDER BY time_started DESC NULLS LAST, id DESC LIMIT $1::integer
)SQL";

constexpr const char* accounts_sql = R"SQL(
SELECT count(*),
       count(*) FILTER (WHERE COALESCE(u.skip_user, false)),
       count(*) FILTER (WHERE NOT COALESCE(u.skip_user, false)
                          AND EXISTS (SELECT 1 FROM views v WHERE v.did = u.did AND v.date >= $1::date)),
       (SELECT count(*) FROM ds_user_state s WHERE s.backfilled_at IS NOT NULL),
       (SELECT count(*) FROM posts),
       (SELECT count(*) FROM posts WHERE deleted_at IS NULL)
  FROM users u
)SQL";

constexpr const char* snapshots_per_day_sql = R"SQL(
SELECT date - DATE '1970-01-01', count(*) FROM snapshots
 WHERE date BETWEEN $1::date AND $2::date GROUP BY date ORDER BY date
)SQL";

// Tracked accounts without a snapshot dated after $1, the facts their reason is told from, and how
// many there are in all (before the limit). Active ones first: for them a snapshot was due.
constexpr const char* quiet_sql = R"SQL(
SELECT q.did, q.handle, q.last - DATE '1970-01-01', q.backfilled, q.active, q.last_view::text,
       count(*) OVER ()
  FROM (SELECT u.did, u.handle, st.backfilled_at IS NOT NULL AS backfilled,
               (SELECT max(s.date) FROM snapshots s WHERE s.did = u.did) AS last,
               EXISTS (SELECT 1 FROM views v WHERE v.did = u.did AND v.date >= $2::date) AS active,
               (SELECT max(v.date) FROM views v WHERE v.did = u.did) AS last_view
          FROM users u LEFT JOIN ds_user_state st ON st.did = u.did
         WHERE NOT COALESCE(u.skip_user, false)) q
 WHERE q.last IS NULL OR q.last <= $1::date
 ORDER BY q.active DESC, q.last NULLS FIRST, q.did
 LIMIT $3::integer
)SQL";

// Backfills in progress, the oldest first ($1: how many), and how many there are in all.
constexpr const char* backfills_sql = R"SQL(
SELECT st.did, u.handle, (extract(epoch FROM st.backfill_started_at) * 1000000)::bigint,
       (extract(epoch FROM st.backfill_covered_to) * 1000000)::bigint, COALESCE(st.backfill_posts, 0),
       count(*) OVER ()
  FROM ds_user_state st JOIN users u ON u.did = st.did
 WHERE st.backfill_cursor IS NOT NULL AND st.backfilled_at IS NULL
 ORDER BY st.backfill_started_at NULLS LAST, st.did
 LIMIT $1::integer
)SQL";

constexpr const char* find_account_sql = R"SQL(
SELECT u.did, u.handle, u."displayName", COALESCE(u.skip_user, false),
       (extract(epoch FROM st.backfilled_at) * 1000000)::bigint,
       (SELECT count(*) FROM posts p WHERE p.did = u.did),
       (SELECT count(*) FROM posts p WHERE p.did = u.did AND p.deleted_at IS NULL)
  FROM users u LEFT JOIN ds_user_state st ON st.did = u.did
 WHERE u.did = $1 OR lower(u.handle) = lower($1)
 ORDER BY (u.did = $1) DESC LIMIT 1
)SQL";

constexpr const char* account_points_sql = R"SQL(
SELECT date - DATE '1970-01-01', followers, following, posts, likes, replies, quotes, reposts
  FROM snapshots WHERE did = $1 AND date BETWEEN $2::date - 365 AND $2::date ORDER BY date
)SQL";

std::optional<std::int64_t> opt_int(const PgResult& r, int row, int col) {
  return r.is_null(row, col) ? std::nullopt : std::optional<std::int64_t>(r.int64(row, col));
}

Day today_of(Micros t) { return static_cast<Day>(t / micros_per_day - (t % micros_per_day < 0 ? 1 : 0)); }

}  // namespace

std::string quiet_reason(const QuietFacts& f, const std::vector<RunRow>& runs, int active_days) {
  if (!f.active)
    return "Not selected: no views in the last " + std::to_string(active_days) + " days (last view " +
           (f.last_view ? *f.last_view : std::string("never")) + ").";
  if (f.handle == f.did)
    return "Its handle moved to another account; it keeps its DID as a placeholder until its next profile fetch.";
  const RunRow* last = nullptr;
  for (const auto& r : runs)
    if (r.status != "in_progress") {
      last = &r;
      break;
    }
  std::string run;
  if (last) {
    run = "Last run #" + std::to_string(last->id) + " was " + last->status;
    if (last->error && !last->error->empty()) run += ": " + *last->error;
    run += ".";
  }
  if (!f.backfilled)
    return "No complete backfill yet: its feed failed or hit MAX_POSTS_PER_USER." + (run.empty() ? "" : " " + run);
  if (!last) return "No finished run has selected it since.";
  if (last->status == "completed")
    return run + " Not in that run's snapshots: gone from the API, or not selected (--did, --shard).";
  return run;
}

ReportInput load(PgConnection& c, const LoadOptions& o) {
  ReportInput in;
  in.generated = o.now;
  in.stale_days = o.stale_days;
  in.active_days = o.active_days;
  in.days = o.days;
  const Day today = today_of(o.now);

  PgTransaction tx(c);
  c.exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
  c.exec("SET LOCAL jit = off");

  if (o.account) {
    const PgResult r = c.exec(find_account_sql, {*o.account});
    if (r.rows() == 0) throw std::runtime_error("--account " + *o.account + ": no such handle or did in users");
    AccountData a;
    a.did = std::string(r.text(0, 0));
    a.handle = r.optional_text(0, 1).value_or(a.did);
    a.display_name = r.optional_text(0, 2);
    a.skip_user = r.text(0, 3) == "t";
    if (!r.is_null(0, 4)) a.backfilled_at = r.int64(0, 4);
    a.stored_posts = r.int64(0, 5);
    a.live_posts = r.int64(0, 6);
    const PgResult p = c.exec(account_points_sql, {a.did, day_iso(today)});
    for (int i = 0; i < p.rows(); ++i)
      a.points.push_back(AccountPoint{static_cast<Day>(p.int64(i, 0)), opt_int(p, i, 1), opt_int(p, i, 2),
                                      opt_int(p, i, 3), opt_int(p, i, 4), opt_int(p, i, 5), opt_int(p, i, 6),
                                      opt_int(p, i, 7)});
    in.account = std::move(a);
    return in;
  }

  const PgResult runs = c.exec(runs_sql, {std::to_string(o.runs)});
  for (int i = 0; i < runs.rows(); ++i) {
    RunRow r;
    r.id = runs.int64(i, 0);
    r.status = std::string(runs.text(i, 1));
    if (!runs.is_null(i, 2)) r.started = runs.int64(i, 2);
    if (!runs.is_null(i, 3)) r.completed = runs.int64(i, 3);
    if (!runs.is_null(i, 4)) r.duration_s = std::stod(std::string(runs.text(i, 4)));
    r.selected = opt_int(runs, i, 5);
    r.snapshotted = opt_int(runs, i, 6);
    r.failed = opt_int(runs, i, 7);
    r.gone = opt_int(runs, i, 8);
    r.posts_loaded = opt_int(runs, i, 9);
    r.requests = opt_int(runs, i, 10);
    r.retries = opt_int(runs, i, 11);
    r.bad_lines = opt_int(runs, i, 12);
    r.error = runs.optional_text(i, 13);
    r.shard = runs.optional_text(i, 14);
    r.requests_profiles = opt_int(runs, i, 15);
    r.requests_feed = opt_int(runs, i, 16);
    r.requests_posts = opt_int(runs, i, 17);
    in.runs.push_back(std::move(r));
  }

  auto& d = in.data;
  const PgResult a = c.exec(accounts_sql, {day_iso(today - o.active_days)});
  d.accounts = a.int64(0, 0);
  d.skipped = a.int64(0, 1);
  d.active = a.int64(0, 2);
  d.backfilled = a.int64(0, 3);
  d.posts = a.int64(0, 4);
  d.live_posts = a.int64(0, 5);

  // The period starts at its first snapshot when it is younger than `days`: the days before the
  // first run are not gaps.
  const Day window_start = today - (o.days - 1);
  const PgResult s = c.exec(snapshots_per_day_sql, {day_iso(window_start), day_iso(today)});
  d.first_day = s.rows() > 0 ? static_cast<Day>(s.int64(0, 0)) : window_start;
  d.snapshots_per_day.assign(static_cast<std::size_t>(today - d.first_day + 1), 0);
  for (int i = 0; i < s.rows(); ++i)
    d.snapshots_per_day[static_cast<std::size_t>(s.int64(i, 0) - d.first_day)] = s.int64(i, 1);

  const PgResult q = c.exec(quiet_sql, {day_iso(today - o.stale_days), day_iso(today - o.active_days),
                                        std::to_string(o.quiet_limit)});
  for (int i = 0; i < q.rows(); ++i) {
    QuietFacts f;
    f.did = std::string(q.text(i, 0));
    f.handle = q.optional_text(i, 1).value_or(f.did);
    f.backfilled = q.text(i, 3) == "t";
    f.active = q.text(i, 4) == "t";
    f.last_view = q.optional_text(i, 5);
    QuietAccount qa{f.did, f.handle, std::nullopt, quiet_reason(f, in.runs, o.active_days)};
    if (!q.is_null(i, 2)) qa.last_snapshot = static_cast<Day>(q.int64(i, 2));
    d.quiet.push_back(std::move(qa));
    d.quiet_total = q.int64(i, 6);
  }
  const PgResult b = c.exec(backfills_sql, {std::to_string(o.quiet_limit)});
  for (int i = 0; i < b.rows(); ++i) {
    BackfillProgress p;
    p.did = std::string(b.text(i, 0));
    p.handle = b.optional_text(i, 1).value_or(p.did);
    if (!b.is_null(i, 2)) p.started = b.int64(i, 2);
    if (!b.is_null(i, 3)) p.covered_to = b.int64(i, 3);
    p.posts = b.int64(i, 4);
    d.backfills.push_back(std::move(p));
    d.backfills_total = b.int64(i, 5);
  }
  tx.commit();
  return in;
}

}  // namespace ds::report
