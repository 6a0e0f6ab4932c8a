// The schema migrations this build knows (sql/NNN_name.sql, embedded at build time) and which of
// them a database has applied (ds_schema_migrations): what a stage's --health and ds-migrate share.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ds/pg.hpp"

namespace ds::migrate {

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

// Sorts by version; throws std::runtime_error naming `where` and both files when two share one.
void sort_by_version(std::vector<Migration>& list, const std::string& where);

// The migrations built into this binary, in version order.
std::vector<Migration> embedded_migrations();

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

// Whether ds_schema_migrations exists yet (a database never migrated has none). Throws PgError.
bool migrations_table_exists(PgConnection& c);

// Reads the database's state without changing anything (no table is created). Throws PgError.
Status read_status(PgConnection& c, const std::vector<Migration>& migrations);

namespace detail {
// The generated embedded_sql.cpp (shared/embed_sql.cmake) defines these.
struct EmbeddedFile {
  const char* name;
  const char* data;
  std::size_t size;
};
extern const EmbeddedFile embedded_files[];
extern const std::size_t embedded_file_count;
}  // namespace detail

}  // namespace ds::migrate
