// Time for the pipeline: parsing every timestamp shape the Bluesky API sends, RFC 3339 output,
// and the run clock (`DS_NOW` fixes it for tests and replays).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ds {

// Microseconds since 1970-01-01T00:00:00Z (negative before). Covers years 0001..9999.
using Micros = std::int64_t;

// Parses RFC 3339 / ISO 8601 timestamps as the API sends them: `Z` or `+hh:mm`/`-hh:mm` offsets,
// no fraction or up to 9 fractional digits (truncated to microseconds), a missing timezone (taken
// as UTC), `T` or a space between date and time, years 0001..9999 (also after applying the
// offset). Returns nullopt for anything else (bad calendar dates such as 2024-02-30 included).
std::optional<Micros> parse_timestamp(std::string_view text);

// "2024-03-21T23:36:16.378Z": milliseconds, or microseconds when they are not zero.
std::string format_timestamp(Micros t);
// "2024-03-21"
std::string format_date(Micros t);
// The start (00:00 UTC) of a "YYYY-MM-DD" day, format_date's inverse; nullopt for any other text
// or a bad calendar date.
std::optional<Micros> parse_date(std::string_view text);

constexpr Micros micros_per_second = 1'000'000;
constexpr Micros micros_per_day = 86'400 * micros_per_second;
// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z: what parse_timestamp returns stays inside.
constexpr Micros min_timestamp = -62'135'596'800 * micros_per_second;
constexpr Micros max_timestamp = 253'402'300'800 * micros_per_second - 1;

// The run clock: DS_NOW if set (must parse, else throws std::runtime_error), else the system clock.
Micros now();
// The wall clock for durations, never affected by DS_NOW.
double monotonic_seconds();

}  // namespace ds
