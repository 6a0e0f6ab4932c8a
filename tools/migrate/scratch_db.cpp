// Creating and dropping per-test databases on the private test cluster (see scratch_db.hpp).
// DROP ... WITH (FORCE) so a test that leaked a connection cannot wedge the next run.
#include "migrate/scratch_db.hpp"

#include <cstdlib>
#include <stdexcept>

#include "ds/pg.hpp"

namespace ds::testing {
namespace {

DbParams params_for(const std::string& url) {
  DbParams p;
  p.keywords.emplace_back("dbname", url);  // libpq expands a URL or conninfo given as dbname
  p.keywords.emplace_back("application_name", "ds-tests");
  return p;
}

}  // namespace

std::optional<std::string> test_database_url() { return getenv_nonempty("DS_TEST_DATABASE_URL"); }

std::string with_database(const std::string& url, const std::string& dbname) {
  const auto scheme = url.find("://");
  if (scheme == std::string::npos) return url + " dbname=" + dbname;  // conninfo: the last one wins
  const auto path = url.find('/', scheme + 3);
  const auto query = url.find('?', scheme + 3);
  const std::string authority = url.substr(0, std::min(path, query));
  const std::string rest = query == std::string::npos ? "" : url.substr(query);
  return authority + "/" + dbname + rest;
}

ScratchDatabase::ScratchDatabase(std::string server_url, std::string name)
    : server_url_(std::move(server_url)), name_(std::move(name)) {
  if (name_.empty()) throw std::invalid_argument("scratch database name is empty");
  for (const char c : name_)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
      throw std::invalid_argument("scratch database name must be [a-z0-9_]+: " + name_);
  url_ = with_database(server_url_, name_);
  PgConnection admin(params_for(server_url_));
  admin.exec("SET client_min_messages = warning");  // no "does not exist, skipping" noise
  admin.exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
  admin.exec("CREATE DATABASE " + name_);
}

ScratchDatabase::~ScratchDatabase() {
  try {
    PgConnection admin(params_for(server_url_));
    admin.exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
  } catch (...) {
    // Left over: the next run drops it before creating it again.
  }
}

DbParams ScratchDatabase::params() const { return params_for(url_); }

}  // namespace ds::testing
