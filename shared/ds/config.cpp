// .env loading, setting precedence and database parameters, shared by every program.
// Precedence is flags > environment > .env > defaults: .env only fills what the environment lacks.
#include "ds/config.hpp"

#include <sys/stat.h>

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <spdlog/spdlog.h>

namespace ds {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return {};
  const auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

bool valid_key(const std::string& k) {
  if (k.empty() || (k[0] >= '0' && k[0] <= '9')) return false;
  for (const char c : k)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
      return false;
  return true;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> parse_dotenv(const std::string& text,
                                                              const std::string& name) {
  std::vector<std::pair<std::string, std::string>> out;
  std::istringstream in(text);
  std::string raw;
  int line_no = 0;
  while (std::getline(in, raw)) {
    ++line_no;
    std::string line = trim(raw);
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind("export ", 0) == 0) line = trim(line.substr(7));
    const auto eq = line.find('=');
    if (eq == std::string::npos)
      throw std::runtime_error(name + ":" + std::to_string(line_no) + ": expected KEY=VALUE");
    std::string key = trim(line.substr(0, eq));
    std::string value = trim(line.substr(eq + 1));
    if (!valid_key(key))
      throw std::runtime_error(name + ":" + std::to_string(line_no) + ": invalid variable name");
    if (!value.empty() && (value[0] == '"' || value[0] == '\'')) {
      const char q = value[0];
      const auto close = value.find(q, 1);
      if (close == std::string::npos)
        throw std::runtime_error(name + ":" + std::to_string(line_no) + ": unterminated quote");
      std::string inner = value.substr(1, close - 1);
      if (q == '"') {  // the usual escapes inside double quotes
        std::string unescaped;
        for (std::size_t i = 0; i < inner.size(); ++i) {
          if (inner[i] == '\\' && i + 1 < inner.size()) {
            const char n = inner[++i];
            unescaped += n == 'n' ? '\n' : n;
          } else {
            unescaped += inner[i];
          }
        }
        inner = unescaped;
      }
      value = inner;
    } else if (const auto hash = value.find(" #"); hash != std::string::npos) {
      value = trim(value.substr(0, hash));  // an inline comment after an unquoted value
    }
    out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

std::vector<std::string> load_dotenv(const std::string& path, bool required) {
  std::ifstream f(path);
  if (!f) {
    if (required) throw std::runtime_error("cannot read config file " + path);
    return {};
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)))
    spdlog::warn("{} is readable by other users; it may hold a password: chmod 600 {}", path, path);
  std::stringstream ss;
  ss << f.rdbuf();
  std::vector<std::string> set;
  for (auto& [k, v] : parse_dotenv(ss.str(), path)) {
    if (std::getenv(k.c_str())) continue;
    ::setenv(k.c_str(), v.c_str(), 0);
    set.push_back(k);
  }
  return set;
}

std::optional<std::string> getenv_nonempty(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

std::string setting(const std::optional<std::string>& flag, const char* name,
                    const std::string& fallback) {
  if (flag) return *flag;
  if (auto v = getenv_nonempty(name)) return *v;
  return fallback;
}

namespace {

// flag > environment variable `name` (parsed by `parse`, which returns nullopt for text that is
// not a T) > fallback, then checked against [min, max]; errors name the setting and its source.
template <class T, class Parse>
T resolve_number(const std::optional<T>& flag, const char* name, T fallback, T min, T max, const char* kind,
                 Parse parse) {
  T v = fallback;
  std::string source = "default";
  if (flag) {
    v = *flag;
    source = "flag";
  } else if (auto e = getenv_nonempty(name)) {
    source = std::string("environment variable ") + name;
    const std::optional<T> parsed = parse(*e);
    if (!parsed) throw std::invalid_argument(std::string(name) + "=" + *e + " is not " + kind);
    v = *parsed;
  }
  if (!(v >= min && v <= max)) {  // also false for NaN
    std::ostringstream msg;
    msg << name << " (" << source << ") = " << v << " is out of range [" << min << ", " << max << "]";
    throw std::invalid_argument(msg.str());
  }
  return v;
}

}  // namespace

double setting_double(const std::optional<double>& flag, const char* name, double fallback, double min, double max) {
  return resolve_number(flag, name, fallback, min, max, "a number", [](const std::string& e) -> std::optional<double> {
    char* end = nullptr;
    const double v = std::strtod(e.c_str(), &end);
    if (end == e.c_str() || *end != '\0') return std::nullopt;
    return v;
  });
}

std::int64_t setting_int(const std::optional<std::int64_t>& flag, const char* name,
                         std::int64_t fallback, std::int64_t min, std::int64_t max) {
  return resolve_number(flag, name, fallback, min, max, "an integer",
                        [](const std::string& e) -> std::optional<std::int64_t> {
                          std::int64_t v = 0;
                          const auto [end, ec] = std::from_chars(e.data(), e.data() + e.size(), v);
                          if (ec != std::errc() || end != e.data() + e.size()) return std::nullopt;
                          return v;
                        });
}

DbParams database_params(const std::optional<std::string>& flag) {
  DbParams p;
  auto& kw = p.keywords;
  if (flag) {
    kw.emplace_back("dbname", *flag);  // libpq expands a conninfo string or URL given as dbname
  } else if (auto url = getenv_nonempty("DATABASE_URL")) {
    kw.emplace_back("dbname", *url);
  } else {
    // The original's variables; anything unset falls through to libpq's PG* variables.
    if (auto v = getenv_nonempty("DB_HOST")) kw.emplace_back("host", *v);
    if (auto v = getenv_nonempty("DB_PORT")) kw.emplace_back("port", *v);
    if (auto v = getenv_nonempty("DB_NAME")) kw.emplace_back("dbname", *v);
    if (auto v = getenv_nonempty("DB_USER")) kw.emplace_back("user", *v);
    if (auto v = getenv_nonempty("DB_PASSWORD")) kw.emplace_back("password", *v);
  }
  kw.emplace_back("application_name", "dopplersky");
  kw.emplace_back("connect_timeout", setting(std::nullopt, "DB_CONNECT_TIMEOUT", "10"));
  return p;
}

std::string DbParams::describe() const {
  std::string out;
  for (const auto& [k, v] : keywords) {
    if (k == "password" || k == "application_name" || k == "connect_timeout") continue;
    std::string shown = v;
    // A URL or conninfo string may embed a password: mask it.
    if (auto at = shown.find('@'); shown.rfind("postgres", 0) == 0 && at != std::string::npos) {
      const auto scheme = shown.find("://");
      const auto colon = shown.find(':', scheme + 3);
      if (colon != std::string::npos && colon < at) shown = shown.substr(0, colon + 1) + "***" + shown.substr(at);
    }
    if (auto pw = shown.find("password="); pw != std::string::npos) {
      const auto end = shown.find(' ', pw);
      shown = shown.substr(0, pw) + "password=***" + (end == std::string::npos ? "" : shown.substr(end));
    }
    if (!out.empty()) out += ' ';
    // A whole conninfo string or URL travels as "dbname" (libpq expands it): show it as it is.
    const bool expanded = k == "dbname" && (shown.find('=') != std::string::npos || shown.find("://") != std::string::npos);
    out += expanded ? shown : k + "=" + shown;
  }
  return out.empty() ? "libpq defaults from the PG* environment" : out;
}

}  // namespace ds
