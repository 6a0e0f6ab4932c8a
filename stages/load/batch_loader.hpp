// The database side of ds-load: records are staged in temporary tables by COPY and each batch is
// merged into posts, users, ds_user_state and snapshots by a few set-based statements, one transaction.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ds/pg.hpp"
#include "ds/records.hpp"
#include "load.hpp"

namespace ds::load {

class BatchLoader {
 public:
  BatchLoader(PgConnection& db, LoadStats& stats) : db_(db), stats_(stats) {}

  // Creates this session's staging tables (once, outside any transaction).
  void prepare();

  // Stage one record; the first record of a batch opens its transaction. `seq` orders records
  // (the input line number) so the last occurrence of a duplicate wins.
  void add_post(const PostRecord& p, std::uint64_t seq);
  void add_user(const UserRecord& u, std::uint64_t seq);
  void add_snapshot(const SnapshotRecord& s, std::uint64_t seq);

  bool open() const { return open_; }
  std::int64_t pending_records() const { return pending_; }
  double batch_age_s() const;  // since the batch's first record

  // Merges the staged batch and commits it. No-op when no batch is open.
  void commit();
  // Drops the open batch: aborts a COPY in progress and rolls back. Best effort, never throws.
  void rollback() noexcept;

 private:
  struct UserRow {
    std::uint64_t seq;
    std::string did;
    std::optional<std::string> handle;  // nullopt: keep the stored handle
    std::optional<std::string> display_name;
    std::optional<std::string> avatar;
  };

  void begin_if_needed();
  // Whether a staging table holding `rows` rows needs fresh statistics; records the new size if so.
  static bool needs_analyze(std::int64_t& analyzed, std::int64_t rows);
  void copy_rows(const char* copy_sql, std::string& rows);
  void merge_posts();
  void apply_feed_outcomes();
  void update_users();
  void merge_snapshots();

  PgConnection& db_;
  LoadStats& stats_;
  bool open_ = false;
  std::int64_t pending_ = 0;
  double started_ = 0;
  // COPY text rows waiting to be sent; sent whenever they grow past a threshold and at commit.
  std::string post_rows_, snapshot_rows_, feed_rows_;
  bool batch_has_posts_ = false, batch_has_snapshots_ = false, batch_has_feeds_ = false;
  std::int64_t batch_posts_ = 0, batch_feeds_ = 0, batch_snapshots_ = 0;  // rows staged in this batch
  // Rows each staging table held when last analyzed (0: never).
  std::int64_t analyzed_posts_ = 0, analyzed_feeds_ = 0, analyzed_users_ = 0, analyzed_snapshots_ = 0;
  std::vector<UserRow> users_;  // profile updates of this batch (one per user record at most)
  // Rows in ds_load_returned as of the last commit, and as the open batch leaves it: the DELETE
  // that forgets them runs only when there is something to forget.
  std::int64_t carried_ = 0, batch_carried_ = 0;
};

}  // namespace ds::load
