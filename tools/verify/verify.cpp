// ds-verify's checks: the SQL of each, run in one read-only REPEATABLE READ transaction (one
// consistent view of every table), large reads streamed through cursors, problems sent as found.
#include "verify.hpp"

#include <algorithm>
#include <set>
#include <string_view>

#include <spdlog/spdlog.h>

#include "ds/json_writer.hpp"
#include "ds/shard.hpp"

namespace ds::verify {
namespace {

// Declares a cursor over `sql` and hands every row to `row`, `fetch_rows` at a time, so memory
// stays flat however many rows the query yields.
template <typename RowFn>
void stream(PgConnection& c, std::string_view cursor, std::string_view sql, const std::vector<PgParam>& params,
            int fetch_rows, RowFn&& row) {
  std::string declare = "DECLARE ";
  declare += cursor;
  declare += " NO SCROLL CURSOR FOR ";
  declare += sql;
  c.exec(declare, params);
  const std::string fetch = "FETCH " + std::to_string(std::max(1, fetch_rows)) + " FROM " + std::string(cursor);
  for (;;) {
    const PgResult r = c.exec(fetch);
    if (r.rows() == 0) break;
    for (int i = 0; i < r.rows(); ++i) row(r, i);
  }
  c.exec("CLOSE " + std::string(cursor));
}

Account account(const PgResult& r, int row, int did_col, int handle_col) {
  return Account{r.optional_text(row, did_col).value_or(""), r.optional_text(row, handle_col)};
}

Day day(const PgResult& r, int row, int col) { return static_cast<Day>(r.int64(row, col)); }

// Advisory locks held right now in this database, read before the transaction starts: a run whose
// row was created before this moment and is still in_progress in the snapshot taken after it must
// have held its lock here if it was alive (ds-load locks before it inserts its row and unlocks
// after its last update). A bigint key shows as classid (high 32 bits) and objid (low), objsubid 1.
// Exclusive only: a sharded ds-load holds the base key shared, which an unsharded run cannot then hold.
constexpr const char* held_locks_sql = R"SQL(
SELECT ((l.classid::bigint << 32) | l.objid::bigint)::text
  FROM pg_locks l
 WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted AND l.mode = 'ExclusiveLock'
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
)SQL";

// Constraints that make a check impossible to fail: a unique index on snapshots (did, date) and a
// foreign key posts.did -> users (then only a NULL did escapes it).
constexpr const char* constraints_sql = R"SQL(
SELECT EXISTS (
         SELECT 1 FROM pg_index i
          WHERE i.indrelid = 'snapshots'::regclass AND i.indisunique AND i.indpred IS NULL AND i.indnkeyatts = 2
            AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute a
                  WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)) = ARRAY['date', 'did']),
       EXISTS (
         SELECT 1 FROM pg_constraint k
          WHERE k.conrelid = 'posts'::regclass AND k.contype = 'f' AND k.confrelid = 'users'::regclass
            AND k.convalidated
            AND k.conkey = ARRAY[(SELECT a.attnum FROM pg_attribute a
                                   WHERE a.attrelid = 'posts'::regclass AND a.attname = 'did')])
)SQL";

// Every account's latest snapshot beside the sums over its live posts (docs/design.md: baseline +
// window = the sum over live rows after the load). Written by this pipeline: the account has the
// backfill marker and the snapshot row is no older than it (ds-load sets both with the database
// clock; the original program never writes ds_user_state). Posts written after the snapshot row
// (a later run whose feed failed, the original's upsert) mean its sums at that time are unknown.
// Snapshots dated after today ($1) are future_snapshot's; the latest one up to today is compared.
constexpr const char* latest_snapshots_sql = R"SQL(
SELECT u.did, u.handle, l.date - DATE '1970-01-01', l.likes, l.replies, l.quotes, l.reposts,
       COALESCE(st.backfilled_at IS NOT NULL AND l.created_at >= st.backfilled_at, false),
       COALESCE(p.written_last > l.created_at, false),
       COALESCE(p.likes, 0), COALESCE(p.replies, 0), COALESCE(p.quotes, 0), COALESCE(p.reposts, 0)
  FROM users u
 CROSS JOIN LATERAL (
   SELECT s.date, s.likes, s.replies, s.quotes, s.reposts, s.created_at
     FROM snapshots s WHERE s.did = u.did AND s.date <= $1::date ORDER BY s.date DESC LIMIT 1) l
  LEFT JOIN ds_user_state st ON st.did = u.did
  LEFT JOIN (
   SELECT did,
          sum(likes) FILTER (WHERE deleted_at IS NULL) AS likes,
          sum(replies) FILTER (WHERE deleted_at IS NULL) AS replies,
          sum(quotes) FILTER (WHERE deleted_at IS NULL) AS quotes,
          sum(reposts) FILTER (WHERE deleted_at IS NULL) AS reposts,
          max(GREATEST("updatedAt", deleted_at)) AS written_last
     FROM posts WHERE did IS NOT NULL GROUP BY did) p ON p.did = u.did
 ORDER BY u.did
)SQL";

constexpr const char* future_snapshots_sql = R"SQL(
SELECT s.did, u.handle, s.date - DATE '1970-01-01'
  FROM snapshots s LEFT JOIN users u ON u.did = s.did
 WHERE s.date > $1::date ORDER BY s.did, s.date
)SQL";

constexpr const char* duplicate_snapshots_sql = R"SQL(
SELECT s.did, u.handle, s.date - DATE '1970-01-01', count(*)
  FROM snapshots s LEFT JOIN users u ON u.did = s.did
 GROUP BY s.did, u.handle, s.date HAVING count(*) > 1 ORDER BY s.did, s.date
)SQL";

constexpr const char* null_did_posts_sql = "SELECT uri, did FROM posts WHERE did IS NULL ORDER BY uri";
constexpr const char* untracked_posts_sql = R"SQL(
SELECT p.uri, p.did FROM posts p
 WHERE p.did IS NULL OR NOT EXISTS (SELECT 1 FROM users u WHERE u.did = p.did)
 ORDER BY p.uri
)SQL";

// AT Protocol handles are case-insensitive: two rows whose handles differ only in case name one
// handle twice, which users.handle's UNIQUE constraint does not prevent.
constexpr const char* shared_handles_sql = R"SQL(
SELECT k.key, u.did, u.handle
  FROM (SELECT lower(handle) AS key FROM users WHERE handle IS NOT NULL GROUP BY 1 HAVING count(*) > 1) k
  JOIN users u ON lower(u.handle) = k.key
 ORDER BY k.key, u.did
)SQL";

constexpr const char* in_progress_runs_sql = R"SQL(
SELECT id, shard, to_char(time_started AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       COALESCE(created_at < $1::timestamptz, true)
  FROM snapshot_logs WHERE status = 'in_progress' ORDER BY id
)SQL";

// Runs that ran to the end: each selected account then either got its snapshot or failed.
constexpr const char* run_days_sql = R"SQL(
SELECT DISTINCT (time_started AT TIME ZONE 'UTC')::date - DATE '1970-01-01', shard
  FROM snapshot_logs
 WHERE status IN ('completed', 'partial')
   AND (time_started AT TIME ZONE 'UTC')::date BETWEEN $1::date - 400 AND $1::date
)SQL";

// Accounts the default selection could have picked since $2 (not skip_user, a views row), with
// their snapshot dates since $1 and view dates in [$2, $3]. $1 <= every account's covering days.
constexpr const char* selection_sql = R"SQL(
SELECT u.did, u.handle,
       ARRAY(SELECT s.date - DATE '1970-01-01' FROM snapshots s
              WHERE s.did = u.did AND s.date >= $1::date ORDER BY 1),
       ARRAY(SELECT v.date - DATE '1970-01-01' FROM views v
              WHERE v.did = u.did AND v.date BETWEEN $2::date AND $3::date ORDER BY 1),
       (SELECT max(s.date) - DATE '1970-01-01' FROM snapshots s WHERE s.did = u.did)
  FROM users u
 WHERE NOT COALESCE(u.skip_user, false)
   AND EXISTS (SELECT 1 FROM views v WHERE v.did = u.did AND v.date BETWEEN $2::date AND $3::date)
   -- A backfill in progress that a run of the period continued has no snapshot by design
   -- (docs/request-economy.md, progressive backfill); one no run moved on is judged like any.
   AND NOT EXISTS (SELECT 1 FROM ds_user_state st
                    WHERE st.did = u.did AND st.backfilled_at IS NULL AND st.backfill_cursor IS NOT NULL
                      AND st.backfill_covered_to >= $1::date)
 ORDER BY u.did
)SQL";

class Verifier {
 public:
  Verifier(PgConnection& c, const Options& o, const Sink& sink) : c_(c), o_(o), sink_(sink) {}

  Summary run() {
    const double t0 = monotonic_seconds();
    // Before the transaction: see held_locks_sql.
    const PgResult probe = c_.exec("SELECT clock_timestamp()::text");
    probe_time_ = std::string(probe.text(0, 0));
    const PgResult locks = c_.exec(held_locks_sql);
    for (int i = 0; i < locks.rows(); ++i) held_.insert(std::stoll(std::string(locks.text(i, 0))));

    PgTransaction tx(c_);
    c_.exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    // Plans of one big aggregate and many small index lookups: JIT compiling costs more than it saves.
    c_.exec("SET LOCAL jit = off");
    const PgResult k = c_.exec(constraints_sql);
    s_.duplicate_snapshots_by_index = k.text(0, 0) == "t";
    s_.untracked_posts_by_key = k.text(0, 1) == "t";
    today_ = static_cast<Day>(o_.now / micros_per_day - (o_.now % micros_per_day < 0 ? 1 : 0));

    latest_snapshots();
    future_snapshots();
    if (!s_.duplicate_snapshots_by_index) duplicate_snapshots();
    untracked_posts();
    shared_handles();
    stale_runs();
    stale_accounts();
    // The transaction only read; the destructor rolls it back.
    s_.elapsed_s = monotonic_seconds() - t0;
    return s_;
  }

 private:
  void report(Finding f) {
    ++s_.problems[static_cast<std::size_t>(f.check)];
    sink_(f);
  }

  void latest_snapshots() {
    stream(c_, "ds_verify_latest", latest_snapshots_sql, {format_day(today_)}, o_.fetch_rows, [this](const PgResult& r, int i) {
      LatestSnapshot s;
      s.snapshot = Sums{r.int64(i, 3), r.int64(i, 4), r.int64(i, 5), r.int64(i, 6)};
      s.written_by_pipeline = r.text(i, 7) == "t";
      s.posts_changed_since = r.text(i, 8) == "t";
      s.live = Sums{r.int64(i, 9), r.int64(i, 10), r.int64(i, 11), r.int64(i, 12)};
      switch (judge_snapshot(s)) {
        case SnapshotVerdict::not_ours: ++s_.snapshots_not_ours; return;
        case SnapshotVerdict::changed_since: ++s_.snapshots_changed_since; return;
        case SnapshotVerdict::mismatch:
          report(snapshot_sums_finding(account(r, i, 0, 1), day(r, i, 2), s.snapshot, s.live));
          break;
        case SnapshotVerdict::ok: break;
      }
      ++s_.snapshots_checked;
    });
  }

  void future_snapshots() {
    stream(c_, "ds_verify_future", future_snapshots_sql, {format_day(today_)}, o_.fetch_rows,
           [this](const PgResult& r, int i) {
             report(future_snapshot_finding(account(r, i, 0, 1), day(r, i, 2), today_));
           });
  }

  void duplicate_snapshots() {
    stream(c_, "ds_verify_duplicates", duplicate_snapshots_sql, {}, o_.fetch_rows, [this](const PgResult& r, int i) {
      report(duplicate_snapshot_finding(account(r, i, 0, 1), day(r, i, 2), r.int64(i, 3)));
    });
  }

  void untracked_posts() {
    stream(c_, "ds_verify_untracked", s_.untracked_posts_by_key ? null_did_posts_sql : untracked_posts_sql, {},
           o_.fetch_rows, [this](const PgResult& r, int i) {
             report(untracked_post_finding(r.text(i, 0), r.optional_text(i, 1)));
           });
  }

  void shared_handles() {
    s_.handles = c_.exec("SELECT count(*) FROM users").int64(0, 0);
    std::string key;
    std::vector<Account> holders;
    auto flush = [&] {
      if (holders.size() > 1) report(shared_handle_finding(key, holders));
      holders.clear();
    };
    stream(c_, "ds_verify_handles", shared_handles_sql, {}, o_.fetch_rows, [&](const PgResult& r, int i) {
      if (r.text(i, 0) != key) {
        flush();
        key = std::string(r.text(i, 0));
      }
      holders.push_back(account(r, i, 1, 2));
    });
    flush();
  }

  void stale_runs() {
    stream(c_, "ds_verify_runs", in_progress_runs_sql, {probe_time_}, o_.fetch_rows, [this](const PgResult& r, int i) {
      ++s_.runs_in_progress;
      if (r.text(i, 3) != "t") {
        ++s_.runs_too_recent;  // started after the probe: its lock state there says nothing
        return;
      }
      const auto shard = r.optional_text(i, 1);
      const std::int64_t key = shard_lock_key(ds_load_lock_key, shard);
      if (!held_.count(key)) report(stale_run_finding(r.int64(i, 0), shard, r.text(i, 2), key));
    });
  }

  void stale_accounts() {
    std::vector<RunDay> runs;
    const PgResult rd = c_.exec(run_days_sql, {format_day(today_)});
    for (int i = 0; i < rd.rows(); ++i) {
      RunDay d{day(rd, i, 0), std::nullopt};
      if (const auto label = rd.optional_text(i, 1)) {
        d.shard = parse_shard(*label);
        if (!d.shard) {
          spdlog::warn("run log shard label '{}' is not K/N: its runs are left out of the stale-account check", *label);
          continue;
        }
      }
      runs.push_back(d);
    }
    s_.run_days = static_cast<std::int64_t>(runs.size());
    const auto bound = earliest_covering_day(runs, o_.stale_days);
    if (!bound) return;
    Day latest = runs.front().day;
    for (const auto& r : runs) latest = std::max(latest, r.day);
    const std::vector<PgParam> params{format_day(*bound), format_day(*bound - o_.active_days), format_day(latest)};
    stream(c_, "ds_verify_selection", selection_sql, params, o_.fetch_rows, [&](const PgResult& r, int i) {
      const std::string did(r.text(i, 0));
      const auto days = covering_days(runs, did, o_.stale_days);
      if (days.size() < static_cast<std::size_t>(o_.stale_days)) return;  // not enough run days yet
      ++s_.accounts_judged;
      const auto snapshots = parse_day_array(r.text(i, 2));
      const auto views = parse_day_array(r.text(i, 3));
      if (!selected_without_snapshot(days, views, snapshots, o_.active_days)) return;
      std::vector<Day> ascending(days.rbegin(), days.rend());
      const std::optional<Day> last = r.is_null(i, 4) ? std::nullopt : std::optional<Day>(day(r, i, 4));
      report(stale_account_finding(account(r, i, 0, 1), ascending, last));
    });
  }

  PgConnection& c_;
  const Options& o_;
  const Sink& sink_;
  Summary s_;
  std::string probe_time_;
  std::set<std::int64_t> held_;
  Day today_ = 0;
};

}  // namespace

std::int64_t Summary::total() const {
  std::int64_t n = 0;
  for (const auto v : problems) n += v;
  return n;
}

Summary verify(PgConnection& c, const Options& o, const Sink& sink) { return Verifier(c, o, sink).run(); }

std::string summary_text(const Summary& s) {
  std::string out = "ds-verify: ";
  if (s.total() == 0) {
    out += "no problems";
  } else {
    out += std::to_string(s.total()) + (s.total() == 1 ? " problem (" : " problems (");
    bool first = true;
    for (const Check c : all_checks) {
      const auto n = s.problems[static_cast<std::size_t>(c)];
      if (n == 0) continue;
      out += (first ? "" : ", ") + std::string(to_string(c)) + " " + std::to_string(n);
      first = false;
    }
    out += ")";
  }
  out += "; compared " + std::to_string(s.snapshots_checked) + " latest snapshots with their posts (skipped " +
         std::to_string(s.snapshots_not_ours) + " not written by this pipeline, " +
         std::to_string(s.snapshots_changed_since) + " whose posts were written after them), " +
         std::to_string(s.handles) + " handles, " + std::to_string(s.runs_in_progress) + " in_progress runs";
  if (s.runs_too_recent) out += " (" + std::to_string(s.runs_too_recent) + " just started)";
  out += ", " + std::to_string(s.accounts_judged) + " accounts over their last run days";
  if (s.duplicate_snapshots_by_index) out += "; duplicate snapshots ruled out by the unique index";
  if (s.untracked_posts_by_key) out += "; posts.did has its foreign key (only NULL dids checked)";
  char elapsed[32];
  std::snprintf(elapsed, sizeof elapsed, "; %.2f s", s.elapsed_s);
  return out + elapsed;
}

std::string summary_json(const Summary& s) {
  std::string out;
  JsonWriter w(out);
  w.begin_object().field("type", "summary").field("problems", s.total());
  w.key("by_check").begin_object();
  for (const Check c : all_checks) w.field(to_string(c), s.problems[static_cast<std::size_t>(c)]);
  w.end_object();
  w.field("snapshots_checked", s.snapshots_checked).field("snapshots_not_ours", s.snapshots_not_ours);
  w.field("snapshots_changed_since", s.snapshots_changed_since).field("handles", s.handles);
  w.field("runs_in_progress", s.runs_in_progress).field("runs_too_recent", s.runs_too_recent);
  w.field("accounts_judged", s.accounts_judged);
  w.field("duplicate_snapshots_by_index", s.duplicate_snapshots_by_index);
  w.field("untracked_posts_by_key", s.untracked_posts_by_key);
  w.key("elapsed_s").number(s.elapsed_s);
  w.end_object();
  return out;
}

}  // namespace ds::verify
