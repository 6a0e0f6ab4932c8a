// The migration catalogue and the read-only status check: what every stage's --health needs to
// say "migrations current", without the applying (tools/migrate) that only ds-migrate does.
#include "ds/migrations.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <stdexcept>

namespace ds::migrate {
namespace {

std::vector<Applied> recorded(PgConnection& c) {
  std::vector<Applied> out;
  if (!migrations_table_exists(c)) return out;
  auto r = c.exec("SELECT version, name, applied_at FROM ds_schema_migrations ORDER BY version");
  for (int i = 0; i < r.rows(); ++i)
    out.push_back({static_cast<int>(r.int64(i, 0)), r.optional_text(i, 1).value_or(""),
                   std::string(r.text(i, 2))});
  return out;
}

}  // namespace

std::string Migration::label() const {
  char num[16];
  std::snprintf(num, sizeof num, "%03d", version);
  return std::string(num) + "_" + name;
}

std::optional<std::pair<int, std::string>> parse_file_name(std::string_view f) {
  constexpr std::string_view ext = ".sql";
  if (f.size() <= 4 + ext.size() || f.substr(f.size() - ext.size()) != ext) return std::nullopt;
  for (int i = 0; i < 3; ++i)
    if (f[i] < '0' || f[i] > '9') return std::nullopt;
  if (f[3] != '_') return std::nullopt;
  const std::string name(f.substr(4, f.size() - 4 - ext.size()));
  for (const char ch : name)
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '_' || ch == '-'))
      return std::nullopt;
  return std::make_pair((f[0] - '0') * 100 + (f[1] - '0') * 10 + (f[2] - '0'), name);
}

void sort_by_version(std::vector<Migration>& list, const std::string& where) {
  std::sort(list.begin(), list.end(),
            [](const Migration& a, const Migration& b) { return a.version < b.version; });
  for (std::size_t i = 1; i < list.size(); ++i)
    if (list[i].version == list[i - 1].version)
      throw std::runtime_error(where + ": two migrations with version " +
                               std::to_string(list[i].version) + ": " + list[i - 1].label() +
                               ".sql and " + list[i].label() + ".sql");
}

std::vector<Migration> embedded_migrations() {
  std::vector<Migration> out;
  for (std::size_t i = 0; i < detail::embedded_file_count; ++i) {
    const auto& f = detail::embedded_files[i];
    auto parsed = parse_file_name(f.name);
    if (!parsed) continue;  // the build globbed NNN_*.sql; a stranger name is not a migration
    out.push_back({parsed->first, parsed->second, std::string(f.data, f.size)});
  }
  sort_by_version(out, "embedded migrations");
  return out;
}

bool migrations_table_exists(PgConnection& c) {
  auto r = c.exec("SELECT to_regclass($1) IS NOT NULL", {std::string(migrations_table)});
  return r.text(0, 0) == "t";
}

Status read_status(PgConnection& c, const std::vector<Migration>& migrations) {
  Status s;
  std::map<int, Applied> done;
  for (auto& a : recorded(c)) done.emplace(a.version, std::move(a));
  for (const auto& m : migrations) {
    auto it = done.find(m.version);
    if (it == done.end()) {
      s.pending.push_back(m);
      continue;
    }
    s.applied.push_back(it->second);
    done.erase(it);
  }
  for (auto& [v, a] : done) s.unknown.push_back(std::move(a));
  return s;
}

}  // namespace ds::migrate
