// ds-migrate's logic (also used by the tests to migrate their scratch databases): reading a
// migration directory, and applying what is pending safely under a lock.
#include "migrate/migrate.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <spdlog/spdlog.h>

namespace ds::migrate {
namespace {

// Releases the session lock on every way out of apply(); closing the connection would too, but
// the caller may keep using it.
class SessionLock {
 public:
  explicit SessionLock(PgConnection& c) : c_(c) {
    const std::vector<PgParam> key{std::to_string(lock_key)};
    if (c_.exec("SELECT pg_try_advisory_lock($1::bigint)", key).text(0, 0) != "t") {
      spdlog::info("another ds-migrate holds the migration lock (key {}); waiting for it", lock_key);
      c_.exec("SELECT pg_advisory_lock($1::bigint)", key);
    }
  }
  ~SessionLock() {
    try {
      if (c_.ok()) c_.exec("SELECT pg_advisory_unlock($1::bigint)", {std::to_string(lock_key)});
    } catch (...) {
    }
  }
  SessionLock(const SessionLock&) = delete;
  SessionLock& operator=(const SessionLock&) = delete;

 private:
  PgConnection& c_;
};

}  // namespace

std::vector<Migration> load_directory(const std::string& dir) {
  namespace fs = std::filesystem;
  std::vector<Migration> out;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) throw std::runtime_error("cannot read migration directory " + dir + ": " + ec.message());
  for (const auto& entry : it) {
    if (!entry.is_regular_file()) continue;
    const std::string file = entry.path().filename().string();
    auto parsed = parse_file_name(file);
    if (!parsed) {
      if (file.size() > 4 && file.substr(file.size() - 4) == ".sql")
        spdlog::warn("{}: ignoring {}: not named NNN_name.sql", dir, file);
      continue;
    }
    std::ifstream in(entry.path(), std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + entry.path().string());
    std::ostringstream text;
    text << in.rdbuf();
    out.push_back({parsed->first, parsed->second, text.str()});
  }
  sort_by_version(out, dir);
  return out;
}

std::vector<Migration> apply(PgConnection& c, const std::vector<Migration>& migrations) {
  SessionLock lock(c);
  // Under the lock, so two first runs cannot race on creating it. Checked first rather than
  // IF NOT EXISTS, whose "already exists, skipping" NOTICE would land on stderr every run.
  if (!migrations_table_exists(c))
    c.exec(
        "CREATE TABLE ds_schema_migrations ("
        " version integer PRIMARY KEY,"
        " name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())");
  // Read only after taking the lock: a run we waited for may have applied everything.
  const Status before = read_status(c, migrations);
  for (const auto& a : before.applied)
    for (const auto& m : migrations)
      if (m.version == a.version && m.name != a.name)
        spdlog::warn("migration {} is recorded as applied under the name '{}'; not re-running it",
                     m.label(), a.name);
  for (const auto& u : before.unknown)
    spdlog::warn("the database has migration {:03d}_{} that this ds-migrate does not know (applied by a "
                 "newer version?)",
                 u.version, u.name);

  int highest_applied = before.applied.empty() ? 0 : before.applied.back().version;
  std::vector<Migration> done;
  for (const auto& m : before.pending) {
    if (m.version < highest_applied)
      spdlog::warn("applying {} after later migrations were already applied", m.label());
    const auto started = std::chrono::steady_clock::now();
    PgTransaction tx(c);
    // The IF NOT EXISTS clauses that make migrations safe on an original database would each
    // print a NOTICE; only warnings and errors are worth an operator's attention.
    c.exec("SET LOCAL client_min_messages = warning");
    try {
      c.exec(m.sql);
    } catch (const PgError& e) {
      throw PgError("migration " + m.label() + " failed and was rolled back: " + e.what(), e.sqlstate,
                    e.connection_lost);
    }
    c.exec("INSERT INTO ds_schema_migrations (version, name) VALUES ($1::integer, $2)",
           {std::to_string(m.version), m.name});
    tx.commit();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - started)
                        .count();
    spdlog::info("applied migration {} ({} ms)", m.label(), ms);
    highest_applied = std::max(highest_applied, m.version);
    done.push_back(m);
  }
  return done;
}

}  // namespace ds::migrate
