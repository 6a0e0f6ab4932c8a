// Applying schema migrations, ds-migrate's own job: reading sql/ from a directory (--sql-dir) and
// applying what a database lacks, one transaction each, under one advisory lock.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ds/migrations.hpp"
#include "ds/pg.hpp"

namespace ds::migrate {

// Session-level advisory lock held for a whole ds-migrate run, so concurrent runs serialise: the
// second waits, then finds nothing to do. The key is the ASCII bytes "dsmigrat" as a bigint; it is
// documented in tools/migrate/README.md and must never change (old and new binaries must agree).
constexpr std::int64_t lock_key = 0x64736d6967726174;  // 7238249325589062004

// The NNN_*.sql files of a directory, in version order. Throws std::runtime_error when the directory
// cannot be read or two files share a version. Files not named NNN_name.sql are ignored.
std::vector<Migration> load_directory(const std::string& dir);

// Takes the advisory lock (waiting for another run if need be), creates ds_schema_migrations if
// missing, applies every pending migration in its own transaction and records it there. A failing
// migration is rolled back, nothing of it is recorded, and the PgError propagates (the earlier
// ones stay applied). Returns the migrations applied by this call, in order.
std::vector<Migration> apply(PgConnection& c, const std::vector<Migration>& migrations);

}  // namespace ds::migrate
