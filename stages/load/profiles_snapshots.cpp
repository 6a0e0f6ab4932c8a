// The profiles and snapshots of a batch: staged by COPY as their records arrive or at the commit,
// then merged into users (handles that move between accounts in two phases) and snapshots.
#include <cstdint>
#include <map>

#include <spdlog/spdlog.h>

#include "batch_internal.hpp"
#include "batch_loader.hpp"

namespace ds::load {
namespace {

// Column limit of the original schema (varchar(n) counts characters).
constexpr std::size_t max_varchar_chars = 255;

constexpr const char* copy_snapshots_sql =
    "COPY ds_load_snapshots (seq, did, date, followers, following, posts, likes, replies, quotes, reposts) FROM STDIN";
constexpr const char* copy_users_sql = "COPY ds_load_users (did, handle, display_name, avatar) FROM STDIN";

constexpr const char* analyze_users_sql = "ANALYZE ds_load_users";
constexpr const char* analyze_snapshots_sql = "ANALYZE ds_load_snapshots";

// Handles are UNIQUE and PostgreSQL checks that per row, so a handle moving between accounts is
// applied in two phases. Phase 1 parks every account holding a handle that another tracked
// account now claims on its own DID (unique, and never a real handle).
constexpr const char* displace_handles_sql = R"SQL(
UPDATE users u SET handle = u.did, updated_at = now()
  FROM ds_load_users t
 WHERE t.handle IS NOT NULL AND u.handle = t.handle AND u.did <> t.did
   AND u.handle = ANY (ARRAY(SELECT handle FROM ds_load_users WHERE handle IS NOT NULL))
   AND EXISTS (SELECT 1 FROM users a WHERE a.did = t.did)
RETURNING u.did, t.handle, t.did,
          EXISTS (SELECT 1 FROM ds_load_users o WHERE o.did = u.did AND o.handle IS NOT NULL)
)SQL";

// Phase 2: the new profile values, only where something differs. In both phases
// = ANY(ARRAY(...)) reaches users through an index: joined by the planner, a batch of a few dozen
// accounts became a sequential scan of every user.
constexpr const char* apply_profiles_sql = R"SQL(
UPDATE users u
   SET handle = COALESCE(t.handle, u.handle), "displayName" = t.display_name, avatar = t.avatar,
       updated_at = now()
  FROM ds_load_users t
 WHERE u.did = t.did AND u.did = ANY (ARRAY(SELECT did FROM ds_load_users))
   AND (u.handle, u."displayName", u.avatar) IS DISTINCT FROM (COALESCE(t.handle, u.handle), t.display_name, t.avatar)
)SQL";

// The batch's snapshots, one per (did, date), the last line winning; answers the counts.
constexpr const char* merge_snapshots_sql = R"SQL(
WITH src AS (
  SELECT DISTINCT ON (t.did, t.date) t.did, t.date, t.followers, t.following, t.posts, t.likes,
         t.replies, t.quotes, t.reposts
    FROM ds_load_snapshots t
   ORDER BY t.did, t.date, t.seq DESC
), known AS (
  SELECT k.* FROM src k WHERE EXISTS (SELECT 1 FROM users u WHERE u.did = k.did)
), state AS (
  -- What ds-select-users carries as lastSnapshot for the request economy: the newest snapshot's
  -- date and postsCount. Snapshots come only from complete fetches (ds-aggregate), and a replay
  -- of an older day never moves it back.
  INSERT INTO ds_user_state AS st (did, last_snapshot_date, last_snapshot_posts)
  SELECT DISTINCT ON (k.did) k.did, k.date, k.posts FROM known k ORDER BY k.did, k.date DESC
  ON CONFLICT (did) DO UPDATE
     SET last_snapshot_date = EXCLUDED.last_snapshot_date, last_snapshot_posts = EXCLUDED.last_snapshot_posts
   WHERE st.last_snapshot_date IS NULL OR st.last_snapshot_date <= EXCLUDED.last_snapshot_date
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
)SQL" DS_MERGE_ANSWER("s");

void append_optional(std::string& row, const std::optional<std::string>& v) {
  if (v) PgConnection::append_copy_field(row, *v);
  else PgConnection::append_copy_null(row);
}

}  // namespace

void BatchLoader::stage_profile(const UserRecord& u, std::uint64_t seq) {
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
  begin_if_needed(seq);
  ++pending_;
  std::string& r = snapshot_rows_;
  r += std::to_string(seq);
  r += '\t';
  append_field(r, s.did);
  r += '\t';
  append_field(r, s.date);
  for (const std::int64_t v : {s.followers, s.following, s.posts, s.likes, s.replies, s.quotes, s.reposts}) {
    r += '\t';
    append_int(r, clamp_count(v));
  }
  r += '\n';
  ++batch_snapshots_;
  if (r.size() >= copy_flush_bytes) copy_rows(copy_snapshots_sql, r);
}

void BatchLoader::stage_users(std::string& sql) {
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
  sent_.users = true;
  append_statement(sql, displace_handles_sql);
  append_statement(sql, apply_profiles_sql);
}

void BatchLoader::count_users(const PgResult& moved, const PgResult& applied) {
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
  stats_.users_updated += affected_rows(applied);
}

void BatchLoader::stage_snapshots(std::string& sql) {
  copy_rows(copy_snapshots_sql, snapshot_rows_);
  if (needs_analyze(analyzed_snapshots_, batch_snapshots_)) db_.exec(analyze_snapshots_sql);
  sent_.snapshots = true;
  append_statement(sql, merge_snapshots_sql);
  append_statement(sql, orphan_snapshots_sql);
}

void BatchLoader::count_snapshots(const PgResult& merged, const PgResult& orphans) {
  count_merge(merged, stats_.snapshots_inserted, stats_.snapshots_updated, stats_.snapshots_unchanged);
  skip_orphans(orphans, stats_.snapshots_skipped, "snapshot");
}

}  // namespace ds::load
