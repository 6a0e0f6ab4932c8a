// Replays every input kept in fuzz/regressions/TARGET/ (crashes and broken invariants the fuzzers
// found, and hand-made hostile cases) through the fuzz entry points, under g++ like the product.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "../../fuzz/entry_points.hpp"

namespace {

namespace fs = std::filesystem;

std::vector<fs::path> inputs_of(const std::string& target) {
  std::vector<fs::path> files;
  const fs::path dir = fs::path(DS_SOURCE_DIR) / "fuzz" / "regressions" / target;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

void replay(const std::string& target, const std::function<void(const std::uint8_t*, std::size_t)>& entry) {
  const auto files = inputs_of(target);
  // An empty folder would make this test pass without testing anything.
  REQUIRE_FALSE(files.empty());
  for (const auto& f : files) {
    INFO(f.string());
    std::ifstream in(f, std::ios::binary);
    const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK_NOTHROW(entry(reinterpret_cast<const std::uint8_t*>(data.data()), data.size()));
  }
}

}  // namespace

TEST_CASE("fuzz regressions: NDJSON record reader", "[fuzz]") { replay("record_input", ds::fuzz::record_input); }
TEST_CASE("fuzz regressions: getAuthorFeed parser", "[fuzz]") { replay("author_feed", ds::fuzz::author_feed); }
TEST_CASE("fuzz regressions: getProfiles parser", "[fuzz]") { replay("get_profiles", ds::fuzz::get_profiles); }
TEST_CASE("fuzz regressions: timestamp parser", "[fuzz]") { replay("timestamp", ds::fuzz::timestamp); }

TEST_CASE("fuzz entry points detect a broken invariant", "[fuzz]") {
  // The replay above is only worth something if the checks can fail: a violation must throw.
  CHECK_THROWS_AS(ds::fuzz::require(false, "x"), ds::fuzz::Violation);
  // And the offset that once carried year 0001 out of range (formatted as year 0000) is refused.
  const std::string early = "0001-01-01T00:00:00+01:00";
  CHECK_FALSE(ds::parse_timestamp(early).has_value());
  CHECK_NOTHROW(ds::fuzz::timestamp(reinterpret_cast<const std::uint8_t*>(early.data()), early.size()));
}
