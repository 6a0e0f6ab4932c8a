// libpq behind RAII: connections, results, parameterised statements, COPY IN, transactions.
// A lost connection is reported as such so callers can tell "the database went away" apart.
#include "ds/pg.hpp"

#include <cstdlib>

#include <spdlog/spdlog.h>

namespace ds {
namespace {

std::string first_line(const char* msg) {
  std::string s = msg ? msg : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  // libpq's messages span lines and indent hints with tabs; a log line must stay one line.
  std::string out;
  for (const char c : s) {
    if (c == '\n' || c == '\t') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

// Server NOTICEs go through spdlog (debug) instead of libpq's default raw stderr print.
void notice_to_log(void*, const char* message) { spdlog::debug("PostgreSQL: {}", first_line(message)); }

}  // namespace

std::string_view PgResult::text(int row, int col) const {
  return std::string_view(PQgetvalue(r_.get(), row, col),
                          static_cast<std::size_t>(PQgetlength(r_.get(), row, col)));
}

std::optional<std::string> PgResult::optional_text(int row, int col) const {
  if (is_null(row, col)) return std::nullopt;
  return std::string(text(row, col));
}

std::int64_t PgResult::int64(int row, int col) const {
  if (is_null(row, col)) return 0;
  return std::strtoll(PQgetvalue(r_.get(), row, col), nullptr, 10);
}

PgConnection::PgConnection(const DbParams& params) : c_(nullptr, &PQfinish) {
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : params.keywords) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  c_.reset(PQconnectdbParams(keys.data(), values.data(), 1));
  if (!c_ || PQstatus(c_.get()) != CONNECTION_OK)
    throw PgError("cannot connect to PostgreSQL [" + params.describe() + "]: " +
                      first_line(c_ ? PQerrorMessage(c_.get()) : "out of memory"),
                  {}, true);
  PQsetNoticeProcessor(c_.get(), &notice_to_log, nullptr);
  // Every timestamp we send or read is UTC; the session must not reinterpret them.
  exec("SET TIME ZONE 'UTC'");
}

bool connection_lost(PGconn* c, std::string_view sqlstate) {
  if (!c || PQstatus(c) != CONNECTION_OK) return true;
  return sqlstate.substr(0, 2) == "08" || sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03";
}

bool PgConnection::ok() const { return c_ && PQstatus(c_.get()) == CONNECTION_OK; }

void PgConnection::check(const PgResult& r, std::string_view sql) {
  const auto st = r.get() ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_COPY_IN) return;
  const char* state = r.get() ? PQresultErrorField(r.get(), PG_DIAG_SQLSTATE) : nullptr;
  const bool lost = connection_lost(c_.get(), state ? state : "");
  std::string what = first_line(r.get() ? PQresultErrorMessage(r.get()) : PQerrorMessage(c_.get()));
  if (what.empty()) what = first_line(PQerrorMessage(c_.get()));
  std::string stmt(sql.substr(0, 60));
  for (auto& c : stmt)
    if (c == '\n') c = ' ';
  throw PgError((lost ? "lost the connection to PostgreSQL: " : "PostgreSQL error: ") + what +
                    " [in: " + stmt + (sql.size() > 60 ? "..." : "") + "]",
                state ? state : "", lost);
}

PgResult PgConnection::exec(std::string_view sql) {
  const std::string s(sql);
  PgResult r(PQexec(c_.get(), s.c_str()));
  check(r, sql);
  return r;
}

PgResult PgConnection::exec(std::string_view sql, const std::vector<PgParam>& params) {
  const std::string s(sql);
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  PgResult r(PQexecParams(c_.get(), s.c_str(), static_cast<int>(values.size()), nullptr,
                          values.data(), nullptr, nullptr, 0));
  check(r, sql);
  return r;
}

void PgConnection::copy_begin(std::string_view copy_sql) {
  const std::string s(copy_sql);
  PgResult r(PQexec(c_.get(), s.c_str()));
  check(r, copy_sql);
  if (PQresultStatus(r.get()) != PGRES_COPY_IN) throw PgError("expected COPY IN state for: " + s);
}

void PgConnection::copy_send(std::string_view data) {
  if (PQputCopyData(c_.get(), data.data(), static_cast<int>(data.size())) != 1)
    throw PgError("COPY failed: " + first_line(PQerrorMessage(c_.get())), {},
                  PQstatus(c_.get()) != CONNECTION_OK);
}

void PgConnection::copy_end() {
  if (PQputCopyEnd(c_.get(), nullptr) != 1)
    throw PgError("COPY failed: " + first_line(PQerrorMessage(c_.get())), {},
                  PQstatus(c_.get()) != CONNECTION_OK);
  // Drain results: the COPY's own, then the terminating null.
  bool failed = false;
  std::string what;
  std::string state;
  while (PGresult* raw = PQgetResult(c_.get())) {
    PgResult r(raw);
    if (PQresultStatus(raw) != PGRES_COMMAND_OK) {
      failed = true;
      what = first_line(PQresultErrorMessage(raw));
      if (const char* s = PQresultErrorField(raw, PG_DIAG_SQLSTATE)) state = s;
    }
  }
  if (failed) {
    const bool lost = connection_lost(c_.get(), state);
    throw PgError((lost ? "lost the connection to PostgreSQL: " : "COPY failed: ") + what, state, lost);
  }
}

void PgConnection::append_copy_field(std::string& row, std::string_view value) {
  for (const char c : value) {
    switch (c) {
      case '\\': row += "\\\\"; break;
      case '\t': row += "\\t"; break;
      case '\n': row += "\\n"; break;
      case '\r': row += "\\r"; break;
      default: row += c;
    }
  }
}

void PgConnection::append_copy_null(std::string& row) { row += "\\N"; }

PgTransaction::PgTransaction(PgConnection& c) : c_(c) { c_.exec("BEGIN"); }

PgTransaction::~PgTransaction() {
  if (done_) return;
  try {
    if (c_.ok()) c_.exec("ROLLBACK");
  } catch (...) {
  }
}

void PgTransaction::commit() {
  c_.exec("COMMIT");
  done_ = true;
}

}  // namespace ds
