// Tests for ds::JsonWriter and the UTF-8 sanitiser: output must always be valid JSON and UTF-8
// without NUL, whatever bytes came in (PostgreSQL text cannot hold NUL).
#include <catch2/catch.hpp>

#include <simdjson.h>

#include "ds/json_writer.hpp"

TEST_CASE("strings are escaped and parse back to the same text") {
  const std::string tricky = "quote\" back\\slash\nnew\ttab\x01 ctl é 😀 ";
  std::string out;
  ds::JsonWriter(out).begin_object().field("s", tricky).field("n", std::int64_t{-42}).end_object();
  simdjson::dom::parser p;
  auto doc = p.parse(out);
  REQUIRE(doc.error() == simdjson::SUCCESS);
  CHECK(std::string(std::string_view(doc["s"])) == tricky);
  CHECK(int64_t(doc["n"]) == -42);
}

TEST_CASE("invalid UTF-8 and NUL become U+FFFD") {
  const std::string bad = std::string("a\0b", 3) + "\xff" + "\xc3" + "\xed\xa0\x80" + "z";
  const std::string clean = ds::sanitize_utf8(bad);
  CHECK(ds::is_valid_utf8(clean));
  CHECK(clean.find('\0') == std::string::npos);
  CHECK(clean == "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz");  // FF, C3, ED, A0, 80
  std::string out;
  ds::JsonWriter(out).string(bad);
  CHECK(ds::is_valid_utf8(out));
  CHECK(out.find('\0') == std::string::npos);
  CHECK(ds::is_valid_utf8("plain ascii and é and 😀"));
  CHECK_FALSE(ds::is_valid_utf8("\xc0\xaf"));  // overlong
}
