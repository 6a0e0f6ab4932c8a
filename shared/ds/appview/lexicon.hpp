// The lexicon readers every AppView parser uses: counts that saturate and tolerate strings,
// strings, timestamps and identifiers, read from simdjson DOM objects with one set of rules.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <simdjson.h>

#include "ds/clock.hpp"

namespace ds::appview {

// Counts land in PostgreSQL int columns: absent, null, non-numeric or negative counts read as 0,
// numeric strings ("12", " +3 ") are accepted, and anything above 2^31-1 saturates there.
constexpr std::int64_t max_count = 2147483647;

// "123", " 42 ", "+7" -> the number (saturating); "-5" -> 0; anything else -> 0.
std::int64_t count_from_text(std::string_view s);
// o[key] as a count, by the rule above.
std::int64_t count_of(const simdjson::dom::object& o, std::string_view key);
// Whether `key` holds a count at all (a number or a numeric string), not absent or null.
bool has_count(const simdjson::dom::object& o, std::string_view key);
// o[key] when it is a string; a view into the parser's buffer, valid until its next parse.
std::optional<std::string_view> string_of(const simdjson::dom::object& o, std::string_view key);
// o[key] when it is a string that ds::parse_timestamp accepts.
std::optional<Micros> time_of(const simdjson::dom::object& o, std::string_view key);

// Identifiers (DIDs, handles, URIs, cursors) go into varchar keys and URLs and must decode
// downstream: non-empty, at most `max_bytes`, valid UTF-8, no control bytes.
bool usable_identifier(std::string_view s, std::size_t max_bytes);

// Shortens valid UTF-8 to at most `max_bytes` without splitting a character.
std::string truncate_utf8(std::string_view s, std::size_t max_bytes);

// Opens a response body as a whole before any of it is used, so a truncated body is one clean
// error (which the caller retries), never a half-read answer. On success `list` is the array
// under `list_key` and `top` the object holding it. Otherwise returns why, naming `endpoint`:
// unparsable JSON, not an object, an {"error":...,"message":...} answer, or no such array.
std::string open_response(std::string_view body, std::string_view endpoint, std::string_view list_key,
                          simdjson::dom::object& top, simdjson::dom::array& list);

}  // namespace ds::appview
