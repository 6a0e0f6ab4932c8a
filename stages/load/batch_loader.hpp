// The database side of ds-load: a batch's posts are compared in memory with the stored rows of the
// same accounts and only what differs is written; users and snapshots go through temp tables. One transaction per batch.
#pragma once
#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ds/pg.hpp"
#include "ds/records.hpp"
#include "load.hpp"

namespace ds::load {

class BatchLoader {
 public:
  BatchLoader(PgConnection& db, LoadStats& stats, std::size_t max_buffered_posts = 100'000)
      : db_(db), stats_(stats), max_buffered_posts_(std::max<std::size_t>(max_buffered_posts, 1)) {}

  // Session settings and staging tables (once, outside any transaction).
  void prepare();

  // Stage one record; the first record of a batch opens its transaction. `seq` orders records
  // (the input line number) so the last occurrence of a duplicate wins.
  void add_post(const PostRecord& p, std::uint64_t seq);
  void add_user(const UserRecord& u, std::uint64_t seq);
  void add_snapshot(const SnapshotRecord& s, std::uint64_t seq);

  bool open() const { return open_; }
  std::int64_t pending_records() const { return pending_; }
  double batch_age_s() const;  // since the batch's first record

  // Writes the staged batch and commits it. No-op when no batch is open.
  void commit();
  // Drops the open batch: aborts a COPY in progress and rolls back. Best effort, never throws.
  void rollback() noexcept;

 private:
  // A post line of the batch. URIs live in one buffer (uris_), accounts are interned (accounts_):
  // no allocation per post.
  struct StagedPost {
    std::uint32_t uri_offset = 0, uri_size = 0;
    std::uint32_t account = 0;
    std::int32_t likes = 0, replies = 0, quotes = 0, reposts = 0;  // clamped to INTEGER
    Micros created_at = 0, sort_at = 0;
    std::int64_t fp = 0;  // post_fingerprint of the row it would be stored as
  };
  // What a user record says about its feed: deletion marking and the backfill marker need it.
  struct FeedRow {
    std::uint32_t account;
    bool complete;
    std::optional<Micros> since;
  };
  struct UserRow {
    std::uint64_t seq;
    std::string did;
    std::optional<std::string> handle;  // nullopt: keep the stored handle
    std::optional<std::string> display_name;
    std::optional<std::string> avatar;
  };

  void begin_if_needed();
  std::uint32_t account_of(const std::string& did);
  std::string_view uri_of(const StagedPost& p) const { return {uris_.data() + p.uri_offset, p.uri_size}; }
  // Whether a staging table holding `rows` rows needs fresh statistics; records the new size if so.
  static bool needs_analyze(std::int64_t& analyzed, std::int64_t rows);
  void copy_rows(const char* copy_sql, std::string& rows);
  // Compares the buffered posts and feed outcomes with the stored rows and writes the difference;
  // the transaction stays open. Empties the buffers.
  void flush_posts();
  void insert_new_posts(const std::vector<std::uint32_t>& rows);
  // Reading an account's stored window while the rest of the batch is parsed: requested at its
  // user record, sent for a group of accounts without waiting (one query in flight on the
  // connection), collected when done (polled between records) or at the flush.
  void request_window(std::uint32_t account, std::optional<Micros> since);
  void send_window();  // a group of accounts pending with the same window start, if one is full
  void poll_window();
  void drain_window();  // waits for the query in flight, if any: before any other statement
  void clear_windows();
  void update_users();
  void merge_snapshots();
  void clear_batch();

  PgConnection& db_;
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
  // fingerprint. Rows are matched to the flush's posts by fingerprint; `matched` marks those found.
  struct WindowRow {
    std::int64_t fp;
    std::uint64_t tid;
    bool matched;
  };
  struct WindowRead {
    std::vector<WindowRow> fingerprinted;        // sorted by fp
    std::vector<std::uint64_t> unfingerprinted;  // tids of rows without one (or marked deleted)
  };
  static WindowRead parse_window(const PgResult& r);
  std::vector<WindowAsked> window_asked_;
  std::vector<std::optional<Micros>> window_want_;
  std::vector<WindowRead> window_reads_;
  // Accounts whose window is not sent yet, by window start: a read covers one start.
  struct WindowGroup {
    std::optional<Micros> since;
    std::vector<std::uint32_t> accounts;
  };
  std::vector<WindowGroup> window_pending_;
  bool window_inflight_ = false;
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
