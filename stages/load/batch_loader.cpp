// The batch and its transaction: records staged as they come, the flush and the commit they lead
// to, the commit sent without waiting and its answers taken later, and the rollback of a failed batch.
#include "batch_loader.hpp"

#include <cstdint>

#include <spdlog/spdlog.h>

#include "batch_internal.hpp"
#include "post_fingerprint.hpp"

namespace ds::load {
namespace {

// Column limit of the original schema (varchar(n) counts characters).
constexpr std::size_t max_uri_chars = 500;

// Staging tables live for the session and are emptied by every commit. ds_load_posts is only used
// when new posts cannot go straight into posts (see insert_new_posts).
constexpr const char* create_staging_sql = R"SQL(
CREATE TEMP TABLE ds_load_posts (
  seq bigint, uri text, did text, likes integer, replies integer, quotes integer, reposts integer,
  created_at timestamptz, sort_at timestamptz, fp bigint, uri_fp bigint) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE ds_load_changed (
  uri text, likes integer, replies integer, quotes integer, reposts integer,
  created_at timestamptz, sort_at timestamptz, fp bigint, uri_fp bigint, values_changed boolean, tid tid)
  ON COMMIT DELETE ROWS;
CREATE TEMP TABLE ds_load_snapshots (
  seq bigint, did text, date date, followers integer, following integer, posts integer,
  likes integer, replies integer, quotes integer, reposts integer) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE ds_load_users (
  did text, handle text, display_name text, avatar text) ON COMMIT DELETE ROWS;
)SQL";

}  // namespace

void BatchLoader::prepare() {
  // Session settings, before the first temp table is touched (temp_buffers is fixed from then on).
  // synchronous_commit off: a batch's COMMIT returns without waiting for its WAL flush. A crash can
  // then lose the last few batches (at most ~3 x wal_writer_delay), each atomically, as if ds-load had
  // stopped there: the run row is still in_progress (the next run marks it failed) and a rerun
  // redoes them, which is what the open batch costs anyway. The run's final status is written with
  // synchronous_commit on (Run::write_run_row), and that flush makes every earlier batch durable
  // first, so a run recorded completed never lost a batch.
  // temp_buffers/work_mem: a batch's staging rows and sorts stay in memory.
  // jit off: these statements are short and run once per batch; compiling them never pays.
  db_.exec("SET synchronous_commit = off; SET temp_buffers = '64MB'; SET work_mem = '64MB'; SET jit = off");
  db_.exec(create_staging_sql);
  // The window reads run on a connection of their own, in a second server process: with one
  // connection the server did a batch's reads and the previous batch's writes one after the other,
  // and that was most of a daily run (docs/performance-load.md). It only reads.
  DbParams params = reader_params_;
  for (auto& [key, value] : params.keywords)
    if (key == "application_name") value = "dopplersky-reader";
  try {
    reader_ = std::make_unique<PgConnection>(params);
  } catch (const PgError& e) {
    throw PgError(std::string("cannot open ds-load's second connection (for reading): ") + e.what(), e.sqlstate,
                  e.connection_lost);
  }
  // The reads are planned at each execution, never from a cached generic plan: one cached while
  // a backfill's table is empty scans the whole table for every later read (the backfill went
  // quadratic in the benchmark). Planning a read costs a few milliseconds.
  reader_->exec("SET default_transaction_read_only = on; SET jit = off");
}

bool BatchLoader::needs_analyze(std::int64_t& analyzed, std::int64_t rows) {
  if (rows <= 0) return false;
  if (analyzed > 0 && rows <= 2 * analyzed && 2 * rows >= analyzed) return false;
  analyzed = rows;
  return true;
}

double BatchLoader::batch_age_s() const { return open_ ? monotonic_seconds() - started_ : 0; }

void BatchLoader::begin_if_needed(std::uint64_t seq) {
  last_line_ = seq;
  if (open_) return;
  open_ = true;
  started_ = monotonic_seconds();
  pending_ = 0;
  first_line_ = seq;
}

void BatchLoader::ensure_transaction() {
  // Not at the batch's first record: the previous batch's commit may still be running, and the
  // window reads before the first write see the same rows outside a transaction (each statement
  // takes its own snapshot either way, at READ COMMITTED).
  finish_commit();
  if (in_transaction_) return;
  db_.exec("BEGIN");
  in_transaction_ = true;
}

void BatchLoader::copy_rows(const char* copy_sql, std::string& rows) {
  if (rows.empty()) return;
  ensure_transaction();  // staging tables empty at each commit
  db_.copy_begin(copy_sql);
  db_.copy_send(rows);
  db_.copy_end();
  rows.clear();
}

std::uint32_t BatchLoader::account_of(const std::string& did) {
  // A user's posts come together: most lookups are for the account of the previous line.
  if (!accounts_.empty() && accounts_[last_account_] == did) return last_account_;
  const auto [it, fresh] = account_ids_.try_emplace(did, static_cast<std::uint32_t>(accounts_.size()));
  if (fresh) {
    accounts_.push_back(did);
    window_asked_.emplace_back();
    window_want_.emplace_back();
  }
  return last_account_ = it->second;
}

void BatchLoader::add_post(const PostRecord& p, std::uint64_t seq) {
  begin_if_needed(seq);
  ++pending_;
  if (p.uri.size() > max_uri_chars && count_chars(p.uri) > max_uri_chars) {  // chars <= bytes
    // One such row would fail the whole batch's INSERT; the column cannot hold it.
    spdlog::warn("post {} skipped: its URI is longer than {} characters", p.uri.substr(0, 80), max_uri_chars);
    ++stats_.posts_skipped;
    return;
  }
  StagedPost s;
  s.uri_offset = static_cast<std::uint32_t>(uris_.size());
  s.uri_size = static_cast<std::uint32_t>(p.uri.size());
  uris_ += p.uri;
  s.account = account_of(p.did);
  s.likes = clamp_count(p.likes);
  s.replies = clamp_count(p.replies);
  s.quotes = clamp_count(p.quotes);
  s.reposts = clamp_count(p.reposts);
  s.created_at = p.created_at;
  s.sort_at = p.sort_at;
  s.fp = post_fingerprint({p.uri, p.did, s.likes, s.replies, s.quotes, s.reposts, s.created_at, s.sort_at});
  s.uri_fp = uri_fingerprint(p.uri);
  posts_.push_back(s);
  if ((window_inflight_ || commit_inflight_) && ++records_since_poll_ % 256 == 0) poll();
  if (posts_.size() >= max_buffered_posts_) flush_posts();
}

void BatchLoader::add_user(const UserRecord& u, std::uint64_t seq) {
  begin_if_needed(seq);
  ++pending_;
  ++stats_.users_seen;
  // Every user record ends its posts' run of lines, complete or not.
  feeds_.push_back(FeedRow{account_of(u.did), u.feed.status == FeedStatus::complete, u.since,
                           u.backfill_cursor.has_value(),
                           u.feed.status == FeedStatus::partial ? u.feed.cursor : std::nullopt, u.as_of,
                           u.feed.status == FeedStatus::complete && u.feed.path == "feed" &&
                               restarts_refresh_clock(u.feed.reason)});
  request_window(feeds_.back().account, u.since);
  stage_profile(u, seq);
}

void BatchLoader::finish_commit() {
  while (commit_inflight_) take_commit_result(PgResult(PQgetResult(db_.get())));
}

void BatchLoader::take_commit_result(PgResult r) {
  if (!r.get()) {
    commit_inflight_ = false;
    commit_done();
    return;
  }
  const auto status = PQresultStatus(r.get());
  if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
    sent_.answers.push_back(std::move(r));
    return;
  }
  // The transaction is aborted and the commit's later statements were skipped.
  commit_inflight_ = false;
  throw_error(db_.get(), r.get(), "COMMIT", "writing " + sent_.lines());
}

void BatchLoader::commit_done() {
  const auto& a = sent_.answers;
  const std::size_t expected = (sent_.changed >= 0 ? 2 : 0) + (sent_.users ? 2 : 0) + (sent_.snapshots ? 2 : 0) + 1;
  if (a.size() != expected)
    throw PgError("the commit of " + sent_.lines() + " answered " + std::to_string(a.size()) + " results, not " +
                      std::to_string(expected),
                  "", false);
  std::size_t k = 0;
  if (sent_.changed >= 0) {
    count_changed(sent_.changed, a[k], a[k + 1]);
    k += 2;
  }
  if (sent_.users) {
    count_users(a[k], a[k + 1]);
    k += 2;
  }
  if (sent_.snapshots) count_snapshots(a[k], a[k + 1]);
  written_sent_.clear();
  ++stats_.batches;
  spdlog::debug("batch {} committed: {} records ({}) in {:.3f} s", stats_.batches, sent_.records, sent_.lines(),
                monotonic_seconds() - sent_.started);
  sent_ = SentCommit{};
}

void BatchLoader::commit() {
  if (!open_) return;
  // Posts first, then profiles and snapshots (their order does not matter to each other). What
  // needs the client (comparing, staging by COPY) happens here; the statements that only work
  // from the staging tables, and the COMMIT, go out as one query string without waiting: the
  // server runs them while the next batch's records are parsed.
  flush_posts(true);
  ensure_transaction();
  sent_ = SentCommit{};
  sent_.records = pending_;
  sent_.first_line = first_line_;
  sent_.last_line = last_line_;
  sent_.started = started_;
  std::string sql;
  defer_changed_updates(sql);
  if (!users_.empty()) stage_users(sql);
  if (batch_snapshots_ > 0) stage_snapshots(sql);
  sql += "COMMIT";
  if (!PQsendQuery(db_.get(), sql.c_str())) throw_error(db_.get(), nullptr, "COMMIT");
  commit_inflight_ = true;
  written_sent_ = std::move(written_open_);
  written_open_.clear();
  in_transaction_ = false;
  changed_staged_ = false;
  deferred_changed_ = -1;
  open_ = false;
  carried_committed_ = carried_;
  spdlog::debug("batch of lines {}-{} sent for commit, {} window reads sent ahead", first_line_, last_line_,
                reads_ahead_);
  reads_ahead_ = 0;
  clear_batch();
}

void BatchLoader::sync() {
  finish_window();
  finish_commit();
}

void BatchLoader::clear_batch() {
  clear_flush();
  snapshot_rows_.clear();
  batch_snapshots_ = 0;
  users_.clear();
  pending_ = 0;
}

void BatchLoader::rollback() noexcept {
  clear_batch();
  carried_ = carried_committed_;
  // Statistics taken inside the rolled-back transaction are gone with it.
  analyzed_users_ = analyzed_snapshots_ = analyzed_fallback_ = 0;
  const bool was_in_transaction = in_transaction_;
  open_ = false;
  in_transaction_ = false;
  changed_staged_ = false;
  deferred_changed_ = -1;
  written_open_.clear();
  // A window read in flight is of no use any more: drain it so the reading connection stays usable.
  if (PGconn* r = reader_ ? reader_->get() : nullptr; r && PQstatus(r) == CONNECTION_OK && window_inflight_)
    while (PGresult* res = PQgetResult(r)) PQclear(res);
  window_inflight_ = false;
  PGconn* c = db_.get();
  if (!c || PQstatus(c) != CONNECTION_OK) {
    commit_inflight_ = false;
    written_sent_.clear();
    return;
  }
  // A commit already sent belongs to the previous batch, which stays: let it finish (and count it).
  if (commit_inflight_) {
    try {
      finish_commit();
    } catch (const std::exception& e) {
      spdlog::debug("the last commit failed during the rollback: {}", e.what());
    }
  }
  commit_inflight_ = false;
  written_sent_.clear();
  // A COPY cut short by an error leaves the connection in COPY IN state: end it with an error
  // so the server aborts the statement, then drain its results.
  while (PGresult* r = PQgetResult(c)) {
    const auto st = PQresultStatus(r);
    PQclear(r);
    if (st == PGRES_COPY_IN) PQputCopyEnd(c, "aborted by ds-load");
  }
  if (was_in_transaction || PQtransactionStatus(c) != PQTRANS_IDLE) {
    try {
      db_.exec("ROLLBACK");
    } catch (const std::exception& e) {
      spdlog::debug("rollback failed: {}", e.what());
    }
  }
}

}  // namespace ds::load
