// Inserting a flush's new posts: COPY straight into posts, or, when a row written meanwhile by
// someone else collides with one, an ON CONFLICT merge of the same rows from a staging table.
#include <cstdint>

#include <spdlog/spdlog.h>

#include "batch_internal.hpp"
#include "batch_loader.hpp"

namespace ds::load {
namespace {

constexpr const char* copy_posts_sql =
    "COPY ds_load_posts (seq, uri, did, likes, replies, quotes, reposts, created_at, sort_at, fp, uri_fp) FROM STDIN";
// New posts go straight into the table, the way psql \copy would: COPY inserts pages of rows at a
// time, where an INSERT ... SELECT inserts (and logs) them one by one. "updatedAt" takes its default.
constexpr const char* copy_new_posts_sql =
    R"(COPY posts (uri, did, likes, replies, quotes, reposts, "createdAt", sort_at, load_fp, load_uri_fp) FROM STDIN)";

// Fallback for new posts when the direct COPY meets a row it did not expect (another writer
// inserted the same URI, or removed the account, after the comparison): the batch's new rows are
// merged with ON CONFLICT instead. The last occurrence of each URI wins; xmax = 0 tells an inserted
// row from an updated one. A row whose only difference is its fingerprint counts as updated here
// (this path is rare; the main one counts those as unchanged).
constexpr const char* merge_posts_sql = R"SQL(
WITH src AS (
  SELECT DISTINCT ON (t.uri) t.uri, t.did, t.likes, t.replies, t.quotes, t.reposts, t.created_at, t.sort_at, t.fp,
         t.uri_fp
    FROM ds_load_posts t
   ORDER BY t.uri, t.seq DESC
), known AS (
  SELECT s.* FROM src s WHERE EXISTS (SELECT 1 FROM users u WHERE u.did = s.did)
), todo AS (
  SELECT k.* FROM known k
   WHERE (SELECT (q.likes, q.replies, q.quotes, q.reposts, q."createdAt", q.sort_at, q.deleted_at IS NOT NULL, q.load_fp,
                  q.load_uri_fp)
            FROM posts q WHERE q.uri = k.uri)
         IS DISTINCT FROM (k.likes, k.replies, k.quotes, k.reposts, k.created_at, k.sort_at, false, k.fp, k.uri_fp)
), up AS (
  INSERT INTO posts AS p (uri, did, likes, replies, quotes, reposts, "createdAt", "updatedAt", sort_at, deleted_at, load_fp,
                          load_uri_fp)
  SELECT uri, did, likes, replies, quotes, reposts, created_at, now(), sort_at, NULL, fp, uri_fp FROM todo
  ON CONFLICT (uri) DO UPDATE
     SET likes = EXCLUDED.likes, replies = EXCLUDED.replies, quotes = EXCLUDED.quotes,
         reposts = EXCLUDED.reposts, "createdAt" = EXCLUDED."createdAt", sort_at = EXCLUDED.sort_at,
         deleted_at = NULL, load_fp = EXCLUDED.load_fp, load_uri_fp = EXCLUDED.load_uri_fp, "updatedAt" = now()
   WHERE (p.likes, p.replies, p.quotes, p.reposts, p."createdAt", p.sort_at, p.deleted_at IS NOT NULL, p.load_fp,
          p.load_uri_fp)
         IS DISTINCT FROM
         (EXCLUDED.likes, EXCLUDED.replies, EXCLUDED.quotes, EXCLUDED.reposts, EXCLUDED."createdAt",
          EXCLUDED.sort_at, false, EXCLUDED.load_fp, EXCLUDED.load_uri_fp)
)SQL" DS_MERGE_ANSWER("p");

constexpr const char* analyze_posts_sql = "ANALYZE ds_load_posts";

}  // namespace

void BatchLoader::insert_new_posts(const std::vector<std::uint32_t>& rows) {
  // A savepoint, so that a COPY failing on a row someone else wrote meanwhile (a duplicate URI,
  // an account deleted) can fall back to the ON CONFLICT merge instead of failing the batch.
  db_.exec("SAVEPOINT ds_load_new_posts");
  // uri, did, then the values: the columns of copy_new_posts_sql, and of copy_posts_sql after seq.
  const auto append_new_post = [this](std::string& row, const StagedPost& p) {
    append_field(row, uri_of(p));
    row += '\t';
    append_field(row, accounts_[p.account]);
    row += '\t';
    append_post_values(row, p);
    row += '\n';
  };
  try {
    copy_streamed(db_, copy_new_posts_sql, rows.size(),
                  [&](std::string& row, std::size_t k) { append_new_post(row, posts_[rows[k]]); });
    db_.exec("RELEASE SAVEPOINT ds_load_new_posts");
    stats_.posts_inserted += static_cast<std::int64_t>(rows.size());
    return;
  } catch (const PgError& e) {
    if (e.connection_lost || (e.sqlstate != "23505" && e.sqlstate != "23503")) throw;
    spdlog::warn("new posts collided with rows written meanwhile ({}); merging them instead", e.what());
  }
  db_.exec("ROLLBACK TO SAVEPOINT ds_load_new_posts");
  copy_streamed(db_, copy_posts_sql, rows.size(), [&](std::string& row, std::size_t k) {
    append_int(row, rows[k]);  // seq: the later occurrence of a URI wins the merge
    row += '\t';
    append_new_post(row, posts_[rows[k]]);
  });
  if (needs_analyze(analyzed_fallback_, static_cast<std::int64_t>(rows.size()))) db_.exec(analyze_posts_sql);
  const PgResult r = db_.exec(merge_posts_sql);
  if (!count_merge(r, stats_.posts_inserted, stats_.posts_updated, stats_.posts_unchanged))
    skip_orphans(db_.exec(orphan_posts_sql), stats_.posts_skipped, "post");
  db_.exec("TRUNCATE ds_load_posts");
  db_.exec("RELEASE SAVEPOINT ds_load_new_posts");
}

}  // namespace ds::load
