// Configuration shared by every program: flags > environment > `--config FILE` or ./.env > defaults.
// A .env file is loaded into the process environment without overriding what is already set.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ds {

// Loads KEY=VALUE lines (comments, blank lines, `export KEY=...`, single/double quotes) into the
// environment for keys not already set. `required` makes a missing file an error (throws
// std::runtime_error); otherwise a missing file is ignored. Warns when the file is readable by others.
// Returns the keys it set.
std::vector<std::string> load_dotenv(const std::string& path, bool required);

// Parses a .env text into pairs (exposed for tests). Throws std::runtime_error naming the line.
std::vector<std::pair<std::string, std::string>> parse_dotenv(const std::string& text,
                                                              const std::string& name);

std::optional<std::string> getenv_nonempty(const char* name);

// A setting resolved in precedence order: `flag` if given, else env var `name`, else `fallback`.
std::string setting(const std::optional<std::string>& flag, const char* name,
                    const std::string& fallback);
// Same, parsed as an integer in [min, max]; throws std::invalid_argument naming the setting.
std::int64_t setting_int(const std::optional<std::int64_t>& flag, const char* name,
                         std::int64_t fallback, std::int64_t min, std::int64_t max);
// Same, as a finite decimal number in [min, max] (a rate cap split among shards is fractional).
double setting_double(const std::optional<double>& flag, const char* name, double fallback, double min, double max);

// The database to connect to, as libpq keyword/value pairs (passwords never go through argv):
//   --db (conninfo string or postgresql:// URL) > DATABASE_URL > DB_HOST/DB_PORT/DB_NAME/DB_USER/
//   DB_PASSWORD (the original's) > libpq's own PG* variables, which libpq reads itself.
struct DbParams {
  std::vector<std::pair<std::string, std::string>> keywords;  // for PQconnectdbParams
  std::string describe() const;  // for logs: everything but the password
};
DbParams database_params(const std::optional<std::string>& flag);

constexpr const char* default_base_url = "https://public.api.bsky.app";

}  // namespace ds
