// Tests for the getProfiles parser: the real 2025-05-19 capture, then hostile and odd payloads
// (table-driven), so bad input never reaches the database or kills a batch.
#include <fstream>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>
#include <simdjson.h>

#include "ds/json_writer.hpp"
#include "ds/appview/get_profiles.hpp"
#include "ds/appview/lexicon.hpp"
#include "ds/appview/requests.hpp"

#include "fetch_stage_fixture.hpp"

using ds::appview::parse_get_profiles;
using ds::appview::ProfilesPage;

namespace {

using fetch_fixture::read_fixture;

// Wraps one profile object in a getProfiles body.
std::string body_with(const std::string& item) { return "{\"profiles\":[" + item + "]}"; }

}  // namespace

TEST_CASE("getProfiles capture: the profile's fields", "[profiles_parser]") {
  const std::string body = read_fixture("getProfiles.2025-05-19.json");
  // Expected values are read from the capture with simdjson directly, not typed in.
  simdjson::dom::parser dom;
  simdjson::dom::element first = dom.parse(body)["profiles"].at(0);
  const std::string did(first["did"].get_string().value());
  const std::string handle(first["handle"].get_string().value());
  const std::string name(first["displayName"].get_string().value());
  const std::string avatar(first["avatar"].get_string().value());
  const std::int64_t followers = first["followersCount"].get_int64().value();
  const std::int64_t follows = first["followsCount"].get_int64().value();
  const std::int64_t posts = first["postsCount"].get_int64().value();

  ProfilesPage page;
  REQUIRE(parse_get_profiles(body, page).empty());
  REQUIRE(page.profiles.size() == 1);
  CHECK(page.problems.empty());
  const auto& p = page.profiles[0];
  CHECK(p.did == did);
  CHECK(p.did == "did:plc:wpe35pganb6d4pg4ekmfy6u5");
  CHECK(p.profile.handle == handle);
  CHECK(p.profile.handle == "chriskenny.bsky.social");
  CHECK(p.profile.display_name == name);
  CHECK(p.profile.avatar == avatar);
  CHECK(p.profile.followers == followers);
  CHECK(p.profile.following == follows);
  CHECK(p.profile.posts == posts);
  CHECK(followers > 0);  // the capture has real counts, so a 0 here would mean a lost field
}

// Bodies that are not an answer at all fail as a whole: tests/unit/appview_test.cpp runs those
// cases through every endpoint's parser.

TEST_CASE("getProfiles: counts are clamped to [0, 2^31-1]", "[profiles_parser]") {
  struct Case {
    const char* value;  // JSON for followersCount
    std::int64_t expected;
  };
  const Case cases[] = {
      {"12", 12},
      {"0", 0},
      {"-5", 0},
      {"2147483647", 2147483647},
      {"2147483648", 2147483647},
      {"3000000000", 2147483647},
      {"18446744073709551615", 2147483647},  // uint64 max
      {"1e20", 2147483647},
      {"12.7", 12},
      {"-0.5", 0},
      {"\"42\"", 42},
      {"\" 42 \"", 42},
      {"\"-3\"", 0},
      {"\"abc\"", 0},
      {"\"\"", 0},
      {"\"99999999999999999999999\"", 2147483647},
      {"true", 0},
      {"null", 0},
      {"{}", 0},
      {"[1]", 0},
  };
  for (const auto& c : cases) {
    INFO("followersCount: " << c.value);
    ProfilesPage page;
    REQUIRE(parse_get_profiles(
                body_with(std::string(R"({"did":"did:plc:a","handle":"a.test","followersCount":)") + c.value + "}"),
                page)
                .empty());
    REQUIRE(page.profiles.size() == 1);
    CHECK(page.profiles[0].profile.followers == c.expected);
  }
}

TEST_CASE("getProfiles: optional fields may be missing, null or of the wrong type", "[profiles_parser]") {
  ProfilesPage page;
  REQUIRE(parse_get_profiles(body_with(R"({"did":"did:plc:a","handle":"a.test"})"), page).empty());
  REQUIRE(page.profiles.size() == 1);
  const auto& p = page.profiles[0].profile;
  CHECK_FALSE(p.display_name.has_value());
  CHECK_FALSE(p.avatar.has_value());
  CHECK(p.followers == 0);
  CHECK(p.following == 0);
  CHECK(p.posts == 0);
  CHECK_FALSE(p.posts_known);  // absent: 0, but not a count the request economy may trust

  REQUIRE(parse_get_profiles(
              body_with(R"({"did":"did:plc:a","handle":"a.test","displayName":null,"avatar":7,"followsCount":3,"postsCount":"8"})"),
              page)
              .empty());
  REQUIRE(page.profiles.size() == 1);
  CHECK_FALSE(page.profiles[0].profile.display_name.has_value());
  CHECK_FALSE(page.profiles[0].profile.avatar.has_value());
  CHECK(page.profiles[0].profile.following == 3);
  CHECK(page.profiles[0].profile.posts == 8);
  CHECK(page.profiles[0].profile.posts_known);

  // An empty display name is what the account says; it is kept, not turned into null.
  REQUIRE(parse_get_profiles(body_with(R"({"did":"did:plc:a","handle":"a.test","displayName":""})"), page).empty());
  CHECK(page.profiles[0].profile.display_name == std::string());
}

TEST_CASE("getProfiles: display names are made safe for varchar(255)", "[profiles_parser]") {
  SECTION("NUL becomes U+FFFD") {
    ProfilesPage page;
    REQUIRE(parse_get_profiles(body_with(R"({"did":"did:plc:a","handle":"a.test","displayName":"a\u0000b"})"), page).empty());
    CHECK(page.profiles[0].profile.display_name == std::string("a\xEF\xBF\xBD" "b"));
  }
  SECTION("long names are cut at a character boundary") {
    std::string name;
    for (int i = 0; i < 200; ++i) name += "\xC3\xA9";  // é: 2 bytes, so 255 falls mid-character
    ProfilesPage page;
    REQUIRE(parse_get_profiles(body_with("{\"did\":\"did:plc:a\",\"handle\":\"a.test\",\"displayName\":\"" + name + "\"}"), page).empty());
    const std::string got = *page.profiles[0].profile.display_name;
    CHECK(got.size() == 254);
    CHECK(ds::is_valid_utf8(got));
    CHECK(got == name.substr(0, 254));
  }
  SECTION("4-byte characters and control characters survive intact when short") {
    ProfilesPage page;
    REQUIRE(parse_get_profiles(body_with(R"({"did":"did:plc:a","handle":"a.test","displayName":"\ud83e\udd8b line\nbreak"})"), page).empty());
    CHECK(page.profiles[0].profile.display_name == std::string("\xF0\x9F\xA6\x8B line\nbreak"));
  }
  SECTION("exactly 255 bytes is kept whole") {
    const std::string name(255, 'x');
    ProfilesPage page;
    REQUIRE(parse_get_profiles(body_with("{\"did\":\"did:plc:a\",\"handle\":\"a.test\",\"displayName\":\"" + name + "\"}"), page).empty());
    CHECK(page.profiles[0].profile.display_name == name);
  }
}

TEST_CASE("truncate_utf8 never splits a character", "[profiles_parser]") {
  CHECK(ds::appview::truncate_utf8("abc", 5) == "abc");
  CHECK(ds::appview::truncate_utf8("abcdef", 3) == "abc");
  CHECK(ds::appview::truncate_utf8("a\xF0\x9F\xA6\x8B", 4) == "a");  // 4-byte char cut -> dropped whole
  CHECK(ds::appview::truncate_utf8("a\xF0\x9F\xA6\x8B", 5) == "a\xF0\x9F\xA6\x8B");
  CHECK(ds::appview::truncate_utf8("\xC3\xA9\xC3\xA9", 3) == "\xC3\xA9");
}

TEST_CASE("getProfiles: unusable items are reported, the rest still parse", "[profiles_parser]") {
  struct Case {
    const char* name;
    const char* item;
    const char* problem_did;  // did reported with the problem ("" when unreadable)
  };
  const std::string long_handle(300, 'h');
  const Case cases[] = {
      {"not an object", "42", ""},
      {"no did", R"({"handle":"a.test"})", ""},
      {"did not a string", R"({"did":5,"handle":"a.test"})", ""},
      {"empty did", R"({"did":"","handle":"a.test"})", ""},
      {"no handle", R"({"did":"did:plc:x"})", "did:plc:x"},
      {"empty handle", R"({"did":"did:plc:x","handle":""})", "did:plc:x"},
      {"handle with a control character", R"({"did":"did:plc:x","handle":"a\tb"})", "did:plc:x"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    ProfilesPage page;
    const std::string body =
        std::string("{\"profiles\":[") + c.item + R"(,{"did":"did:plc:good","handle":"good.test"}]})";
    REQUIRE(parse_get_profiles(body, page).empty());
    REQUIRE(page.problems.size() == 1);
    CHECK(page.problems[0].did == c.problem_did);
    REQUIRE(page.profiles.size() == 1);
    CHECK(page.profiles[0].did == "did:plc:good");
  }
  ProfilesPage page;
  REQUIRE(parse_get_profiles(body_with("{\"did\":\"did:plc:x\",\"handle\":\"" + long_handle + "\"}"), page).empty());
  CHECK(page.profiles.empty());
  REQUIRE(page.problems.size() == 1);
  CHECK(page.problems[0].did == "did:plc:x");
}

TEST_CASE("getProfiles: a repeated did keeps its first entry; handle.invalid is a handle", "[profiles_parser]") {
  ProfilesPage page;
  REQUIRE(parse_get_profiles(
              R"({"profiles":[{"did":"did:plc:a","handle":"handle.invalid","postsCount":1},{"did":"did:plc:a","handle":"b.test","postsCount":2}]})",
              page)
              .empty());
  REQUIRE(page.profiles.size() == 1);
  CHECK(page.profiles[0].profile.handle == "handle.invalid");
  CHECK(page.profiles[0].profile.posts == 1);
  CHECK(page.problems.empty());
}
