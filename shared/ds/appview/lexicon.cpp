// The lexicon readers: one place for how a count, a string, a time or an identifier is read from
// whatever a hostile or broken server sends (docs/design.md, "counts and times from the API").
#include "ds/appview/lexicon.hpp"

#include <algorithm>

#include "ds/json_writer.hpp"
#include "ds/log.hpp"

namespace ds::appview {

using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

namespace {
std::int64_t clamp(std::int64_t n) { return n < 0 ? 0 : (n > max_count ? max_count : n); }
}  // namespace

std::int64_t count_from_text(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  bool negative = false;
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return 0;
  std::int64_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return 0;
    if (v < max_count) v = v * 10 + (c - '0');
  }
  return negative ? 0 : clamp(v);
}

bool has_count(const object& o, std::string_view key) {
  element v;
  if (o[key].get(v)) return false;
  const auto t = v.type();
  return t == element_type::INT64 || t == element_type::UINT64 || t == element_type::DOUBLE ||
         t == element_type::STRING;
}

std::int64_t count_of(const object& o, std::string_view key) {
  element v;
  if (o[key].get(v)) return 0;
  switch (v.type()) {
    case element_type::INT64: return clamp(v.get_int64().value_unsafe());
    case element_type::UINT64: return max_count;  // simdjson uses UINT64 only above INT64_MAX
    case element_type::DOUBLE: {
      const double d = v.get_double().value_unsafe();
      if (!(d > 0)) return 0;
      return d >= static_cast<double>(max_count) ? max_count : static_cast<std::int64_t>(d);
    }
    case element_type::STRING: return count_from_text(v.get_string().value_unsafe());
    default: return 0;
  }
}

std::optional<std::string_view> string_of(const object& o, std::string_view key) {
  std::string_view s;
  if (o[key].get_string().get(s)) return std::nullopt;
  return s;
}

std::optional<Micros> time_of(const object& o, std::string_view key) {
  const auto s = string_of(o, key);
  if (!s) return std::nullopt;
  return parse_timestamp(*s);
}

bool usable_identifier(std::string_view s, std::size_t max_bytes) {
  if (s.empty() || s.size() > max_bytes || !is_valid_utf8(s)) return false;
  return std::none_of(s.begin(), s.end(),
                      [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

std::string truncate_utf8(std::string_view s, std::size_t max_bytes) {
  if (s.size() <= max_bytes) return std::string(s);
  std::size_t cut = max_bytes;
  // Back up over continuation bytes (10xxxxxx) so the cut falls before a lead byte.
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return std::string(s.substr(0, cut));
}

std::string open_response(std::string_view body, std::string_view endpoint, std::string_view list_key,
                          object& top, simdjson::dom::array& list) {
  // One parser per thread, reused: its buffers are the costly part. What it returns lives until
  // the next call, which is after the caller has read this answer.
  thread_local simdjson::dom::parser parser;
  element doc;
  if (auto err = parser.parse(body.data(), body.size()).get(doc))
    return "unparsable " + std::string(endpoint) + " response (" + simdjson::error_message(err) + ")";
  if (doc.get_object().get(top)) return std::string(endpoint) + " response is not a JSON object";
  if (top[list_key].get_array().get(list)) {
    if (auto e = string_of(top, "error")) {
      const auto m = string_of(top, "message");
      return "API error " + excerpt(*e) + (m ? ": " + excerpt(*m) : std::string());
    }
    return std::string(endpoint) + " response has no \"" + std::string(list_key) + "\" array";
  }
  return {};
}

}  // namespace ds::appview
