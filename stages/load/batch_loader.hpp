// The database side of ds-load: a batch's posts are compared with the fingerprints of the stored rows
// of the same accounts (read on a second connection) and only what differs is written. One transaction per batch.
#pragma once
#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ds/pg.hpp"
#include "ds/records.hpp"
#include "load.hpp"

namespace ds::load {

class BatchLoader {
 public:
  // `db` takes every write; `params` open a second, read-only connection for the window reads.
  BatchLoader(PgConnection& db, DbParams params, LoadStats& stats, std::size_t max_buffered_posts = 100'000)
      : db_(db), reader_params_(std::move(params)), stats_(stats),
        max_buffered_posts_(std::max<std::size_t>(max_buffered_posts, 1)) {}

  // Session settings and staging tables (once, outside any transaction), and the reading connection.
  void prepare();

  // Stage one record; the first record of a batch opens it (its transaction begins before its first
  // write). `seq` orders records (the input line number) so the last occurrence of a duplicate wins.
  void add_post(const PostRecord& p, std::uint64_t seq);
  void add_user(const UserRecord& u, std::uint64_t seq);
  void add_snapshot(const SnapshotRecord& s, std::uint64_t seq);

  bool open() const { return open_; }
  std::int64_t pending_records() const { return pending_; }
  double batch_age_s() const;  // since the batch's first record

  // Writes the staged batch and commits it. No-op when no batch is open. The batch's last
  // statements and its COMMIT are sent without waiting for them: the next batch's records are read
  // meanwhile, and an error in them is thrown by a later call (naming the batch's lines).
  void commit();
  // Waits for the last commit to complete (before the connection is used for anything else).
  void sync();
  // Drops the open batch: aborts a COPY in progress and rolls back; a commit already sent completes.
  // Best effort, never throws.
  void rollback() noexcept;

 private:
  // A post line of the batch. URIs live in one buffer (uris_), accounts are interned (accounts_):
  // no allocation per post.
  struct StagedPost {
    std::uint32_t uri_offset = 0, uri_size = 0;
    std::uint32_t account = 0;
    std::int32_t likes = 0, replies = 0, quotes = 0, reposts = 0;  // clamped to INTEGER
    Micros created_at = 0, sort_at = 0;
    std::int64_t fp = 0;      // post_fingerprint of the row it would be stored as
    std::int64_t uri_fp = 0;  // uri_fingerprint
  };
  // What a user record says about its feed: deletion marking and the backfill marker need it.
  struct FeedRow {
    std::uint32_t account;
    bool complete;
    std::optional<Micros> since;
    // A progressive backfill (docs/request-economy.md): `resumed` when the record carried a
    // backfillCursor; `cursor` set when the feed is `partial` (where the next run continues).
    bool resumed = false;
    std::optional<std::string> cursor;
    Micros as_of = 0;
    // A complete window feed taken for a reason of the account's own (ds::restarts_refresh_clock):
    // its full-refresh clock restarts at as_of's date.
    bool restarts_clock = false;
  };
  struct UserRow {
    std::uint64_t seq;
    std::string did;
    std::optional<std::string> handle;  // nullopt: keep the stored handle
    std::optional<std::string> display_name;
    std::optional<std::string> avatar;
  };

  void begin_if_needed(std::uint64_t seq);
  void ensure_transaction();  // BEGIN, once a batch writes
  std::uint32_t account_of(const std::string& did);
  std::string_view uri_of(const StagedPost& p) const { return {uris_.data() + p.uri_offset, p.uri_size}; }
  // Whether a staging table holding `rows` rows needs fresh statistics; records the new size if so.
  static bool needs_analyze(std::int64_t& analyzed, std::int64_t rows);
  void copy_rows(const char* copy_sql, std::string& rows);
  // Compares the buffered posts and feed outcomes with the stored rows and writes the difference;
  // the transaction stays open. Empties the buffers. With `defer_updates`, changed posts are left
  // staged for the commit's deferred statements (changed_sql) instead of being updated here.
  void flush_posts(bool defer_updates = false);
  // Appends the changed-post UPDATEs a flush_posts(true) left staged to the commit's `sql`, if any.
  void defer_changed_updates(std::string& sql);
  // Counts what the two changed-post UPDATEs (update_changed_by_tid_sql, update_changed_sql) did.
  void count_changed(std::int64_t staged, const PgResult& by_tid, const PgResult& by_uri);
  void insert_new_posts(const std::vector<std::uint32_t>& rows);
  // Reading an account's stored window while the rest of the batch is parsed: requested at its
  // user record, sent for a group of accounts without waiting on the reading connection (one
  // query in flight there), collected when done (polled between records) or at the flush. The
  // writing connection meanwhile runs the previous batch's commit.
  void request_window(std::uint32_t account, std::optional<Micros> since);
  // Sends a group of at least `min_accounts` accounts pending with the same window start, if any.
  bool send_window(std::size_t min_accounts);
  void poll();         // takes what either connection has answered, without waiting
  void finish_window();  // waits for the window read in flight, if any
  void finish_commit();  // waits for the commit in flight, if any: before any other statement
  void take_window_result(PgResult r);
  void take_commit_result(PgResult r);
  void commit_done();  // the deferred commit's answers are all in
  void clear_windows();
  void clear_flush();  // the buffers a flush works from (posts, feeds, accounts, windows)
  // Profiles and snapshots: staged by COPY, then written by statements of the deferred commit,
  // which stage_users and stage_snapshots append to the commit's `sql`.
  void stage_profile(const UserRecord& u, std::uint64_t seq);  // a user record's profile, if fetched
  void stage_users(std::string& sql);
  void stage_snapshots(std::string& sql);
  void count_users(const PgResult& displaced, const PgResult& applied);
  void count_snapshots(const PgResult& merged, const PgResult& orphans);
  void clear_batch();

  PgConnection& db_;
  DbParams reader_params_;
  std::unique_ptr<PgConnection> reader_;
  LoadStats& stats_;
  // Posts held in memory at most: beyond this they are compared and written inside the open
  // transaction (a flush), so memory stays bounded whatever the batch size or one account's
  // backfill. Each costs ~50 bytes plus its URI, and about as much again for its stored row.
  std::size_t max_buffered_posts_;
  bool open_ = false;
  std::int64_t pending_ = 0;
  double started_ = 0;
  // Buffered posts and feed outcomes (since the last flush).
  std::vector<std::string> accounts_;
  std::unordered_map<std::string, std::uint32_t> account_ids_;
  std::uint32_t last_account_ = 0;
  std::string uris_;
  std::vector<StagedPost> posts_;
  std::vector<FeedRow> feeds_;
  // Window reads of this flush. window_asked_[a]: whether account a's window was sent, how wide,
  // and which entry of window_reads_ holds it; window_want_[a]: the widest window it needs so far.
  struct WindowAsked {
    bool requested = false;
    std::optional<Micros> since;
    std::uint32_t read = 0;
  };
  // What a window read returned: each stored row's version (ctid, as block << 16 | line) and
  // fingerprints (of its values, and of its URI). Rows are matched to the flush's posts by the
  // first, paired with changed posts by the second; `matched` marks those accounted for.
  struct WindowRow {
    std::int64_t fp, uri_fp;
    std::uint64_t tid;
    bool has_fp, has_uri_fp, matched;
  };
  // Open-addressing tables over `rows` (fingerprints are already uniformly spread): slot = index
  // + 1, 0 empty. Cheaper than sorting each read to search it.
  struct WindowRead {
    std::vector<WindowRow> rows;
    std::vector<std::uint32_t> by_fp, by_uri_fp;
    WindowRow* find(std::int64_t fp) { return lookup(by_fp, fp, &WindowRow::has_fp, &WindowRow::fp); }  // these values
    WindowRow* find_uri(std::int64_t uri_fp) {  // this URI
      return lookup(by_uri_fp, uri_fp, &WindowRow::has_uri_fp, &WindowRow::uri_fp);
    }
    // An unmatched row whose `value` (when it `has` one) is `key`, through `slots`.
    WindowRow* lookup(const std::vector<std::uint32_t>& slots, std::int64_t key, bool WindowRow::*has,
                      std::int64_t WindowRow::*value);
  };
  static WindowRead parse_window(const PgResult& r);
  // Reads the windows of `accounts`, all starting at `since`, on the writing connection, waiting.
  WindowRead read_window(const std::vector<std::uint32_t>& accounts, std::optional<Micros> since);
  std::vector<WindowAsked> window_asked_;
  std::vector<std::optional<Micros>> window_want_;
  std::vector<WindowRead> window_reads_;
  // Accounts whose window is not sent yet, by window start: a read covers one start.
  struct WindowGroup {
    std::optional<Micros> since;
    std::vector<std::uint32_t> accounts;
  };
  std::vector<WindowGroup> window_pending_;
  bool window_inflight_ = false, commit_inflight_ = false;
  bool in_transaction_ = false;
  // Accounts whose rows this batch has written, and those the commit in flight wrote: the reading
  // connection would see them as they were before, so their windows are read at the flush, on the
  // writing connection, after that commit has answered.
  std::unordered_set<std::string> written_open_, written_sent_;
  // The commit in flight: what its answers are counted against, and the answers so far.
  struct SentCommit {
    std::int64_t changed = -1;  // changed posts staged (-1: none, no UPDATE statements)
    bool users = false, snapshots = false;
    std::int64_t records = 0;
    std::uint64_t first_line = 0, last_line = 0;
    double started = 0;
    std::vector<PgResult> answers;
    std::string lines() const {
      return "the batch of lines " + std::to_string(first_line) + "-" + std::to_string(last_line);
    }
  };
  SentCommit sent_;
  std::int64_t deferred_changed_ = -1;  // set by flush_posts(true)
  bool changed_staged_ = false;         // ds_load_changed holds rows in this transaction
  std::uint64_t first_line_ = 0, last_line_ = 0;  // of the open batch
  std::uint32_t records_since_poll_ = 0;
  std::int64_t reads_ahead_ = 0;  // in this batch, for the debug log
  // COPY text rows of the batch's snapshots, sent when they grow past a threshold and at commit.
  std::string snapshot_rows_;
  std::int64_t batch_snapshots_ = 0;
  std::vector<UserRow> users_;  // profile updates of this batch (one per user record at most)
  // URIs returned for an account whose user record has not arrived yet (normally none: a user's
  // posts come right before its record), kept until it does, across flushes and commits, so that
  // deletion marking and the backfill count see all of them. `carried_committed_` is the state
  // as of the last commit, restored by a rollback.
  std::map<std::string, std::vector<std::string>> carried_, carried_committed_;
  // Rows each staging table held when last analyzed (0: never).
  std::int64_t analyzed_users_ = 0, analyzed_snapshots_ = 0, analyzed_fallback_ = 0;
};

}  // namespace ds::load
