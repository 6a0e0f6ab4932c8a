// Tests for ds::parse_timestamp / format_timestamp: every timestamp shape the API sends (ds/clock.hpp).
// Expected values are derived from independent arithmetic on calendar facts, not from the parser.
#include <catch2/catch.hpp>

#include <cstdlib>

#include "ds/clock.hpp"

using ds::Micros;
using ds::parse_timestamp;

namespace {
constexpr Micros sec = 1'000'000;
// 2024-03-21T23:36:16Z: 19803 days after 1970-01-01 (2024-01-01 is day 19723, + 31 + 29 + 20).
constexpr Micros base = (19723LL + 31 + 29 + 20) * 86400 * sec + (23 * 3600 + 36 * 60 + 16) * sec;
}  // namespace

TEST_CASE("timestamps in every shape the API sends") {
  CHECK(parse_timestamp("2024-03-21T23:36:16Z") == base);
  CHECK(parse_timestamp("2024-03-21T23:36:16.378Z") == base + 378'000);
  CHECK(parse_timestamp("2024-03-21T23:36:16.378123Z") == base + 378'123);
  CHECK(parse_timestamp("2024-03-21T23:36:16.378123456Z") == base + 378'123);  // nanoseconds truncated
  CHECK(parse_timestamp("2024-03-21T23:36:16.378+00:00") == base + 378'000);
  CHECK(parse_timestamp("2024-03-22T01:36:16+02:00") == base);
  CHECK(parse_timestamp("2024-03-21T20:36:16-0300") == base);
  CHECK(parse_timestamp("2024-03-21T23:36:16.378") == base + 378'000);  // no timezone: UTC
  CHECK(parse_timestamp("2024-03-21 23:36:16Z") == base);
  CHECK(parse_timestamp("1970-01-01T00:00:00.000Z") == 0);
  // 0001-01-01 is 719162 days before the epoch (proleptic Gregorian).
  CHECK(parse_timestamp("0001-01-01T00:00:00.000Z") == -719162LL * 86400 * sec);
  CHECK(parse_timestamp("9999-12-31T23:59:59Z").has_value());
  CHECK(parse_timestamp("2024-02-29T00:00:00Z").has_value());  // leap day
}

TEST_CASE("invalid timestamps are rejected, not guessed") {
  for (const char* bad : {"", "not a date", "2024-02-30T10:00:00Z", "2023-02-29T00:00:00Z",
                          "2024-13-01T00:00:00Z", "2024-03-21", "2024-03-21T24:00:00Z",
                          "2024-03-21T23:36:16.Z", "2024-03-21T23:36:16Zjunk", "0000-01-01T00:00:00Z",
                          "2024-03-21T23:36:16+25:00", "2024-3-21T23:36:16Z"}) {
    INFO(bad);
    CHECK_FALSE(parse_timestamp(bad).has_value());
  }
}

TEST_CASE("formatting round-trips and keeps microseconds only when present") {
  CHECK(ds::format_timestamp(base + 378'000) == "2024-03-21T23:36:16.378Z");
  CHECK(ds::format_timestamp(base + 378'123) == "2024-03-21T23:36:16.378123Z");
  CHECK(ds::format_timestamp(-719162LL * 86400 * sec) == "0001-01-01T00:00:00.000Z");
  CHECK(ds::format_timestamp(-1) == "1969-12-31T23:59:59.999999Z");
  CHECK(ds::format_date(base) == "2024-03-21");
  CHECK(ds::parse_date("2024-03-21") == *ds::parse_timestamp("2024-03-21T00:00:00Z"));
  CHECK(ds::parse_date(ds::format_date(base)) == base - base % ds::micros_per_day);
  for (const char* bad : {"2024-02-30", "2024-3-21", "2024-03-21T00:00:00Z", "20240321", "", "not a date"})
    CHECK_FALSE(ds::parse_date(bad));
  for (Micros t : {Micros{0}, base, base + 1, -base, Micros{253402300799} * sec})
    CHECK(parse_timestamp(ds::format_timestamp(t)) == t);
}

TEST_CASE("DS_NOW fixes the run clock") {
  ::setenv("DS_NOW", "2026-11-29T12:00:00Z", 1);
  CHECK(ds::format_timestamp(ds::now()) == "2026-11-29T12:00:00.000Z");
  ::setenv("DS_NOW", "yesterday", 1);
  CHECK_THROWS(ds::now());
  ::unsetenv("DS_NOW");
  CHECK(ds::now() > *parse_timestamp("2026-01-01T00:00:00Z"));
}
