// How a batch reaches the tables. Posts: matched by fingerprint with the stored rows of their accounts'
// windows; only the difference is written (new posts by COPY straight into posts, changed ones by ctid).
#include "batch_loader.hpp"

#include <endian.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <charconv>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "ds/clock.hpp"
#include "post_fingerprint.hpp"

namespace ds::load {
namespace {

// COPY text is sent to the server in chunks of this size, so memory does not grow with a batch.
constexpr std::size_t copy_flush_bytes = 1 << 20;

// Column limits of the original schema (varchar(n) counts characters).
constexpr std::size_t max_uri_chars = 500;
constexpr std::size_t max_varchar_chars = 255;

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

constexpr const char* copy_posts_sql =
    "COPY ds_load_posts (seq, uri, did, likes, replies, quotes, reposts, created_at, sort_at, fp, uri_fp) FROM STDIN";
// New posts go straight into the table, the way psql \copy would: COPY inserts pages of rows at a
// time, where an INSERT ... SELECT inserts (and logs) them one by one. "updatedAt" takes its default.
constexpr const char* copy_new_posts_sql =
    R"(COPY posts (uri, did, likes, replies, quotes, reposts, "createdAt", sort_at, load_fp, load_uri_fp) FROM STDIN)";
constexpr const char* copy_changed_sql =
    "COPY ds_load_changed (uri, likes, replies, quotes, reposts, created_at, sort_at, fp, uri_fp, values_changed, tid) "
    "FROM STDIN";
constexpr const char* copy_snapshots_sql =
    "COPY ds_load_snapshots (seq, did, date, followers, following, posts, likes, replies, quotes, reposts) FROM STDIN";
constexpr const char* copy_users_sql = "COPY ds_load_users (did, handle, display_name, avatar) FROM STDIN";

// Which of the flush's accounts are in users ($1: their DIDs; answers their 0-based positions).
constexpr const char* known_accounts_sql = R"SQL(
SELECT f.i - 1 FROM unnest($1::text[]) WITH ORDINALITY AS f(did, i)
 WHERE EXISTS (SELECT 1 FROM users u WHERE u.did = f.did)
)SQL";

// The stored posts of some accounts' refresh window ($1 DIDs, $2 the window start, '-infinity' for
// everything), in binary: each row's fingerprints (of its values, NULL for a row without one or
// marked deleted; of its URI) and its version (ctid), nothing else. A daily run reads every post
// of its windows; sending three fixed-size columns instead of the row's ten halved the server's
// time for it. A post whose values fingerprint is there is unchanged; one whose URI fingerprint is
// there changed, and is updated by that ctid; only the rows neither explains (gone, or without
// fingerprints) are read in full, by ctid (posts_by_tid_sql).
// - One index scan with `did = ANY($1)` reaches every account at once: in the server about 5x
//   cheaper than an index scan per account (a LATERAL join).
// - The accounts of one read share their window start (a run gives every account the same one,
//   or none for a backfill): joining each row to a per-account start cost a third of the read.
// - `sort_at >= $2` bounds that scan on (did, sort_at): a daily run reads each account's last
//   days, not its whole history, which an account with years of posts would otherwise cost daily.
// - Rows from before migration 002 have no sort_at: the second branch finds them by "createdAt"
//   (an index descent per account that finds nothing once they are gone).
constexpr const char* window_posts_sql = R"SQL(
SELECT CASE WHEN q.deleted_at IS NULL THEN q.load_fp END, q.load_uri_fp, q.ctid
  FROM posts q WHERE q.did = ANY ($1::text[]) AND q.sort_at >= $2::timestamptz
UNION ALL
SELECT CASE WHEN q.deleted_at IS NULL THEN q.load_fp END, q.load_uri_fp, q.ctid
  FROM posts q WHERE q.did = ANY ($1::text[]) AND q.sort_at IS NULL AND q."createdAt" >= $2::timestamptz
)SQL";

// Stored rows in full, for comparison by value. By version: the window rows no fingerprint
// matched (changed, deleted, or never fingerprinted), a TID scan. By URI: the few posts of a batch
// that lie outside their account's window (or whose account's user record is not in the flush).
#define DS_STORED_POST_COLUMNS                                                                      \
  "SELECT q.did, q.uri, q.likes, q.replies, q.quotes, q.reposts, q.\"createdAt\", q.sort_at,\n" \
  "       q.deleted_at IS NOT NULL, q.ctid, q.load_fp, q.load_uri_fp\n"
constexpr const char* posts_by_tid_sql = DS_STORED_POST_COLUMNS "  FROM posts q WHERE q.ctid = ANY ($1::tid[])";
constexpr const char* posts_by_uri_sql = DS_STORED_POST_COLUMNS "  FROM posts q WHERE q.uri = ANY ($1::text[])";
#undef DS_STORED_POST_COLUMNS

// Posts whose values (or only fingerprint) differ from the stored row, written from
// ds_load_changed; answers how many rows it wrote and how many of them had other values. The WHERE
// repeats the comparison so that a row another writer changed (or the first update below already
// updated) is not rewritten; a post marked deleted that the API returns again comes back to life.
// Both statements always run, so that a commit can send them without waiting for the first.
#define DS_UPDATE_CHANGED_POSTS(REACH, THEN)                                                              \
  "WITH u AS (\n"                                                                                         \
  "UPDATE posts p SET likes = t.likes, replies = t.replies, quotes = t.quotes, reposts = t.reposts,\n"   \
  "       \"createdAt\" = t.created_at, sort_at = t.sort_at, deleted_at = NULL, load_fp = t.fp,\n"     \
  "       load_uri_fp = t.uri_fp, \"updatedAt\" = now()\n"                                             \
  "  FROM ds_load_changed t\n"                                                                           \
  " WHERE (p.likes, p.replies, p.quotes, p.reposts, p.\"createdAt\", p.sort_at, p.deleted_at IS NOT NULL,\n" \
  "        p.load_fp, p.load_uri_fp)\n"                                                                   \
  "       IS DISTINCT FROM (t.likes, t.replies, t.quotes, t.reposts, t.created_at, t.sort_at, false, t.fp,\n" \
  "                         t.uri_fp)\n"                                                                 \
  REACH                                                                                                   \
  " RETURNING t.uri, t.values_changed)" THEN "\n"                                                         \
  "SELECT count(*), count(*) FILTER (WHERE values_changed) FROM u"

// First by the row version (ctid) the comparison read moments before: a TID scan instead of a
// primary-key descent per row, which made this update a fifth of a daily run's server time.
// p.uri = t.uri guards against a version that is no longer that post. The rows it wrote leave the
// staging table, so the second statement sees only the rest.
constexpr const char* update_changed_by_tid_sql = DS_UPDATE_CHANGED_POSTS(
    "   AND p.ctid = t.tid AND p.uri = t.uri AND p.ctid = ANY (ARRAY(SELECT tid FROM ds_load_changed))\n",
    ", done AS (DELETE FROM ds_load_changed c USING u WHERE c.uri = u.uri)");

// Then by URI: a row another writer updated meanwhile has moved (usually none are left).
// = ANY(ARRAY(...)) reaches posts through its primary key whatever the planner believes about the
// temp table.
constexpr const char* update_changed_sql = DS_UPDATE_CHANGED_POSTS(
    "   AND p.uri = t.uri AND p.uri = ANY (ARRAY(SELECT uri FROM ds_load_changed))\n", "");
#undef DS_UPDATE_CHANGED_POSTS

// Stored live posts of a complete feed's window that the feed no longer returned. A fingerprint
// describes a live row: a deleted one has none (migration 005's trigger would drop it too).
constexpr const char* mark_deleted_sql = R"SQL(
UPDATE posts SET deleted_at = now(), load_fp = NULL, "updatedAt" = now()
 WHERE uri = ANY ($1::text[]) AND deleted_at IS NULL
)SQL";

// The marker that makes the account's next run incremental: set only by a complete backfill, with
// the number of posts the backfill returned.
constexpr const char* mark_backfilled_sql = R"SQL(
INSERT INTO ds_user_state AS s (did, backfilled_at, backfill_posts)
SELECT v.did, now(), v.n FROM unnest($1::text[], $2::integer[]) AS v(did, n)
 WHERE EXISTS (SELECT 1 FROM users u WHERE u.did = v.did)
ON CONFLICT (did) DO UPDATE SET backfilled_at = EXCLUDED.backfilled_at, backfill_posts = EXCLUDED.backfill_posts
)SQL";

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
  RETURNING (p.xmax = 0) AS inserted
)
SELECT (SELECT count(*) FROM src),
       (SELECT count(*) FROM known),
       count(*) FILTER (WHERE inserted),
       count(*) FILTER (WHERE NOT inserted)
  FROM up
)SQL";


constexpr const char* analyze_posts_sql = "ANALYZE ds_load_posts";
constexpr const char* analyze_users_sql = "ANALYZE ds_load_users";
constexpr const char* analyze_snapshots_sql = "ANALYZE ds_load_snapshots";

constexpr const char* orphan_posts_sql = R"SQL(
SELECT t.did, count(*) FROM ds_load_posts t
 WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.did = t.did)
 GROUP BY t.did ORDER BY t.did
)SQL";

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

// The batch's snapshot lines of accounts not in users, per account (sent with the merge: the
// staging table is emptied by the COMMIT that follows them). Usually no rows.
constexpr const char* orphan_snapshots_sql = R"SQL(
SELECT t.did, count(*) FROM ds_load_snapshots t
 WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.did = t.did)
 GROUP BY t.did ORDER BY t.did
)SQL";

// The count columns are INTEGER; the API's counts are not bounded.
std::int32_t clamp_count(std::int64_t v) { return static_cast<std::int32_t>(std::clamp<std::int64_t>(v, 0, INT_MAX)); }

void append_int(std::string& row, std::int64_t v) {
  char buf[24];
  const auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
  row.append(buf, static_cast<std::size_t>(end - buf));
}

void append_field(std::string& row, std::string_view v) { PgConnection::append_copy_field(row, v); }

void append_optional(std::string& row, const std::optional<std::string>& v) {
  if (v) PgConnection::append_copy_field(row, *v);
  else PgConnection::append_copy_null(row);
}

// One element of a PostgreSQL array literal, quoted: the values are data, never SQL.
void append_array_element(std::string& out, std::string_view v) {
  out += out.empty() ? "{\"" : ",\"";
  for (const char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}
std::string close_array(std::string out) { return out.empty() ? "{}" : out + "}"; }

// likes, replies, quotes, reposts, createdAt, sort_at and the two fingerprints of a staged post,
// tab-separated: the part every post COPY row shares.
template <class Post>
void append_post_values(std::string& row, const Post& p) {
  for (const std::int32_t v : {p.likes, p.replies, p.quotes, p.reposts}) {
    append_int(row, v);
    row += '\t';
  }
  row += format_timestamp(p.created_at);
  row += '\t';
  row += format_timestamp(p.sort_at);
  row += '\t';
  append_int(row, p.fp);
  row += '\t';
  append_int(row, p.uri_fp);
}

// A COPY of n rows, row(text, k) appending row k (with its newline), sent in chunks of
// copy_flush_bytes so memory stays bounded whatever n is.
template <class Row>
void copy_streamed(PgConnection& db, const char* copy_sql, std::size_t n, Row row) {
  std::string text;
  db.copy_begin(copy_sql);
  for (std::size_t k = 0; k < n; ++k) {
    row(text, k);
    if (text.size() >= copy_flush_bytes) {
      db.copy_send(text);
      text.clear();
    }
  }
  if (!text.empty()) db.copy_send(text);
  db.copy_end();
}

std::int64_t affected_rows(const PgResult& r) {
  const char* n = PQcmdTuples(r.get());
  return (n && *n) ? std::strtoll(n, nullptr, 10) : 0;
}

// Throws a failed statement's error with the same wording as PgConnection's: callers and operators
// look for "lost the connection". `context`, when given, ends the message (which lines it was writing).
[[noreturn]] void throw_error(PGconn* c, const PGresult* r, const char* sql, const std::string& context = "") {
  const char* sqlstate = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  const bool lost = connection_lost(c, sqlstate ? sqlstate : "");
  std::string what = r ? PQresultErrorMessage(r) : "";
  if (what.empty()) what = PQerrorMessage(c);
  for (auto& ch : what)
    if (ch == '\n' || ch == '\t') ch = ' ';
  while (!what.empty() && what.back() == ' ') what.pop_back();
  std::string stmt(std::string_view(sql).substr(0, 60));
  for (auto& ch : stmt)
    if (ch == '\n') ch = ' ';
  throw PgError((lost ? "lost the connection to PostgreSQL: " : "PostgreSQL error: ") + what + " [in:" + stmt + "...]" +
                    (context.empty() ? "" : " (" + context + ")"),
                sqlstate ? sqlstate : "", lost);
}

// A statement whose rows come back in binary: integers and timestamps need no parsing.
PgResult exec_binary(PgConnection& db, const char* sql, const std::vector<PgParam>& params) {
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  PgResult r(PQexecParams(db.get(), sql, static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                          nullptr, 1));
  if (r.get() && PQresultStatus(r.get()) == PGRES_TUPLES_OK) return r;
  throw_error(db.get(), r.get(), sql);
}

// A group of accounts per window read while parsing: fewer round trips, still early enough to
// overlap the parsing. Whatever is pending at the flush goes out then, however few.
constexpr std::size_t group_size = 64;

// Binary values: network byte order; timestamptz counts microseconds from 2000-01-01.
std::int64_t be64_at(const char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return static_cast<std::int64_t>(be64toh(v));
}
std::int32_t be32_at(const char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return static_cast<std::int32_t>(be32toh(v));
}
constexpr Micros pg_epoch = 946'684'800'000'000;  // 2000-01-01T00:00:00Z in Unix microseconds
Micros pg_timestamp_at(const char* p) {
  const std::int64_t v = be64_at(p);
  if (v == INT64_MAX || v == INT64_MIN) return v;  // +-infinity stay beyond every real time
  return v + pg_epoch;
}

// A stored post, as read back for comparison.
struct StoredPost {
  std::string_view uri;  // points into the query result
  std::uint32_t account;  // the flush's account
  std::int32_t likes, replies, quotes, reposts;  // -1 for NULL
  Micros created_at;
  std::optional<Micros> sort_at;
  bool deleted;
  std::uint64_t tid;  // the row version read (ctid), as tid_at gives it
  std::optional<std::int64_t> fp, uri_fp;  // load_fp, load_uri_fp
  bool matched = false;  // the flush returned this post
};

// A row version (ctid) as one number, block << 16 | line, from its binary form: a 4-byte block
// number, then a 2-byte line number. Sorts as the tids do.
std::uint64_t tid_at(const char* p) {
  std::uint16_t line;
  std::memcpy(&line, p + 4, 2);
  return (std::uint64_t{static_cast<std::uint32_t>(be32_at(p))} << 16) | be16toh(line);
}
// Its text form, (block,line), for COPY rows and array literals.
void append_tid(std::string& out, std::uint64_t tid) {
  out += '(';
  append_int(out, static_cast<std::int64_t>(tid >> 16));
  out += ',';
  append_int(out, static_cast<std::int64_t>(tid & 0xffff));
  out += ')';
}

// The rows of a posts_by_tid_sql / posts_by_uri_sql result. `account_of(did)` gives a row's
// account in the flush (rows come grouped by did, so it is asked once per run of rows); a row
// for which `keep(post)` is false is dropped.
template <class AccountOf, class Keep>
void read_stored(const PgResult& r, AccountOf account_of, Keep keep, std::vector<StoredPost>& out) {
  const PGresult* res = r.get();
  out.reserve(out.size() + static_cast<std::size_t>(r.rows()));
  std::string_view last_did;
  std::uint32_t account = 0;
  for (int i = 0; i < r.rows(); ++i) {
    const auto field = [&](int c) { return PQgetvalue(res, i, c); };
    const auto count = [&](int c) { return PQgetisnull(res, i, c) ? -1 : be32_at(field(c)); };
    const std::string_view did(field(0), static_cast<std::size_t>(PQgetlength(res, i, 0)));
    if (i == 0 || did != last_did) {
      account = account_of(did);
      last_did = did;
    }
    StoredPost s;
    s.account = account;
    s.uri = std::string_view(field(1), static_cast<std::size_t>(PQgetlength(res, i, 1)));
    s.likes = count(2);
    s.replies = count(3);
    s.quotes = count(4);
    s.reposts = count(5);
    s.created_at = pg_timestamp_at(field(6));
    if (!PQgetisnull(res, i, 7)) s.sort_at = pg_timestamp_at(field(7));
    s.deleted = *field(8) != 0;
    s.tid = tid_at(field(9));
    if (!PQgetisnull(res, i, 10)) s.fp = be64_at(field(10));
    if (!PQgetisnull(res, i, 11)) s.uri_fp = be64_at(field(11));
    if (keep(s)) out.push_back(s);
  }
}

// The parameters of window_posts_sql: the accounts' DIDs and their window start.
std::vector<PgParam> window_params(const std::vector<std::uint32_t>& accounts, const std::vector<std::string>& dids,
                                   std::optional<Micros> since) {
  std::string d;
  for (const auto a : accounts) append_array_element(d, dids[a]);
  return {close_array(std::move(d)), since ? format_timestamp(*since) : std::string("-infinity")};
}

// Indices 0..n-1 grouped by key(i) < groups, keeping their order inside a group (a counting
// sort); `start` gets each group's first position, plus the end.
template <class Key>
std::vector<std::uint32_t> group_by(std::size_t n, std::size_t groups, Key key, std::vector<std::uint32_t>& start) {
  start.assign(groups + 1, 0);
  for (std::size_t i = 0; i < n; ++i) ++start[key(i) + 1];
  for (std::size_t g = 0; g < groups; ++g) start[g + 1] += start[g];
  std::vector<std::uint32_t> next(start.begin(), start.end() - 1), out(n);
  for (std::size_t i = 0; i < n; ++i) out[next[key(i)]++] = static_cast<std::uint32_t>(i);
  return out;
}

// Adds `rows[i]` under `key` to an open-addressing table of a power-of-two size.
void table_add(std::vector<std::uint32_t>& slots, std::int64_t key, std::size_t i) {
  const std::size_t mask = slots.size() - 1;
  std::size_t at = static_cast<std::uint64_t>(key) & mask;
  while (slots[at] != 0) at = (at + 1) & mask;
  slots[at] = static_cast<std::uint32_t>(i + 1);
}

}  // namespace

BatchLoader::WindowRead BatchLoader::parse_window(const PgResult& r) {
  WindowRead out;
  const PGresult* res = r.get();
  const auto n = static_cast<std::size_t>(r.rows());
  out.rows.reserve(n);
  std::size_t size = 16;
  while (size < 2 * n) size *= 2;
  out.by_fp.assign(size, 0);
  out.by_uri_fp.assign(size, 0);
  for (int i = 0; i < r.rows(); ++i) {
    WindowRow row{0, 0, tid_at(PQgetvalue(res, i, 2)), !PQgetisnull(res, i, 0), !PQgetisnull(res, i, 1), false};
    if (row.has_fp) {
      row.fp = be64_at(PQgetvalue(res, i, 0));
      table_add(out.by_fp, row.fp, out.rows.size());
    }
    if (row.has_uri_fp) {
      row.uri_fp = be64_at(PQgetvalue(res, i, 1));
      table_add(out.by_uri_fp, row.uri_fp, out.rows.size());
    }
    out.rows.push_back(row);
  }
  return out;
}

// A row matched already is passed over: only a collision gets there, and the search goes on.
BatchLoader::WindowRow* BatchLoader::WindowRead::lookup(const std::vector<std::uint32_t>& slots, std::int64_t key,
                                                        bool WindowRow::*has, std::int64_t WindowRow::*value) {
  const std::size_t mask = slots.size() - 1;
  for (std::size_t at = static_cast<std::uint64_t>(key) & mask; slots[at] != 0; at = (at + 1) & mask) {
    WindowRow& r = rows[slots[at] - 1];
    if (r.*has && r.*value == key && !r.matched) return &r;
  }
  return nullptr;
}

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
  feeds_.push_back(FeedRow{account_of(u.did), u.feed.status == FeedStatus::complete, u.since});
  request_window(feeds_.back().account, u.since);

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

void BatchLoader::flush_posts(bool defer_updates) {
  if (posts_.empty() && feeds_.empty()) return;
  finish_window();
  // The accounts still waiting are read while the writing connection finishes the last commit,
  // begins this batch and answers which accounts are tracked.
  send_window(1);
  ensure_transaction();
  const std::size_t n_accounts = accounts_.size();
  // Everything below works account by account on sorted runs (a counting sort by account, then
  // URIs sorted inside each account), not through hash tables keyed by strings: with a million
  // posts in a daily run, random lookups into big tables were half of ds-load's own CPU time. (The
  // fingerprint tables of step 4a are small arrays of integers, one per read.)

  // 1. Which accounts are tracked: posts of any other are skipped (they could not be stored).
  std::vector<char> known(n_accounts, 0);
  {
    std::string dids;
    for (const auto& a : accounts_) append_array_element(dids, a);
    const PgResult r = exec_binary(db_, known_accounts_sql, {close_array(std::move(dids))});
    for (int i = 0; i < r.rows(); ++i) known[static_cast<std::size_t>(be64_at(PQgetvalue(r.get(), i, 0)))] = 1;
  }

  // 2. The flush's posts by account and URI; of lines with the same URI the last one wins.
  std::vector<std::uint32_t> post_start;
  std::vector<std::uint32_t> by_account =
      group_by(posts_.size(), n_accounts, [&](std::size_t i) { return posts_[i].account; }, post_start);
  std::vector<std::uint32_t> uniq;  // per account: its distinct posts, sorted by URI
  std::vector<std::uint32_t> uniq_start(n_accounts + 1, 0);
  uniq.reserve(posts_.size());
  std::vector<std::uint32_t> orphans;
  for (std::uint32_t a = 0; a < n_accounts; ++a) {
    uniq_start[a] = static_cast<std::uint32_t>(uniq.size());
    const auto first = by_account.begin() + post_start[a], last = by_account.begin() + post_start[a + 1];
    if (first == last) continue;
    if (!known[a]) {
      orphans.push_back(a);
      continue;
    }
    // Feeds come newest first and rkeys are time-ordered, so an account's URIs usually arrive in
    // descending order: reversing them is enough then (not with duplicates, whose order matters).
    const auto uri_less = [&](auto x, auto y) { return uri_of(posts_[x]) < uri_of(posts_[y]); };
    if (std::is_sorted(first, last, [&](auto x, auto y) { return uri_of(posts_[x]) >= uri_of(posts_[y]); }))
      std::reverse(first, last);
    else if (!std::is_sorted(first, last, uri_less))
      std::stable_sort(first, last, uri_less);
    for (auto it = first; it != last; ++it) {
      if (it + 1 != last && uri_of(posts_[*it]) == uri_of(posts_[*(it + 1)])) continue;  // a later line wins
      uniq.push_back(*it);
    }
  }
  uniq_start[n_accounts] = static_cast<std::uint32_t>(uniq.size());
  std::sort(orphans.begin(), orphans.end(), [&](auto x, auto y) { return accounts_[x] < accounts_[y]; });
  for (const auto a : orphans) {
    const std::int64_t n = post_start[a + 1] - post_start[a];
    stats_.posts_skipped += n;
    spdlog::warn("{} post(s) of {} skipped: the account is not in users", n, accounts_[a]);
  }

  // 3. Each tracked account with a user record in the flush: its widest window (no `since`: all
  // its posts), and its feed rows.
  std::vector<char> has_feed(n_accounts, 0);
  std::vector<std::optional<Micros>> window(n_accounts);
  for (const auto& f : feeds_) {
    if (!known[f.account]) continue;
    auto& w = window[f.account];
    if (!has_feed[f.account]) w = f.since;
    else if (w && (!f.since || *f.since < *w)) w = f.since;
    has_feed[f.account] = 1;
  }

  finish_window();
  while (send_window(1)) finish_window();  // other window starts (rare)

  // 4. The stored rows: every stored post of those windows (a deletion check needs them anyway),
  // then, by URI, the few posts found in no window. An account without a `since` has all its
  // posts in its window, so a post of it not found there is new. Most windows were read while
  // the batch's later records were being parsed (request_window); an account whose window was
  // not read, or was read narrower than it now needs (a second user record), is read here.
  {
    std::vector<std::uint32_t> missing;
    for (std::uint32_t a = 0; a < n_accounts; ++a) {
      if (!has_feed[a]) continue;
      const auto& asked = window_asked_[a];
      if (!asked.requested || (asked.since && (!window[a] || *window[a] < *asked.since))) {
        missing.push_back(a);
        window_asked_[a] = {true, window[a], 0};  // its read is numbered below
      }
    }
    // One read per window start (usually one: the run's).
    std::sort(missing.begin(), missing.end(), [&](auto x, auto y) { return window[x] < window[y]; });
    for (auto first = missing.begin(); first != missing.end();) {
      const auto last = std::find_if(first, missing.end(), [&](auto a) { return window[a] != window[*first]; });
      const std::vector<std::uint32_t> same(first, last);
      for (const auto a : same) window_asked_[a].read = static_cast<std::uint32_t>(window_reads_.size());
      window_reads_.push_back(
          parse_window(exec_binary(db_, window_posts_sql, window_params(same, accounts_, window[*first]))));
      first = last;
    }
  }

  // 4a. A post whose values fingerprint is among its window's rows is stored exactly so: unchanged,
  // and that row is accounted for. One whose URI fingerprint is there changed: it is updated by
  // that row's version. Only the rest (new posts, rows without fingerprints, posts found in no
  // window), usually none in a daily run, are compared by value below. Fingerprints cover the URI,
  // so they cannot match another account's row of the same read.
  std::vector<std::uint32_t> fresh, unknown;  // unknown: not in a window, to look up by URI
  struct Changed {
    std::uint32_t post;
    std::uint64_t tid;    // its stored row's version
    bool values_changed;  // false when only its fingerprints are missing or stale
  };
  std::vector<Changed> changed;
  std::vector<char> settled(posts_.size(), 0);
  for (std::uint32_t a = 0; a < n_accounts; ++a) {
    if (!has_feed[a] || uniq_start[a] == uniq_start[a + 1]) continue;
    auto& read = window_reads_[window_asked_[a].read];
    for (std::uint32_t u = uniq_start[a]; u < uniq_start[a + 1]; ++u) {
      const StagedPost& p = posts_[uniq[u]];
      WindowRow* row = read.find(p.fp);
      if (row) {
        ++stats_.posts_unchanged;
      } else {
        // A row without a values fingerprint (or marked deleted) is compared by value below.
        row = read.find_uri(p.uri_fp);
        if (!row || !row->has_fp) continue;
        changed.push_back({uniq[u], row->tid, true});
      }
      row->matched = true;
      settled[uniq[u]] = 1;
    }
  }

  // 4b. The window rows left over (gone, or without fingerprints), read in full by
  // version. An account read twice (its window widened) keeps the rows of its latest read only:
  // `unsettled` remembers which read listed each version.
  std::vector<StoredPost> stored;
  PgResult tid_rows, uri_rows;
  {
    std::vector<std::pair<std::uint64_t, std::uint32_t>> unsettled;  // (tid, read)
    for (std::uint32_t k = 0; k < window_reads_.size(); ++k) {
      for (const auto& r : window_reads_[k].rows)
        if (!r.matched) unsettled.emplace_back(r.tid, k);
    }
    if (!unsettled.empty()) {
      std::sort(unsettled.begin(), unsettled.end());
      std::string tids;
      for (std::size_t i = 0; i < unsettled.size(); ++i) {
        if (i > 0 && unsettled[i].first == unsettled[i - 1].first) continue;
        tids += tids.empty() ? "{\"" : ",\"";
        append_tid(tids, unsettled[i].first);
        tids += '"';
      }
      tid_rows = exec_binary(db_, posts_by_tid_sql, {close_array(std::move(tids))});
      const auto account_by_did = [this](std::string_view did) {
        const auto it = account_ids_.find(std::string(did));
        return it == account_ids_.end() ? std::uint32_t{UINT32_MAX} : it->second;
      };
      read_stored(
          tid_rows, account_by_did,
          [&](const StoredPost& p) {
            const auto a = p.account;
            return a != UINT32_MAX && has_feed[a] &&
                   std::binary_search(unsettled.begin(), unsettled.end(),
                                      std::pair{p.tid, window_asked_[a].read});
          },
          stored);
    }
  }
  std::vector<std::uint32_t> stored_start;
  std::vector<std::uint32_t> stored_by_account =
      group_by(stored.size(), n_accounts, [&](std::size_t i) { return stored[i].account; }, stored_start);
  for (std::uint32_t a = 0; a < n_accounts; ++a) {
    // Read in (did, sort_at) order, which for time-ordered rkeys is usually URI order already.
    const auto first = stored_by_account.begin() + stored_start[a], last = stored_by_account.begin() + stored_start[a + 1];
    const auto less = [&](auto x, auto y) { return stored[x].uri < stored[y].uri; };
    if (!std::is_sorted(first, last, less)) std::sort(first, last, less);
  }

  // 5. Merge each account's remaining posts with those stored rows: new, changed or unchanged.
  const auto classify = [&](std::uint32_t i, const StoredPost& s) {
    const StagedPost& p = posts_[i];
    const bool same = s.likes == p.likes && s.replies == p.replies && s.quotes == p.quotes &&
                      s.reposts == p.reposts && s.created_at == p.created_at && s.sort_at &&
                      *s.sort_at == p.sort_at && !s.deleted;
    if (same && s.fp == p.fp && s.uri_fp == p.uri_fp) {
      ++stats_.posts_unchanged;
    } else {
      changed.push_back({i, s.tid, !same});
    }
  };
  for (std::uint32_t a = 0; a < n_accounts; ++a) {
    std::uint32_t k = stored_start[a];
    const std::uint32_t k_end = stored_start[a + 1];
    for (std::uint32_t u = uniq_start[a]; u < uniq_start[a + 1]; ++u) {
      if (settled[uniq[u]]) continue;
      const std::string_view uri = uri_of(posts_[uniq[u]]);
      while (k < k_end && stored[stored_by_account[k]].uri < uri) ++k;
      if (k < k_end && stored[stored_by_account[k]].uri == uri) {
        StoredPost& s = stored[stored_by_account[k]];
        s.matched = true;
        classify(uniq[u], s);
      } else if (has_feed[a] && !window[a]) {
        fresh.push_back(uniq[u]);
      } else {
        unknown.push_back(uniq[u]);
      }
    }
  }
  if (!unknown.empty()) {
    std::string uris;
    for (const auto i : unknown) append_array_element(uris, uri_of(posts_[i]));
    uri_rows = exec_binary(db_, posts_by_uri_sql, {close_array(std::move(uris))});
    std::vector<StoredPost> found;
    read_stored(
        uri_rows, [](std::string_view) { return std::uint32_t{0}; }, [](const StoredPost&) { return true; }, found);
    std::unordered_map<std::string_view, const StoredPost*> by_uri;
    for (const auto& f : found) by_uri.emplace(f.uri, &f);
    for (const auto i : unknown) {
      const auto it = by_uri.find(uri_of(posts_[i]));
      if (it == by_uri.end()) fresh.push_back(i);
      else classify(i, *it->second);
    }
  }
  if (!fresh.empty()) insert_new_posts(fresh);
  if (!changed.empty()) {
    if (changed_staged_) db_.exec("TRUNCATE ds_load_changed");  // an earlier flush of the batch used it
    changed_staged_ = true;
    copy_streamed(db_, copy_changed_sql, changed.size(), [&](std::string& row, std::size_t c) {
      const StagedPost& p = posts_[changed[c].post];
      append_field(row, uri_of(p));
      row += '\t';
      append_post_values(row, p);
      row += changed[c].values_changed ? "\tt\t" : "\tf\t";
      append_tid(row, changed[c].tid);
      row += '\n';
    });
    if (defer_updates) {
      deferred_changed_ = static_cast<std::int64_t>(changed.size());
    } else {
      const PgResult by_tid = db_.exec(update_changed_by_tid_sql);
      const PgResult by_uri = db_.exec(update_changed_sql);
      count_changed(static_cast<std::int64_t>(changed.size()), by_tid, by_uri);
    }
  }

  // 6. Feed outcomes. A complete feed returned every live post of its window (all posts for a
  // backfill): stored live posts of the window it did not return were deleted on Bluesky.
  // Incomplete feeds prove nothing. Returned posts include those carried from an earlier flush.
  const auto carried_of = [&](std::uint32_t a) -> const std::vector<std::string>* {
    const auto it = carried_.find(accounts_[a]);
    return it == carried_.end() ? nullptr : &it->second;
  };
  const auto in_flush = [&](std::uint32_t a, std::string_view uri) {
    return std::binary_search(uniq.begin() + uniq_start[a], uniq.begin() + uniq_start[a + 1], uri,
                              [&](const auto& x, const auto& y) {
                                if constexpr (std::is_same_v<std::decay_t<decltype(x)>, std::string_view>)
                                  return x < uri_of(posts_[y]);
                                else
                                  return uri_of(posts_[x]) < y;
                              });
  };
  std::string gone;
  for (const auto& f : feeds_) {
    if (!f.complete || !known[f.account]) continue;
    const auto* carried = carried_of(f.account);
    for (std::uint32_t k = stored_start[f.account]; k < stored_start[f.account + 1]; ++k) {
      StoredPost& s = stored[stored_by_account[k]];
      if (s.matched || s.deleted) continue;  // returned, or already marked (also by another record)
      const Micros key = s.sort_at ? *s.sort_at : s.created_at;
      if (f.since && key < *f.since) continue;
      if (carried && std::binary_search(carried->begin(), carried->end(), s.uri)) continue;
      // Returned, though another row took its place in the matching: a URI fingerprint collision.
      if (in_flush(f.account, s.uri)) continue;
      append_array_element(gone, s.uri);
      s.deleted = true;
    }
  }
  if (!gone.empty()) stats_.posts_deleted += affected_rows(db_.exec(mark_deleted_sql, {close_array(std::move(gone))}));

  // The backfill marker, with the number of distinct posts the backfill returned.
  {
    std::string dids, counts;
    std::vector<char> marked(n_accounts, 0);
    for (const auto& f : feeds_) {
      if (!f.complete || f.since || !known[f.account] || marked[f.account]) continue;
      marked[f.account] = 1;
      std::int64_t n = uniq_start[f.account + 1] - uniq_start[f.account];
      if (const auto* carried = carried_of(f.account))
        for (const auto& u : *carried)
          if (!in_flush(f.account, u)) ++n;
      append_array_element(dids, accounts_[f.account]);
      counts += counts.empty() ? "{" : ",";
      append_int(counts, std::min<std::int64_t>(n, INT_MAX));
    }
    if (!dids.empty())
      stats_.backfills_marked += affected_rows(db_.exec(mark_backfilled_sql, {close_array(std::move(dids)), counts + "}"}));
  }

  // Later window reads of these accounts must see what this flush wrote (request_window).
  for (std::uint32_t a = 0; a < n_accounts; ++a)
    if (known[a]) written_open_.insert(accounts_[a]);

  // Carry the URIs of accounts whose user record has not come yet; forget those of accounts whose has.
  for (std::uint32_t a = 0; a < n_accounts; ++a) {
    if (has_feed[a]) {
      carried_.erase(accounts_[a]);
    } else if (known[a] && uniq_start[a] < uniq_start[a + 1]) {
      auto& c = carried_[accounts_[a]];  // kept sorted, for the binary searches above
      for (std::uint32_t u = uniq_start[a]; u < uniq_start[a + 1]; ++u) c.emplace_back(uri_of(posts_[uniq[u]]));
      std::sort(c.begin(), c.end());
      c.erase(std::unique(c.begin(), c.end()), c.end());
    }
  }

  clear_flush();
}

void BatchLoader::clear_flush() {
  posts_.clear();
  feeds_.clear();
  uris_.clear();
  accounts_.clear();
  last_account_ = 0;
  account_ids_.clear();
  clear_windows();
}

void BatchLoader::count_changed(std::int64_t staged, const PgResult& by_tid, const PgResult& by_uri) {
  // Rows written, and of those, rows whose values changed (the rest only got their fingerprint).
  const std::int64_t written = by_tid.int64(0, 0) + by_uri.int64(0, 0);
  const std::int64_t updated = by_tid.int64(0, 1) + by_uri.int64(0, 1);
  stats_.posts_updated += updated;
  // Same values with only a new fingerprint, or changed meanwhile by another writer.
  stats_.posts_unchanged += staged - updated;
  spdlog::debug("{} changed posts written ({} with new values, {} fingerprints only)", written, updated,
                written - updated);
}

void BatchLoader::request_window(std::uint32_t account, std::optional<Micros> since) {
  // Read at the flush instead (flush_posts step 4), once the writes it must see have answered.
  if (written_open_.count(accounts_[account]) || written_sent_.count(accounts_[account])) return;
  auto& want = window_want_[account];
  const bool sent = window_asked_[account].requested;
  auto group = window_pending_.end();
  if (!sent)
    group = std::find_if(window_pending_.begin(), window_pending_.end(), [&](const WindowGroup& g) {
      return std::find(g.accounts.begin(), g.accounts.end(), account) != g.accounts.end();
    });
  const bool first = !sent && group == window_pending_.end();
  if (first) want = since;
  else if (want && (!since || *since < *want)) want = since;
  else return;
  if (!sent) {  // (re)filed with the accounts of the same window start; a widened sent one is read at the flush
    if (group != window_pending_.end()) {
      group->accounts.erase(std::find(group->accounts.begin(), group->accounts.end(), account));
      if (group->accounts.empty()) window_pending_.erase(group);
    }
    auto same = std::find_if(window_pending_.begin(), window_pending_.end(),
                             [&](const WindowGroup& g) { return g.since == want; });
    if (same == window_pending_.end()) same = window_pending_.insert(window_pending_.end(), WindowGroup{want, {}});
    same->accounts.push_back(account);
  }
  if (!window_inflight_) send_window(group_size);
  else if (++records_since_poll_ % 16 == 0) poll();
}

bool BatchLoader::send_window(std::size_t min_accounts) {
  const auto full = std::find_if(window_pending_.begin(), window_pending_.end(),
                                 [&](const WindowGroup& g) { return g.accounts.size() >= min_accounts; });
  if (full == window_pending_.end()) return false;
  const std::vector<PgParam> params = window_params(full->accounts, accounts_, full->since);
  const char* values[2] = {params[0]->c_str(), params[1]->c_str()};
  if (!PQsendQueryParams(reader_->get(), window_posts_sql, 2, nullptr, values, nullptr, nullptr, 1))
    throw_error(reader_->get(), nullptr, window_posts_sql);
  for (const auto a : full->accounts)
    window_asked_[a] = {true, full->since, static_cast<std::uint32_t>(window_reads_.size())};
  ++reads_ahead_;
  window_pending_.erase(full);
  window_inflight_ = true;
  return true;
}

namespace {

// Hands `take` what connection `c` has answered so far for its query in flight, without waiting;
// `take` clears `inflight` at the end of the answers.
template <class Take>
void take_answered(PGconn* c, bool& inflight, const char* sql, Take take) {
  if (!inflight) return;
  if (!PQconsumeInput(c)) {
    inflight = false;
    throw_error(c, nullptr, sql);
  }
  while (inflight && !PQisBusy(c)) take(PgResult(PQgetResult(c)));
}

}  // namespace

void BatchLoader::poll() {
  take_answered(reader_->get(), window_inflight_, window_posts_sql,
                [this](PgResult r) { take_window_result(std::move(r)); });
  take_answered(db_.get(), commit_inflight_, "COMMIT", [this](PgResult r) { take_commit_result(std::move(r)); });
  if (!window_inflight_) send_window(group_size);
}

void BatchLoader::finish_window() {
  while (window_inflight_) take_window_result(PgResult(PQgetResult(reader_->get())));
}

void BatchLoader::finish_commit() {
  while (commit_inflight_) take_commit_result(PgResult(PQgetResult(db_.get())));
}

void BatchLoader::take_window_result(PgResult r) {
  if (!r.get()) {  // the end of the query's answers
    window_inflight_ = false;
    return;
  }
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
    window_inflight_ = false;
    throw_error(reader_->get(), r.get(), window_posts_sql);  // rollback() drains what is left
  }
  window_reads_.push_back(parse_window(r));
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

void BatchLoader::clear_windows() {
  window_asked_.clear();
  window_want_.clear();
  window_reads_.clear();
  window_pending_.clear();
}

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
  const std::int64_t candidates = r.int64(0, 0), known = r.int64(0, 1), inserted = r.int64(0, 2),
                     updated = r.int64(0, 3);
  stats_.posts_inserted += inserted;
  stats_.posts_updated += updated;
  stats_.posts_unchanged += known - inserted - updated;
  if (known != candidates) {
    const PgResult orphans = db_.exec(orphan_posts_sql);
    for (int i = 0; i < orphans.rows(); ++i) {
      stats_.posts_skipped += orphans.int64(i, 1);
      spdlog::warn("{} post(s) of {} skipped: the account is not in users", orphans.int64(i, 1), orphans.text(i, 0));
    }
  }
  db_.exec("TRUNCATE ds_load_posts");
  db_.exec("RELEASE SAVEPOINT ds_load_new_posts");
}

void BatchLoader::stage_users() {
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

void BatchLoader::stage_snapshots() {
  copy_rows(copy_snapshots_sql, snapshot_rows_);
  if (needs_analyze(analyzed_snapshots_, batch_snapshots_)) db_.exec(analyze_snapshots_sql);
}

void BatchLoader::count_snapshots(const PgResult& merged, const PgResult& orphans) {
  const std::int64_t known = merged.int64(0, 1), inserted = merged.int64(0, 2), updated = merged.int64(0, 3);
  stats_.snapshots_inserted += inserted;
  stats_.snapshots_updated += updated;
  stats_.snapshots_unchanged += known - inserted - updated;
  for (int i = 0; i < orphans.rows(); ++i) {
    const std::int64_t n = orphans.int64(i, 1);
    stats_.snapshots_skipped += n;
    spdlog::warn("{} snapshot(s) of {} skipped: the account is not in users", n, orphans.text(i, 0));
  }
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
  const auto add = [&sql](const char* statement) {
    sql += statement;
    sql += ";\n";
  };
  if (deferred_changed_ >= 0) {
    sent_.changed = deferred_changed_;
    add(update_changed_by_tid_sql);
    add(update_changed_sql);
  }
  if (!users_.empty()) {
    stage_users();
    sent_.users = true;
    add(displace_handles_sql);
    add(apply_profiles_sql);
  }
  if (batch_snapshots_ > 0) {
    stage_snapshots();
    sent_.snapshots = true;
    add(merge_snapshots_sql);
    add(orphan_snapshots_sql);
  }
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
