// Throwaway databases for [db] tests: each test gets its own empty database on the server that
// DS_TEST_DATABASE_URL points at, so tests never see each other's tables or rows.
#pragma once
#include <optional>
#include <string>

#include "ds/config.hpp"

namespace ds::testing {

// DS_TEST_DATABASE_URL (set by tests/scripts/with-pg.sh), or nullopt when unset.
std::optional<std::string> test_database_url();

// `url` with its database name replaced by `dbname` (postgresql:// URLs and conninfo strings).
std::string with_database(const std::string& url, const std::string& dbname);

// Creates database `name` (dropping a leftover of the same name first) through the server of
// `server_url`, and drops it again on destruction. `name` must be [a-z0-9_]+ (it is an identifier,
// which SQL cannot pass as a parameter). Throws PgError / std::invalid_argument.
class ScratchDatabase {
 public:
  ScratchDatabase(std::string server_url, std::string name);
  ~ScratchDatabase();
  ScratchDatabase(const ScratchDatabase&) = delete;
  ScratchDatabase& operator=(const ScratchDatabase&) = delete;

  const std::string& url() const { return url_; }  // for --db of a child process
  DbParams params() const;                          // for PgConnection

 private:
  std::string server_url_;
  std::string name_;
  std::string url_;
};

}  // namespace ds::testing
