// RAII over libpq: a connection, results, parameterised statements and COPY IN. Every SQL value
// goes through parameters or COPY, never string building. Errors are thrown as ds::PgError.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <libpq-fe.h>

#include "ds/config.hpp"

namespace ds {

struct PgError : std::runtime_error {
  PgError(const std::string& what, std::string sqlstate_ = {}, bool connection_lost_ = false)
      : std::runtime_error(what), sqlstate(std::move(sqlstate_)), connection_lost(connection_lost_) {}
  std::string sqlstate;
  bool connection_lost;
};

class PgResult {
 public:
  explicit PgResult(PGresult* r = nullptr) : r_(r, &PQclear) {}
  int rows() const { return PQntuples(r_.get()); }
  int columns() const { return PQnfields(r_.get()); }
  bool is_null(int row, int col) const { return PQgetisnull(r_.get(), row, col) != 0; }
  std::string_view text(int row, int col) const;
  std::optional<std::string> optional_text(int row, int col) const;
  std::int64_t int64(int row, int col) const;  // NULL -> 0
  PGresult* get() const { return r_.get(); }

 private:
  std::unique_ptr<PGresult, void (*)(PGresult*)> r_;
};

// A parameter: text or NULL.
using PgParam = std::optional<std::string>;

// Whether an error means the connection is gone: libpq says so, or the server said it is ending
// the session (a shutdown or restart: SQLSTATE 57P01-57P03; class 08). A fast restart's
// "terminating connection due to administrator command" arrives while libpq still reports the
// connection good.
bool connection_lost(PGconn* c, std::string_view sqlstate);

class PgConnection {
 public:
  explicit PgConnection(const DbParams& params);  // throws PgError
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  PgResult exec(std::string_view sql);  // no parameters; may hold several statements
  PgResult exec(std::string_view sql, const std::vector<PgParam>& params);

  // COPY ... FROM STDIN (text format): begin, send rows, end.
  void copy_begin(std::string_view copy_sql);
  void copy_send(std::string_view data);
  void copy_end();
  // Appends one COPY text-format field (escaped) to a row buffer.
  static void append_copy_field(std::string& row, std::string_view value);
  static void append_copy_null(std::string& row);

  bool ok() const;
  PGconn* get() const { return c_.get(); }

 private:
  void check(const PgResult& r, std::string_view sql);
  std::unique_ptr<PGconn, void (*)(PGconn*)> c_;
};

// A transaction rolled back on destruction unless committed.
class PgTransaction {
 public:
  explicit PgTransaction(PgConnection& c);
  ~PgTransaction();
  void commit();

 private:
  PgConnection& c_;
  bool done_ = false;
};

}  // namespace ds
