// The helpers BatchLoader's files share (batch_internal.hpp): text for COPY and array literals,
// binary values of query results, and errors worded as PgConnection words them.
#include "batch_internal.hpp"

#include <endian.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include <spdlog/spdlog.h>

namespace ds::load {

std::int32_t clamp_count(std::int64_t v) { return static_cast<std::int32_t>(std::clamp<std::int64_t>(v, 0, INT_MAX)); }

void append_int(std::string& row, std::int64_t v) {
  char buf[24];
  const auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
  row.append(buf, static_cast<std::size_t>(end - buf));
}

void append_array_element(std::string& out, std::string_view v) {
  out += out.empty() ? "{\"" : ",\"";
  for (const char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}
std::string close_array(std::string out) { return out.empty() ? "{}" : out + "}"; }

std::int64_t affected_rows(const PgResult& r) {
  const char* n = PQcmdTuples(r.get());
  return (n && *n) ? std::strtoll(n, nullptr, 10) : 0;
}

[[noreturn]] void throw_error(PGconn* c, const PGresult* r, const char* sql, const std::string& context) {
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

PgResult exec_binary(PgConnection& db, const char* sql, const std::vector<PgParam>& params) {
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  PgResult r(PQexecParams(db.get(), sql, static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                          nullptr, 1));
  if (r.get() && PQresultStatus(r.get()) == PGRES_TUPLES_OK) return r;
  throw_error(db.get(), r.get(), sql);
}

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

std::uint64_t tid_at(const char* p) {
  std::uint16_t line;
  std::memcpy(&line, p + 4, 2);
  return (std::uint64_t{static_cast<std::uint32_t>(be32_at(p))} << 16) | be16toh(line);
}

bool count_merge(const PgResult& merged, std::int64_t& inserted, std::int64_t& updated, std::int64_t& unchanged) {
  const std::int64_t lines = merged.int64(0, 0), known = merged.int64(0, 1), added = merged.int64(0, 2),
                     changed = merged.int64(0, 3);
  inserted += added;
  updated += changed;
  unchanged += known - added - changed;
  return known == lines;
}

void skip_orphans(const PgResult& orphans, std::int64_t& skipped, const char* what) {
  for (int i = 0; i < orphans.rows(); ++i) {
    const std::int64_t n = orphans.int64(i, 1);
    skipped += n;
    spdlog::warn("{} {}(s) of {} skipped: the account is not in users", n, what, orphans.text(i, 0));
  }
}

}  // namespace ds::load
