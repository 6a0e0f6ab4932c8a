// Schema migrations: the numbered sql/NNN_name.sql files, which of them a database has applied
// (ds_schema_migrations), and applying the rest, one transaction each, under one advisory lock.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ds/pg.hpp"

namespace ds::migrate {

// Session-level advisory lock held for a whole ds-migrate run, so concurrent runs serialise: the
// second waits, then finds nothing to do. The key is the ASCII bytes "dsmigrat" as a bigint; it is
// documented in tools/migrate/README.md and must never change (old and new binaries must agree).
constexpr std::int64_t lock_key = 0x64736d6967726174;  // 7238249325589062004

// The table recording applied migrations (created by ds-migrate itself, before any migration).
constexpr const char* migrations_table = "ds_schema_migrations";

struct Migration {
  int version = 0;      // NNN
  std::string name;     // the part after NNN_, without .sql
  std::string sql;      // run as one multi-statement string inside a transaction
  std::string label() const;  // "003_run_log_ids"
};

// "003_run_log_ids.sql" -> {3, "run_log_ids"}; nullopt for anything not named NNN_name.sql.
std::optional<std::pair<int, std::string>> parse_file_name(std::string_view file_name);

// The migrations built into this binary, in version order.
std::vector<Migration> embedded_migrations();
// The NNN_*.sql files of a directory, in version order. Throws std::runtime_error when the directory
// cannot be read or two files share a version. Files not named NNN_name.sql are ignored.
std::vector<Migration> load_directory(const std::string& dir);

struct Applied {
  int version = 0;
  std::string name;
  std::string applied_at;  // as PostgreSQL prints it (UTC session)
};

struct Status {
  std::vector<Applied> applied;     // recorded and known to this binary, in version order
  std::vector<Migration> pending;   // known, not recorded, in version order
  std::vector<Applied> unknown;     // recorded but not known here (applied by a newer ds-migrate)
  bool current() const { return pending.empty(); }
};

// Reads the database's state without changing anything (no table is created). Throws PgError.
Status read_status(PgConnection& c, const std::vector<Migration>& migrations);

// Takes the advisory lock (waiting for another run if need be), creates ds_schema_migrations if
// missing, applies every pending migration in its own transaction and records it there. A failing
// migration is rolled back, nothing of it is recorded, and the PgError propagates (the earlier
// ones stay applied). Returns the migrations applied by this call, in order.
std::vector<Migration> apply(PgConnection& c, const std::vector<Migration>& migrations);

namespace detail {
// The generated embedded_sql.cpp defines these.
struct EmbeddedFile {
  const char* name;
  const char* data;
  std::size_t size;
};
extern const EmbeddedFile embedded_files[];
extern const std::size_t embedded_file_count;
}  // namespace detail

}  // namespace ds::migrate
