// Timestamp parsing and formatting for every shape the Bluesky API sends (clock.hpp); the run clock.
// Hand-written because std::chrono's parse is missing from GCC 12 and strptime ignores offsets.
#include "ds/clock.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace ds {
namespace {

// Days since 1970-01-01 for a proleptic Gregorian date (the civil-from-days inverse).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

struct Civil {
  std::int64_t y;
  unsigned m, d;
};

Civil civil_from_days(std::int64_t z) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp + (mp < 10 ? 3 : -9);
  return {y + (m <= 2), m, d};
}

bool leap(std::int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned days_in_month(std::int64_t y, unsigned m) {
  static constexpr unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : days[m - 1];
}

// Reads exactly n digits at s[pos..]; advances pos.
bool digits(std::string_view s, std::size_t& pos, int n, int& out) {
  if (pos + static_cast<std::size_t>(n) > s.size()) return false;
  int v = 0;
  for (int i = 0; i < n; ++i) {
    const char c = s[pos + static_cast<std::size_t>(i)];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  pos += static_cast<std::size_t>(n);
  out = v;
  return true;
}

bool expect(std::string_view s, std::size_t& pos, char c) {
  if (pos >= s.size() || s[pos] != c) return false;
  ++pos;
  return true;
}

Micros floor_div_safe(Micros t, Micros unit, Micros& rem) {
  Micros q = t / unit;
  rem = t % unit;
  if (rem < 0) {
    rem += unit;
    --q;
  }
  return q;
}

}  // namespace

std::optional<Micros> parse_timestamp(std::string_view s) {
  std::size_t pos = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!digits(s, pos, 4, year) || !expect(s, pos, '-') || !digits(s, pos, 2, month) ||
      !expect(s, pos, '-') || !digits(s, pos, 2, day))
    return std::nullopt;
  if (pos >= s.size() || (s[pos] != 'T' && s[pos] != 't' && s[pos] != ' ')) return std::nullopt;
  ++pos;
  if (!digits(s, pos, 2, hour) || !expect(s, pos, ':') || !digits(s, pos, 2, minute) ||
      !expect(s, pos, ':') || !digits(s, pos, 2, second))
    return std::nullopt;
  if (year < 1 || month < 1 || month > 12 || day < 1 ||
      static_cast<unsigned>(day) > days_in_month(year, static_cast<unsigned>(month)) || hour > 23 ||
      minute > 59 || second > 60)
    return std::nullopt;
  Micros frac = 0;
  if (pos < s.size() && (s[pos] == '.' || s[pos] == ',')) {
    ++pos;
    int n = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (n < 6) frac = frac * 10 + (s[pos] - '0');
      ++n;
      ++pos;
    }
    if (n == 0 || n > 9) return std::nullopt;
    for (int i = n; i < 6; ++i) frac *= 10;
  }
  std::int64_t offset_minutes = 0;
  if (pos < s.size()) {
    const char c = s[pos];
    if (c == 'Z' || c == 'z') {
      ++pos;
    } else if (c == '+' || c == '-') {
      ++pos;
      int oh = 0, om = 0;
      if (!digits(s, pos, 2, oh)) return std::nullopt;
      if (pos < s.size() && s[pos] == ':') ++pos;
      if (!digits(s, pos, 2, om) || oh > 23 || om > 59) return std::nullopt;
      offset_minutes = (oh * 60 + om) * (c == '+' ? 1 : -1);
    } else {
      return std::nullopt;
    }
  }
  if (pos != s.size()) return std::nullopt;
  if (second == 60) second = 59;  // a leap second cannot be stored; keep the post
  const std::int64_t days = days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  const std::int64_t secs = days * 86400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
  const Micros t = secs * micros_per_second + frac;
  // An offset can carry 0001-01-01 or 9999-12-31 across the range: the UTC result must still be
  // a year 0001..9999, or format_timestamp would write a value no stage can read back.
  if (t < min_timestamp || t > max_timestamp) return std::nullopt;
  return t;
}

std::string format_timestamp(Micros t) {
  Micros rem;
  const std::int64_t secs = floor_div_safe(t, micros_per_second, rem);
  std::int64_t sod;
  const std::int64_t days = floor_div_safe(secs, 86400, sod);
  const Civil c = civil_from_days(days);
  char buf[48];
  const int h = static_cast<int>(sod / 3600), m = static_cast<int>(sod / 60 % 60), s = static_cast<int>(sod % 60);
  if (rem % 1000 == 0)
    std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02d:%02d:%02d.%03lldZ", static_cast<long long>(c.y), c.m, c.d, h, m, s,
                  static_cast<long long>(rem / 1000));
  else
    std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02d:%02d:%02d.%06lldZ", static_cast<long long>(c.y), c.m, c.d, h, m, s,
                  static_cast<long long>(rem));
  return buf;
}

std::optional<Micros> parse_date(std::string_view text) {
  if (text.size() != 10) return std::nullopt;
  return parse_timestamp(std::string(text) + "T00:00:00Z");
}

std::string format_date(Micros t) {
  Micros rem;
  const std::int64_t secs = floor_div_safe(t, micros_per_second, rem);
  std::int64_t sod;
  const Civil c = civil_from_days(floor_div_safe(secs, 86400, sod));
  char buf[24];
  std::snprintf(buf, sizeof buf, "%04lld-%02u-%02u", static_cast<long long>(c.y), c.m, c.d);
  return buf;
}

Micros now() {
  if (const char* fixed = std::getenv("DS_NOW"); fixed && *fixed) {
    if (auto t = parse_timestamp(fixed)) return *t;
    throw std::runtime_error(std::string("DS_NOW is not an RFC 3339 timestamp: ") + fixed);
  }
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double monotonic_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace ds
