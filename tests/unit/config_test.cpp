// Tests for configuration precedence (flag > environment > .env > default), .env parsing and
// database parameter resolution, including that a password never shows in descriptions.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include "ds/config.hpp"

namespace {
std::string value_of(const ds::DbParams& p, const std::string& key) {
  for (const auto& [k, v] : p.keywords)
    if (k == key) return v;
  return "<unset>";
}
void clear_db_env() {
  for (const char* k : {"DATABASE_URL", "DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD", "DS_TEST_MAX"})
    ::unsetenv(k);
}
}  // namespace

TEST_CASE("precedence: flag > environment > .env > default") {
  clear_db_env();
  const std::string path = "/tmp/ds-config-test.env";
  {
    std::ofstream f(path);
    f << "# comment\nexport DS_TEST_MAX=7\nDB_NAME='from dotenv'\nDB_USER=\"quoted # not a comment\"\n"
         "DB_HOST=h1 # inline comment\n\n";
  }
  ::chmod(path.c_str(), 0600);
  ::setenv("DB_HOST", "from-env", 1);
  const auto set = ds::load_dotenv(path, true);
  CHECK(std::find(set.begin(), set.end(), "DB_HOST") == set.end());  // env wins over .env
  CHECK(std::string(std::getenv("DB_HOST")) == "from-env");
  CHECK(std::string(std::getenv("DB_NAME")) == "from dotenv");
  CHECK(std::string(std::getenv("DB_USER")) == "quoted # not a comment");
  CHECK(ds::setting_int(std::nullopt, "DS_TEST_MAX", 10, 1, 100) == 7);  // .env beats the default
  CHECK(ds::setting_int(3, "DS_TEST_MAX", 10, 1, 100) == 3);             // the flag beats all
  ::unsetenv("DS_TEST_MAX");
  CHECK(ds::setting_int(std::nullopt, "DS_TEST_MAX", 10, 1, 100) == 10);
  ::setenv("DS_TEST_MAX", "ten", 1);
  CHECK_THROWS_WITH(ds::setting_int(std::nullopt, "DS_TEST_MAX", 10, 1, 100), Catch::Contains("DS_TEST_MAX"));
  ::setenv("DS_TEST_MAX", "1000", 1);
  CHECK_THROWS_WITH(ds::setting_int(std::nullopt, "DS_TEST_MAX", 10, 1, 100), Catch::Contains("out of range"));
  ::setenv("DS_TEST_RPS", "2.5", 1);
  CHECK(ds::setting_double(std::nullopt, "DS_TEST_RPS", 10, 0, 1000) == 2.5);
  CHECK(ds::setting_double(0.75, "DS_TEST_RPS", 10, 0, 1000) == 0.75);
  ::setenv("DS_TEST_RPS", "2.5/s", 1);
  CHECK_THROWS_WITH(ds::setting_double(std::nullopt, "DS_TEST_RPS", 10, 0, 1000), Catch::Contains("not a number"));
  ::setenv("DS_TEST_RPS", "nan", 1);
  CHECK_THROWS_WITH(ds::setting_double(std::nullopt, "DS_TEST_RPS", 10, 0, 1000), Catch::Contains("out of range"));
  ::setenv("DS_TEST_RPS", "-1", 1);
  CHECK_THROWS_WITH(ds::setting_double(std::nullopt, "DS_TEST_RPS", 10, 0, 1000), Catch::Contains("out of range"));
  ::unsetenv("DS_TEST_RPS");
  CHECK(ds::setting_double(std::nullopt, "DS_TEST_RPS", 10, 0, 1000) == 10);
  CHECK(ds::setting(std::string("f"), "DB_HOST", "d") == "f");
  CHECK(ds::setting(std::nullopt, "DB_HOST", "d") == "from-env");
  CHECK_THROWS(ds::load_dotenv("/nonexistent/.env", true));
  CHECK(ds::load_dotenv("/nonexistent/.env", false).empty());
  CHECK_THROWS_WITH(ds::parse_dotenv("GOOD=1\nno equals sign\n", "x.env"), Catch::Contains("x.env:2"));
  clear_db_env();
  ::unlink(path.c_str());
}

TEST_CASE("database parameters: --db > DATABASE_URL > DB_* > libpq's PG*") {
  clear_db_env();
  ::setenv("DB_HOST", "dbhost", 1);
  ::setenv("DB_PASSWORD", "s3cret", 1);
  ::setenv("DB_NAME", "prod", 1);
  auto p = ds::database_params(std::nullopt);
  CHECK(value_of(p, "host") == "dbhost");
  CHECK(value_of(p, "dbname") == "prod");
  CHECK(value_of(p, "password") == "s3cret");
  CHECK(p.describe().find("s3cret") == std::string::npos);
  ::setenv("DATABASE_URL", "postgresql://u:hunter2@h:5433/db", 1);
  p = ds::database_params(std::nullopt);
  CHECK(value_of(p, "dbname") == "postgresql://u:hunter2@h:5433/db");
  CHECK(value_of(p, "host") == "<unset>");
  CHECK(p.describe().find("hunter2") == std::string::npos);
  p = ds::database_params(std::string("host=x password=pw dbname=y"));
  CHECK(value_of(p, "dbname") == "host=x password=pw dbname=y");
  CHECK(p.describe().find("pw ") == std::string::npos);
  clear_db_env();
  p = ds::database_params(std::nullopt);
  CHECK(value_of(p, "host") == "<unset>");  // left to PGHOST etc.
}
