// The selection query and record building of ds-select-users: set-based (one statement for all
// users, baselines included), streamed through a cursor, every value passed as a parameter.
#include "select_users.hpp"

#include <algorithm>
#include <string_view>

#include <spdlog/spdlog.h>

#include "ds/migrations.hpp"

namespace ds::select_users {
namespace {

// The whole selection. $1 = active cutoff date, $2 = did list (text[]), $3 = window start.
// The filter is one of the constant fragments below, so each mode gets its own plain plan.
// skip_user rows are read (and counted) but get no baseline work and are never emitted.
// The baseline is a LATERAL aggregate per user, gated on the backfill marker: users without one
// get since = null and all-zero baselines, so their posts are not even read. A backfill in
// progress (backfill_cursor, migration 007) gets a baseline too, below a window that reaches back
// at least to its last run (backfill_covered_to), so no post between two runs is left unfetched. The stored sort key
// is sort_at; rows the original wrote have none and fall back to "createdAt" (docs/design.md,
// posts.sort_at).
constexpr std::string_view select_head = R"SQL(
DECLARE ds_select_users NO SCROLL CURSOR FOR
SELECT u.did, u.handle, u."displayName", u.avatar,
       COALESCE(u.skip_user, false) AS skip,
       s.backfilled_at IS NOT NULL AS backfilled,
       b.posts, b.likes, b.replies, b.quotes, b.reposts,
       s.last_snapshot_date, s.last_snapshot_posts, w.uris, w.n,
       s.backfill_cursor, COALESCE(s.backfill_posts, 0),
       (extract(epoch FROM LEAST($3::timestamptz, s.backfill_covered_to)) * 1000000)::bigint,
       s.refresh_clock_date
  FROM users u
  LEFT JOIN ds_user_state s ON s.did = u.did
  CROSS JOIN LATERAL (
    SELECT count(*) AS posts,
           COALESCE(sum(p.likes), 0) AS likes,
           COALESCE(sum(p.replies), 0) AS replies,
           COALESCE(sum(p.quotes), 0) AS quotes,
           COALESCE(sum(p.reposts), 0) AS reposts
      FROM posts p
     WHERE (s.backfilled_at IS NOT NULL OR s.backfill_cursor IS NOT NULL)
       AND NOT COALESCE(u.skip_user, false)
       AND p.did = u.did
       AND p.deleted_at IS NULL
       AND COALESCE(p.sort_at, p."createdAt") < LEAST($3::timestamptz, s.backfill_covered_to)
  ) b
  CROSS JOIN LATERAL (
    -- The window's stored live posts, newest first, at most $4 of them: ds-fetch-feeds refreshes
    -- a quiet account's window by these URIs when there are fewer than $4 (getPosts' batch);
    -- a longer window is cheaper by feed pages, so its list is not carried. URIs hold no control
    -- bytes (checked on the way in), so a newline separates them.
    SELECT string_agg(x.uri, E'\n' ORDER BY x.k DESC, x.uri) AS uris, count(*) AS n
      FROM (SELECT p.uri, COALESCE(p.sort_at, p."createdAt") AS k
              FROM posts p
             WHERE s.backfilled_at IS NOT NULL
               AND NOT COALESCE(u.skip_user, false)
               AND p.did = u.did
               AND p.deleted_at IS NULL
               AND COALESCE(p.sort_at, p."createdAt") >= $3::timestamptz
             ORDER BY k DESC
             LIMIT $4) x
  ) w
 WHERE )SQL";

// The original's default: `views.date >= CURRENT_DATE - 7 days`, on the run clock's UTC date.
// EXISTS rather than the original's JOIN, so several views rows never duplicate a user.
constexpr std::string_view filter_active =
    "EXISTS (SELECT 1 FROM views v WHERE v.did = u.did AND v.date >= $1::date) AND $2::text[] IS NULL";
constexpr std::string_view filter_all = "$1::date IS NULL AND $2::text[] IS NULL";
constexpr std::string_view filter_dids = "$1::date IS NULL AND u.did = ANY($2::text[])";

constexpr std::string_view select_tail = "\n ORDER BY u.did";

// A PostgreSQL array literal as a parameter value (not SQL): every element double-quoted, with
// its quotes and backslashes escaped, so any text round-trips.
std::string array_literal(const std::vector<std::string>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (const char ch : items[i]) {
      if (ch == '"' || ch == '\\') out += '\\';
      out += ch;
    }
    out += '"';
  }
  out += '}';
  return out;
}

// Warns about requested accounts that will not be emitted, before streaming the rest.
void check_requested(PgConnection& c, const std::string& dids, Counters& k) {
  auto r = c.exec(
      "SELECT d.did, u.did IS NOT NULL, COALESCE(u.skip_user, false)"
      "  FROM unnest($1::text[]) AS d(did) LEFT JOIN users u ON u.did = d.did ORDER BY d.did",
      {dids});
  for (int i = 0; i < r.rows(); ++i) {
    if (r.text(i, 1) != "t") {
      ++k.missing;
      spdlog::warn("--did {}: not in the users table; not selected", r.text(i, 0));
    } else if (r.text(i, 2) == "t") {
      spdlog::info("--did {}: skip_user is set; not selected", r.text(i, 0));
    }
  }
}

}  // namespace

Counters select(PgConnection& c, const Options& o, const Sink& sink) {
  Counters k;
  k.sharded = o.shard.has_value();
  const Micros since = o.as_of - o.window_days * micros_per_day;
  PgParam cutoff;  // NULL unless active
  PgParam did_list;
  std::string_view filter = filter_all;
  if (o.mode == Mode::active) {
    cutoff = format_date(o.as_of - o.active_days * micros_per_day);
    filter = filter_active;
  } else if (o.mode == Mode::dids) {
    std::vector<std::string> dids = o.dids;
    std::sort(dids.begin(), dids.end());
    dids.erase(std::unique(dids.begin(), dids.end()), dids.end());
    // Another shard's accounts are that shard's business: not looked up, not warned about here.
    if (o.shard) {
      const auto theirs = std::remove_if(dids.begin(), dids.end(),
                                         [&](const std::string& d) { return !o.shard->contains(d); });
      k.other_shards += dids.end() - theirs;
      dids.erase(theirs, dids.end());
    }
    did_list = array_literal(dids);
    filter = filter_dids;
  }

  PgTransaction tx(c);
  // One snapshot for the warnings and the whole cursor; nothing here writes.
  c.exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
  // The plan is many small index lookups; JIT-compiling it costs about a second and gains nothing.
  c.exec("SET LOCAL jit = off");
  if (o.mode == Mode::dids) check_requested(c, *did_list, k);

  std::string sql(select_head);
  sql += filter;
  sql += select_tail;
  c.exec(sql, {cutoff, did_list, format_timestamp(since), std::to_string(max_window_uris)});

  const std::string fetch = "FETCH " + std::to_string(std::max(1, o.fetch_rows)) + " FROM ds_select_users";
  UserRecord rec;
  for (;;) {
    PgResult r = c.exec(fetch);
    if (r.rows() == 0) break;
    for (int i = 0; i < r.rows(); ++i) {
      if (o.shard && !o.shard->contains(r.text(i, 0))) {
        ++k.other_shards;
        continue;
      }
      if (r.text(i, 4) == "t") {
        ++k.skipped;
        continue;
      }
      rec = UserRecord{};
      rec.did = std::string(r.text(i, 0));
      rec.handle = r.optional_text(i, 1).value_or("");
      rec.display_name = r.optional_text(i, 2);
      rec.avatar = r.optional_text(i, 3);
      rec.as_of = o.as_of;
      if (!r.is_null(i, 15) && r.text(i, 5) != "t") {
        // A backfill in progress: its window from the later of its last run and the run's own.
        rec.since = r.int64(i, 17);
        rec.backfill_cursor = std::string(r.text(i, 15));
        rec.backfill_posts = r.int64(i, 16);
        rec.baseline = Totals{r.int64(i, 6), r.int64(i, 7), r.int64(i, 8), r.int64(i, 9), r.int64(i, 10)};
        ++k.backfill_resumed;
        k.baseline_posts += rec.baseline.posts;
      } else if (r.text(i, 5) == "t") {
        rec.since = since;
        rec.baseline = Totals{r.int64(i, 6), r.int64(i, 7), r.int64(i, 8), r.int64(i, 9), r.int64(i, 10)};
        ++k.incremental;
        k.baseline_posts += rec.baseline.posts;
        if (!r.is_null(i, 11) && !r.is_null(i, 12))
          rec.last_snapshot = LastSnapshot{std::string(r.text(i, 11)), r.int64(i, 12)};
        rec.refresh_clock = r.optional_text(i, 18);
        if (r.int64(i, 14) < max_window_uris) {
          rec.window_uris.emplace();
          for (std::string_view left = r.is_null(i, 13) ? std::string_view() : r.text(i, 13); !left.empty();) {
            const std::size_t nl = left.find('\n');
            rec.window_uris->emplace_back(left.substr(0, nl));
            left = nl == std::string_view::npos ? std::string_view() : left.substr(nl + 1);
          }
          ++k.window_lists;
        }
      } else {
        ++k.backfill;
      }
      ++k.users;
      sink(rec);
    }
  }
  c.exec("CLOSE ds_select_users");
  tx.commit();
  return k;
}

SelectionRecord selection_record(const Options& o) {
  SelectionRecord s;
  if (o.shard) s.shard = o.shard->label();
  return s;
}

EndRecord end_record(const Counters& k, double elapsed_s) {
  EndRecord e;
  e.stage = "ds-select-users";
  e.set("users", k.users);
  e.set("backfill", k.backfill);
  e.set("backfill_resumed", k.backfill_resumed);
  e.set("incremental", k.incremental);
  e.set("skipped", k.skipped);
  e.set("missing", k.missing);
  e.set("baseline_posts", k.baseline_posts);
  e.set("window_lists", k.window_lists);
  if (k.sharded) e.set("other_shards", k.other_shards);
  e.elapsed_s = elapsed_s;
  return e;
}

std::string schema_problem(PgConnection& c) {
  const auto status = migrate::read_status(c, migrate::embedded_migrations());
  if (status.current()) return {};
  std::string names;
  for (const auto& m : status.pending) names += (names.empty() ? "" : ", ") + m.label();
  return std::to_string(status.pending.size()) + " migration(s) pending (" + names + "); run ds-migrate";
}

}  // namespace ds::select_users
