// Appends JSON to a std::string without building a DOM: the output side of every record.
// Strings are escaped and made valid UTF-8 (invalid bytes become U+FFFD, NUL becomes U+FFFD too).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ds {

class JsonWriter {
 public:
  explicit JsonWriter(std::string& out) : out_(out) {}
  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  JsonWriter& key(std::string_view k);
  JsonWriter& string(std::string_view v);
  JsonWriter& optional_string(const std::optional<std::string>& v);  // null when empty
  JsonWriter& integer(std::int64_t v);
  JsonWriter& number(double v);
  JsonWriter& boolean(bool v);
  JsonWriter& null();
  JsonWriter& raw(std::string_view json);  // already-encoded JSON value

  // Shorthands for `key(k).value(v)`.
  JsonWriter& field(std::string_view k, std::string_view v) { return key(k).string(v); }
  JsonWriter& field(std::string_view k, const char* v) { return key(k).string(v); }
  JsonWriter& field(std::string_view k, const std::string& v) { return key(k).string(v); }
  JsonWriter& field(std::string_view k, std::int64_t v) { return key(k).integer(v); }
  JsonWriter& field(std::string_view k, int v) { return key(k).integer(v); }
  JsonWriter& field(std::string_view k, bool v) { return key(k).boolean(v); }
  JsonWriter& field(std::string_view k, const std::optional<std::string>& v) {
    return key(k).optional_string(v);
  }

 private:
  void comma();
  std::string& out_;
  bool need_comma_ = false;
};

// Appends `s` to `out` as valid UTF-8 with no NUL: invalid sequences and U+0000 become U+FFFD.
// PostgreSQL text cannot hold NUL, and every string we store passes through here or the writer.
void append_sanitized_utf8(std::string& out, std::string_view s);
std::string sanitize_utf8(std::string_view s);
bool is_valid_utf8(std::string_view s);

}  // namespace ds
