// What BatchLoader's files share: COPY rows and array literals as text, binary result values,
// failed statements in PgConnection's wording, and the shape of the merges' and orphan queries' answers.
#pragma once
#include <climits>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ds/clock.hpp"
#include "ds/pg.hpp"

namespace ds::load {

// COPY text is sent to the server in chunks of this size, so memory does not grow with a batch.
constexpr std::size_t copy_flush_bytes = 1 << 20;

// The count columns are INTEGER; the API's counts are not bounded.
std::int32_t clamp_count(std::int64_t v);

void append_int(std::string& row, std::int64_t v);
inline void append_field(std::string& row, std::string_view v) { PgConnection::append_copy_field(row, v); }

// One element of a PostgreSQL array literal, quoted: the values are data, never SQL.
void append_array_element(std::string& out, std::string_view v);
std::string close_array(std::string out);

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

std::int64_t affected_rows(const PgResult& r);

// Adds one statement to a query string of several (what a commit sends without waiting).
inline void append_statement(std::string& sql, const char* statement) {
  sql += statement;
  sql += ";\n";
}

// Throws a failed statement's error with the same wording as PgConnection's: callers and operators
// look for "lost the connection". `context`, when given, ends the message (which lines it was writing).
[[noreturn]] void throw_error(PGconn* c, const PGresult* r, const char* sql, const std::string& context = "");

// A statement whose rows come back in binary: integers and timestamps need no parsing.
PgResult exec_binary(PgConnection& db, const char* sql, const std::vector<PgParam>& params);

// Binary values: network byte order.
std::int64_t be64_at(const char* p);
std::int32_t be32_at(const char* p);
// A row version (ctid) as one number, block << 16 | line, from its binary form: a 4-byte block
// number, then a 2-byte line number. Sorts as the tids do.
std::uint64_t tid_at(const char* p);

// The end of a merge of staged lines into a table aliased ALIAS, and its answer. The merge names
// its parts src (the batch's lines, one per key), known (those of accounts in users) and up (the
// upsert, writing only rows that differ); xmax = 0 tells an inserted row from an updated one.
// Answers the lines, the known lines, the rows inserted and the rows updated (count_merge).
#define DS_MERGE_ANSWER(ALIAS)                     \
  "  RETURNING (" ALIAS ".xmax = 0) AS inserted\n" \
  ")\n"                                            \
  "SELECT (SELECT count(*) FROM src),\n"           \
  "       (SELECT count(*) FROM known),\n"         \
  "       count(*) FILTER (WHERE inserted),\n"     \
  "       count(*) FILTER (WHERE NOT inserted)\n"  \
  "  FROM up\n"

// Adds a merge's answer (DS_MERGE_ANSWER) to the counts of rows inserted, updated and left
// unchanged. False when some lines were of accounts not in users (skipped).
bool count_merge(const PgResult& merged, std::int64_t& inserted, std::int64_t& updated, std::int64_t& unchanged);

// A staging table's lines of accounts not in users, per account. Usually no rows. The snapshots'
// query is sent with their merge: the staging table is emptied by the COMMIT that follows them.
#define DS_ORPHANS_OF(TABLE)                                        \
  "\nSELECT t.did, count(*) FROM " TABLE " t\n"                     \
  " WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.did = t.did)\n" \
  " GROUP BY t.did ORDER BY t.did\n"
inline constexpr const char* orphan_posts_sql = DS_ORPHANS_OF("ds_load_posts");
inline constexpr const char* orphan_snapshots_sql = DS_ORPHANS_OF("ds_load_snapshots");
#undef DS_ORPHANS_OF

// Adds an orphan query's counts to `skipped`, with a warning naming each account and `what` it lost.
void skip_orphans(const PgResult& orphans, std::int64_t& skipped, const char* what);

}  // namespace ds::load
