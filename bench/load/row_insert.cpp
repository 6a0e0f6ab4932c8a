// The one-statement-per-row baseline for bench/load/run.sh: what the original program did for each
// post (an upsert in its own transaction), over one connection, reading the rows of gen-stream.sh --format tsv.
//
//   row-insert CONNINFO < posts.tsv     # prints the number of rows written to stdout
//
// Built by run.sh with the system compiler and libpq; not part of the CMake build.
#include <libpq-fe.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

namespace {

// The same statement the original issued per post, with parameters: insert a new post, or update
// its counts when they changed (the WHERE keeps unchanged rows untouched, as ds-load does).
constexpr const char* upsert_sql = R"SQL(
INSERT INTO posts AS p (uri, did, likes, replies, quotes, reposts, "createdAt", sort_at)
VALUES ($1, $2, $3::int, $4::int, $5::int, $6::int, $7::timestamptz, $8::timestamptz)
ON CONFLICT (uri) DO UPDATE
   SET likes = EXCLUDED.likes, replies = EXCLUDED.replies, quotes = EXCLUDED.quotes,
       reposts = EXCLUDED.reposts, "updatedAt" = now()
 WHERE (p.likes, p.replies, p.quotes, p.reposts) IS DISTINCT FROM
       (EXCLUDED.likes, EXCLUDED.replies, EXCLUDED.quotes, EXCLUDED.reposts)
)SQL";

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: row-insert CONNINFO < posts.tsv\n");
    return 2;
  }
  PGconn* c = PQconnectdb(argv[1]);
  if (PQstatus(c) != CONNECTION_OK) {
    std::fprintf(stderr, "row-insert: %s", PQerrorMessage(c));
    return 1;
  }
  PGresult* prep = PQprepare(c, "upsert", upsert_sql, 8, nullptr);
  if (PQresultStatus(prep) != PGRES_COMMAND_OK) {
    std::fprintf(stderr, "row-insert: %s", PQerrorMessage(c));
    return 1;
  }
  PQclear(prep);
  std::string line;
  std::vector<std::string> fields;
  long rows = 0;
  while (std::getline(std::cin, line)) {
    fields.clear();
    std::size_t start = 0;
    for (;;) {
      const std::size_t tab = line.find('\t', start);
      fields.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
      if (tab == std::string::npos) break;
      start = tab + 1;
    }
    if (fields.size() != 8) {
      std::fprintf(stderr, "row-insert: line %ld has %zu fields, want 8\n", rows + 1, fields.size());
      return 1;
    }
    const char* values[8];
    for (int i = 0; i < 8; ++i) values[i] = fields[i].c_str();
    PGresult* r = PQexecPrepared(c, "upsert", 8, values, nullptr, nullptr, 0);  // autocommit
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      std::fprintf(stderr, "row-insert: line %ld: %s", rows + 1, PQerrorMessage(c));
      return 1;
    }
    PQclear(r);
    ++rows;
  }
  PQfinish(c);
  std::printf("%ld\n", rows);
  return 0;
}
