// How a batch reaches the tables: COPY into session temp tables, then one INSERT ... ON CONFLICT or
// UPDATE per table that touches only rows whose values change (DESIGN §5: skipping those is the speed).
#include "batch_loader.hpp"

#include <algorithm>
#include <climits>
#include <map>

#include <spdlog/spdlog.h>

#include "ds/clock.hpp"

namespace ds::load {
namespace {

// Staged rows are sent to the server once this much COPY text is buffered, so memory stays flat
// however many posts a user's backfill brings.
constexpr std::size_t copy_flush_bytes = 1 << 20;

// Column limits of the original schema (varchar(n) counts characters).
constexpr std::size_t max_uri_chars = 500;
constexpr std::size_t max_varchar_chars = 255;

// Staging tables live for the session. All but ds_load_returned are emptied by every commit.
// ds_load_returned carries over a commit the URIs returned for users whose `user` record is not in
// the batch yet (normally none: a user's posts come right before its record, and batches end only
// after a user record), so deletion marking stays right even if a user's posts straddle a commit.
constexpr const char* create_staging_sql = R"SQL(
CREATE TEMP TABLE ds_load_posts (
  seq bigint, uri text, did text, likes integer, replies integer, quotes integer, reposts integer,
  created_at timestamptz, sort_at timestamptz) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE ds_load_snapshots (
  seq bigint, did text, date date, followers integer, following integer, posts integer,
  likes integer, replies integer, quotes integer, reposts integer) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE ds_load_users (
  did text, handle text, display_name text, avatar text) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE ds_load_feeds (did text, complete boolean, since timestamptz) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE ds_load_returned (did text, uri text);
)SQL";

constexpr const char* copy_posts_sql =
    "COPY ds_load_posts (seq, uri, did, likes, replies, quotes, reposts, created_at, sort_at) FROM STDIN";
constexpr const char* copy_snapshots_sql =
    "COPY ds_load_snapshots (seq, did, date, followers, following, posts, likes, replies, quotes, reposts) FROM STDIN";
constexpr const char* copy_users_sql = "COPY ds_load_users (did, handle, display_name, avatar) FROM STDIN";
constexpr const char* copy_feeds_sql = "COPY ds_load_feeds (did, complete, since) FROM STDIN";

constexpr const char* orphan_posts_sql = R"SQL(
SELECT t.did, count(*) FROM ds_load_posts t
 WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.did = t.did)
 GROUP BY t.did ORDER BY t.did
)SQL";

// The last occurrence of each URI in the batch wins. `todo` keeps only rows that are new or differ
// from the stored row (a post marked deleted that the API returns again differs: it comes back to
// life); the check is a plain read. Filtering before the INSERT matters: ON CONFLICT DO UPDATE locks
// every conflicting row before it evaluates its WHERE, which dirties the page and writes WAL for each
// unchanged post, the bulk of a daily run. The ON CONFLICT clause stays as the guard for a row that
// another writer changed or inserted meanwhile. xmax = 0 tells an inserted row from an updated one.
constexpr const char* merge_posts_sql = R"SQL(
WITH src AS (
  SELECT DISTINCT ON (t.uri) t.uri, t.did, t.likes, t.replies, t.quotes, t.reposts, t.created_at, t.sort_at
    FROM ds_load_posts t
   ORDER BY t.uri, t.seq DESC
), known AS (
  SELECT s.* FROM src s WHERE EXISTS (SELECT 1 FROM users u WHERE u.did = s.did)
), todo AS (
  SELECT k.* FROM known k
   WHERE NOT EXISTS (
         SELECT 1 FROM posts q
          WHERE q.uri = k.uri
            AND (q.likes, q.replies, q.quotes, q.reposts, q."createdAt", q.sort_at, q.deleted_at IS NOT NULL)
                IS NOT DISTINCT FROM (k.likes, k.replies, k.quotes, k.reposts, k.created_at, k.sort_at, false))
), up AS (
  INSERT INTO posts AS p (uri, did, likes, replies, quotes, reposts, "createdAt", "updatedAt", sort_at, deleted_at)
  SELECT uri, did, likes, replies, quotes, reposts, created_at, now(), sort_at, NULL FROM todo
  ON CONFLICT (uri) DO UPDATE
     SET likes = EXCLUDED.likes, replies = EXCLUDED.replies, quotes = EXCLUDED.quotes,
         reposts = EXCLUDED.reposts, "createdAt" = EXCLUDED."createdAt", sort_at = EXCLUDED.sort_at,
         deleted_at = NULL, "updatedAt" = now()
   WHERE (p.likes, p.replies, p.quotes, p.reposts, p."createdAt", p.sort_at, p.deleted_at IS NOT NULL)
         IS DISTINCT FROM
         (EXCLUDED.likes, EXCLUDED.replies, EXCLUDED.quotes, EXCLUDED.reposts, EXCLUDED."createdAt",
          EXCLUDED.sort_at, false)
  RETURNING (p.xmax = 0) AS inserted
)
SELECT (SELECT count(*) FROM src),
       (SELECT count(*) FROM known),
       count(*) FILTER (WHERE inserted),
       count(*) FILTER (WHERE NOT inserted)
  FROM up
)SQL";

// Autovacuum never analyzes temp tables: without statistics the planner takes a batch for a few
// rows or for thousands at random, and a wrong guess turns the deletion UPDATE into a scan of posts.
// Statistics outlive ON COMMIT DELETE ROWS and the planner scales the row estimate by the table's
// current size, so a table is analyzed again only when a batch's size moves far from the analyzed one.
constexpr const char* analyze_posts_sql = "ANALYZE ds_load_posts";
constexpr const char* analyze_feeds_sql = "ANALYZE ds_load_feeds";
constexpr const char* analyze_users_sql = "ANALYZE ds_load_users";
constexpr const char* analyze_snapshots_sql = "ANALYZE ds_load_snapshots";

// A complete feed returned every live post of its window (all posts for a backfill): stored live
// posts of the window it did not return were deleted on Bluesky. Incomplete feeds prove nothing.
// The window test is COALESCE(sort_at, "createdAt") >= since (NULL since: everything), spelled so
// that (did, sort_at) can serve it. OFFSET 0 keeps the per-user lookup from being flattened into a
// join the planner may turn into a scan of all posts when its statistics lag a big load, and
// = ANY(ARRAY(...)) makes the final update go through the primary key whatever it estimates.
constexpr const char* mark_deleted_sql = R"SQL(
WITH gone AS (
  SELECT q.uri
    FROM ds_load_feeds f
   CROSS JOIN LATERAL (
         SELECT q.uri FROM posts q
          WHERE q.did = f.did AND q.deleted_at IS NULL
            AND (q.sort_at >= COALESCE(f.since, '-infinity')
                 OR (q.sort_at IS NULL AND q."createdAt" >= COALESCE(f.since, '-infinity')))
         OFFSET 0) q
   WHERE f.complete
     AND NOT EXISTS (SELECT 1 FROM ds_load_posts t WHERE t.uri = q.uri)
     AND NOT EXISTS (SELECT 1 FROM ds_load_returned r WHERE r.uri = q.uri)
)
UPDATE posts p SET deleted_at = now(), "updatedAt" = now()
 WHERE p.uri = ANY (ARRAY(SELECT uri FROM gone)) AND p.deleted_at IS NULL
)SQL";

// The marker that makes the user's next run incremental: set only by a complete backfill, with
// the number of posts the backfill returned (this batch's and any carried over).
constexpr const char* mark_backfilled_sql = R"SQL(
INSERT INTO ds_user_state AS s (did, backfilled_at, backfill_posts)
SELECT f.did, now(), LEAST(count(DISTINCT n.uri), 2147483647)
  FROM (SELECT DISTINCT did FROM ds_load_feeds WHERE complete AND since IS NULL) f
  LEFT JOIN (SELECT did, uri FROM ds_load_posts UNION ALL SELECT did, uri FROM ds_load_returned) n
         ON n.did = f.did
 WHERE EXISTS (SELECT 1 FROM users u WHERE u.did = f.did)
 GROUP BY f.did
ON CONFLICT (did) DO UPDATE SET backfilled_at = EXCLUDED.backfilled_at, backfill_posts = EXCLUDED.backfill_posts
)SQL";

constexpr const char* forget_returned_sql =
    "DELETE FROM ds_load_returned r USING ds_load_feeds f WHERE r.did = f.did";

constexpr const char* carry_returned_sql = R"SQL(
INSERT INTO ds_load_returned (did, uri)
SELECT DISTINCT t.did, t.uri FROM ds_load_posts t
 WHERE NOT EXISTS (SELECT 1 FROM ds_load_feeds f WHERE f.did = t.did)
)SQL";

// Handles are UNIQUE and PostgreSQL checks that per row, so a handle moving between accounts is
// applied in two phases. Phase 1 parks every account holding a handle that another tracked
// account now claims on its own DID (unique, and never a real handle).
constexpr const char* displace_handles_sql = R"SQL(
UPDATE users u SET handle = u.did, updated_at = now()
  FROM ds_load_users t
 WHERE t.handle IS NOT NULL AND u.handle = t.handle AND u.did <> t.did
   AND EXISTS (SELECT 1 FROM users a WHERE a.did = t.did)
RETURNING u.did, t.handle, t.did,
          EXISTS (SELECT 1 FROM ds_load_users o WHERE o.did = u.did AND o.handle IS NOT NULL)
)SQL";

// Phase 2: the new profile values, only where something differs.
constexpr const char* apply_profiles_sql = R"SQL(
UPDATE users u
   SET handle = COALESCE(t.handle, u.handle), "displayName" = t.display_name, avatar = t.avatar,
       updated_at = now()
  FROM ds_load_users t
 WHERE u.did = t.did
   AND (u.handle, u."displayName", u.avatar) IS DISTINCT FROM (COALESCE(t.handle, u.handle), t.display_name, t.avatar)
)SQL";

constexpr const char* orphan_snapshots_sql = R"SQL(
SELECT t.did, count(*) FROM ds_load_snapshots t
 WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.did = t.did)
 GROUP BY t.did ORDER BY t.did
)SQL";

constexpr const char* merge_snapshots_sql = R"SQL(
WITH src AS (
  SELECT DISTINCT ON (t.did, t.date) t.did, t.date, t.followers, t.following, t.posts, t.likes,
         t.replies, t.quotes, t.reposts
    FROM ds_load_snapshots t
   ORDER BY t.did, t.date, t.seq DESC
), known AS (
  SELECT k.* FROM src k WHERE EXISTS (SELECT 1 FROM users u WHERE u.did = k.did)
), up AS (
  INSERT INTO snapshots AS s (did, date, followers, following, posts, likes, replies, quotes, reposts)
  SELECT did, date, followers, following, posts, likes, replies, quotes, reposts FROM known
  ON CONFLICT (did, date) DO UPDATE
     SET followers = EXCLUDED.followers, following = EXCLUDED.following, posts = EXCLUDED.posts,
         likes = EXCLUDED.likes, replies = EXCLUDED.replies, quotes = EXCLUDED.quotes,
         reposts = EXCLUDED.reposts
   WHERE (s.followers, s.following, s.posts, s.likes, s.replies, s.quotes, s.reposts)
         IS DISTINCT FROM
         (EXCLUDED.followers, EXCLUDED.following, EXCLUDED.posts, EXCLUDED.likes, EXCLUDED.replies,
          EXCLUDED.quotes, EXCLUDED.reposts)
  RETURNING (s.xmax = 0) AS inserted
)
SELECT (SELECT count(*) FROM src),
       (SELECT count(*) FROM known),
       count(*) FILTER (WHERE inserted),
       count(*) FILTER (WHERE NOT inserted)
  FROM up
)SQL";

// The count columns are INTEGER; the API's counts are not bounded.
void append_count(std::string& row, std::int64_t v) {
  row += std::to_string(std::clamp<std::int64_t>(v, 0, INT_MAX));
}

void append_field(std::string& row, std::string_view v) { PgConnection::append_copy_field(row, v); }

void append_optional(std::string& row, const std::optional<std::string>& v) {
  if (v) PgConnection::append_copy_field(row, *v);
  else PgConnection::append_copy_null(row);
}

std::int64_t affected_rows(const PgResult& r) {
  const char* n = PQcmdTuples(r.get());
  return (n && *n) ? std::strtoll(n, nullptr, 10) : 0;
}

}  // namespace

void BatchLoader::prepare() {
  // Session settings, before the first temp table is touched (temp_buffers is fixed from then on).
  // synchronous_commit off: a batch's COMMIT returns without waiting for its WAL flush. A crash can
  // then lose the last few batches (at most ~3 x wal_writer_delay), each atomically, as if ds-load had
  // stopped there: the run row is still in_progress (the next run marks it failed) and a rerun
  // redoes them, which is what the open batch costs anyway. The run's final status is written with
  // synchronous_commit on (Run::write_run_row), and that flush makes every earlier batch durable
  // first, so a run recorded completed never lost a batch.
  // temp_buffers/work_mem: a batch's staging rows and its DISTINCT ON sort stay in memory.
  // jit off: these statements are short and run once per batch; compiling them never pays.
  db_.exec("SET synchronous_commit = off; SET temp_buffers = '64MB'; SET work_mem = '64MB'; SET jit = off");
  db_.exec(create_staging_sql);
}

bool BatchLoader::needs_analyze(std::int64_t& analyzed, std::int64_t rows) {
  if (rows <= 0) return false;
  if (analyzed > 0 && rows <= 2 * analyzed && 2 * rows >= analyzed) return false;
  analyzed = rows;
  return true;
}

double BatchLoader::batch_age_s() const { return open_ ? monotonic_seconds() - started_ : 0; }

void BatchLoader::begin_if_needed() {
  if (open_) return;
  db_.exec("BEGIN");
  open_ = true;
  started_ = monotonic_seconds();
  pending_ = 0;
}

void BatchLoader::copy_rows(const char* copy_sql, std::string& rows) {
  if (rows.empty()) return;
  db_.copy_begin(copy_sql);
  db_.copy_send(rows);
  db_.copy_end();
  rows.clear();
}

void BatchLoader::add_post(const PostRecord& p, std::uint64_t seq) {
  begin_if_needed();
  ++pending_;
  if (count_chars(p.uri) > max_uri_chars) {
    // One such row would fail the whole batch's INSERT; the column cannot hold it.
    spdlog::warn("post {} skipped: its URI is longer than {} characters", p.uri.substr(0, 80), max_uri_chars);
    ++stats_.posts_skipped;
    return;
  }
  std::string& r = post_rows_;
  r += std::to_string(seq);
  r += '\t';
  append_field(r, p.uri);
  r += '\t';
  append_field(r, p.did);
  r += '\t';
  append_count(r, p.likes);
  r += '\t';
  append_count(r, p.replies);
  r += '\t';
  append_count(r, p.quotes);
  r += '\t';
  append_count(r, p.reposts);
  r += '\t';
  r += format_timestamp(p.created_at);
  r += '\t';
  r += format_timestamp(p.sort_at);
  r += '\n';
  batch_has_posts_ = true;
  ++batch_posts_;
  if (r.size() >= copy_flush_bytes) copy_rows(copy_posts_sql, r);
}

void BatchLoader::add_user(const UserRecord& u, std::uint64_t seq) {
  begin_if_needed();
  ++pending_;
  ++stats_.users_seen;
  // Every user record ends its posts' run of lines, complete or not: ds_load_returned forgets them.
  std::string& f = feed_rows_;
  append_field(f, u.did);
  f += u.feed.status == FeedStatus::complete ? "\tt\t" : "\tf\t";
  if (u.since) f += format_timestamp(*u.since);
  else PgConnection::append_copy_null(f);
  f += '\n';
  batch_has_feeds_ = true;
  ++batch_feeds_;
  if (f.size() >= copy_flush_bytes) copy_rows(copy_feeds_sql, f);

  if (u.profile_status != ProfileStatus::ok || !u.profile) return;
  UserRow row{seq, u.did, u.profile->handle, u.profile->display_name, u.profile->avatar};
  if (*row.handle == invalid_handle) {
    spdlog::debug("{}: the API reports {}; keeping the stored handle", u.did, invalid_handle);
    row.handle.reset();
  } else if (count_chars(*row.handle) > max_varchar_chars) {
    spdlog::warn("{}: handle longer than {} characters not stored", u.did, max_varchar_chars);
    row.handle.reset();
  }
  if (row.display_name && count_chars(*row.display_name) > max_varchar_chars)
    row.display_name = truncate_chars(*row.display_name, max_varchar_chars);
  users_.push_back(std::move(row));
}

void BatchLoader::add_snapshot(const SnapshotRecord& s, std::uint64_t seq) {
  begin_if_needed();
  ++pending_;
  std::string& r = snapshot_rows_;
  r += std::to_string(seq);
  r += '\t';
  append_field(r, s.did);
  r += '\t';
  append_field(r, s.date);
  for (const std::int64_t v : {s.followers, s.following, s.posts, s.likes, s.replies, s.quotes, s.reposts}) {
    r += '\t';
    append_count(r, v);
  }
  r += '\n';
  batch_has_snapshots_ = true;
  ++batch_snapshots_;
  if (r.size() >= copy_flush_bytes) copy_rows(copy_snapshots_sql, r);
}

void BatchLoader::merge_posts() {
  copy_rows(copy_posts_sql, post_rows_);
  if (needs_analyze(analyzed_posts_, batch_posts_)) db_.exec(analyze_posts_sql);
  const PgResult r = db_.exec(merge_posts_sql);
  const std::int64_t candidates = r.int64(0, 0), known = r.int64(0, 1), inserted = r.int64(0, 2),
                     updated = r.int64(0, 3);
  stats_.posts_inserted += inserted;
  stats_.posts_updated += updated;
  stats_.posts_unchanged += known - inserted - updated;
  if (known == candidates) return;
  // Posts of accounts not in users (rare): one warning per account, counting every staged line.
  const PgResult orphans = db_.exec(orphan_posts_sql);
  for (int i = 0; i < orphans.rows(); ++i) {
    const std::int64_t n = orphans.int64(i, 1);
    stats_.posts_skipped += n;
    spdlog::warn("{} post(s) of {} skipped: the account is not in users", n, orphans.text(i, 0));
  }
}

void BatchLoader::apply_feed_outcomes() {
  copy_rows(copy_feeds_sql, feed_rows_);
  batch_carried_ = carried_;
  if (batch_has_feeds_) {
    if (needs_analyze(analyzed_feeds_, batch_feeds_)) db_.exec(analyze_feeds_sql);
    stats_.posts_deleted += affected_rows(db_.exec(mark_deleted_sql));
    stats_.backfills_marked += affected_rows(db_.exec(mark_backfilled_sql));
    if (batch_carried_ > 0) batch_carried_ -= affected_rows(db_.exec(forget_returned_sql));
  }
  if (batch_has_posts_) batch_carried_ += affected_rows(db_.exec(carry_returned_sql));
}

void BatchLoader::update_users() {
  // One row per account (its last record), and one claimant per handle (the last one): the others
  // keep their stored handle, so the UPDATE never meets two rows wanting the same value.
  std::map<std::string, std::size_t> last_by_did;
  for (std::size_t i = 0; i < users_.size(); ++i) last_by_did[users_[i].did] = i;
  std::map<std::string, std::size_t> claimant;
  for (const auto& [did, i] : last_by_did) {
    auto& u = users_[i];
    if (!u.handle) continue;
    auto [it, fresh] = claimant.emplace(*u.handle, i);
    if (fresh) continue;
    auto& other = users_[it->second];
    auto& loser = other.seq < u.seq ? other : u;
    spdlog::warn("{} and {} both claim handle {} in this run; {} keeps its stored handle",
                 other.did, u.did, *u.handle, loser.did);
    if (&loser == &other) it->second = i;
    loser.handle.reset();
  }
  std::string rows;
  for (const auto& [did, i] : last_by_did) {
    const auto& u = users_[i];
    append_field(rows, u.did);
    rows += '\t';
    append_optional(rows, u.handle);
    rows += '\t';
    append_optional(rows, u.display_name);
    rows += '\t';
    append_optional(rows, u.avatar);
    rows += '\n';
  }
  copy_rows(copy_users_sql, rows);
  if (needs_analyze(analyzed_users_, static_cast<std::int64_t>(last_by_did.size()))) db_.exec(analyze_users_sql);

  const PgResult moved = db_.exec(displace_handles_sql);
  for (int i = 0; i < moved.rows(); ++i) {
    ++stats_.handles_moved;
    const auto from = moved.text(i, 0), handle = moved.text(i, 1), to = moved.text(i, 2);
    if (moved.text(i, 3) == "t")
      spdlog::info("handle {} moved from {} to {}; {} takes its new handle in the same batch", handle,
                   from, to, from);
    else
      spdlog::warn("handle {} moved from {} to {}; {} keeps its DID as handle until its next profile fetch",
                   handle, from, to, from);
  }
  stats_.users_updated += affected_rows(db_.exec(apply_profiles_sql));
}

void BatchLoader::merge_snapshots() {
  copy_rows(copy_snapshots_sql, snapshot_rows_);
  if (needs_analyze(analyzed_snapshots_, batch_snapshots_)) db_.exec(analyze_snapshots_sql);
  const PgResult r = db_.exec(merge_snapshots_sql);
  const std::int64_t candidates = r.int64(0, 0), known = r.int64(0, 1), inserted = r.int64(0, 2),
                     updated = r.int64(0, 3);
  stats_.snapshots_inserted += inserted;
  stats_.snapshots_updated += updated;
  stats_.snapshots_unchanged += known - inserted - updated;
  if (known == candidates) return;
  const PgResult orphans = db_.exec(orphan_snapshots_sql);
  for (int i = 0; i < orphans.rows(); ++i) {
    const std::int64_t n = orphans.int64(i, 1);
    stats_.snapshots_skipped += n;
    spdlog::warn("{} snapshot(s) of {} skipped: the account is not in users", n, orphans.text(i, 0));
  }
}

void BatchLoader::commit() {
  if (!open_) return;
  // Posts first: deletion marking and the backfill marker must see the URIs of this batch.
  if (batch_has_posts_) merge_posts();
  if (batch_has_feeds_ || batch_has_posts_) apply_feed_outcomes();
  if (!users_.empty()) update_users();
  if (batch_has_snapshots_) merge_snapshots();
  db_.exec("COMMIT");
  open_ = false;
  carried_ = batch_carried_;
  ++stats_.batches;
  spdlog::debug("batch {} committed: {} records in {:.3f} s", stats_.batches, pending_,
                monotonic_seconds() - started_);
  pending_ = 0;
  batch_has_posts_ = batch_has_snapshots_ = batch_has_feeds_ = false;
  batch_posts_ = batch_feeds_ = batch_snapshots_ = 0;
  users_.clear();
}

void BatchLoader::rollback() noexcept {
  post_rows_.clear();
  snapshot_rows_.clear();
  feed_rows_.clear();
  users_.clear();
  batch_has_posts_ = batch_has_snapshots_ = batch_has_feeds_ = false;
  batch_posts_ = batch_feeds_ = batch_snapshots_ = 0;
  pending_ = 0;
  const bool was_open = open_;
  open_ = false;
  PGconn* c = db_.get();
  if (!c || PQstatus(c) != CONNECTION_OK) return;
  // A COPY cut short by an error leaves the connection in COPY IN state: end it with an error
  // so the server aborts the statement, then drain its results.
  while (PGresult* r = PQgetResult(c)) {
    const auto st = PQresultStatus(r);
    PQclear(r);
    if (st == PGRES_COPY_IN) PQputCopyEnd(c, "aborted by ds-load");
  }
  if (was_open || PQtransactionStatus(c) != PQTRANS_IDLE) {
    try {
      db_.exec("ROLLBACK");
    } catch (const std::exception& e) {
      spdlog::debug("rollback failed: {}", e.what());
    }
  }
}

}  // namespace ds::load
