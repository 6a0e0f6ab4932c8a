// libFuzzer target for ds::fuzz::get_profiles (fuzz/entry_points.hpp); built by fuzz/CMakeLists.txt with
// clang only. The checks live in the entry point so the g++ regression replay runs the same ones.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "entry_points.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    ds::fuzz::get_profiles(data, size);
  } catch (const ds::fuzz::Violation& v) {
    std::fprintf(stderr, "invariant broken: %s\n", v.what());  // then a crash, with the input kept
    std::abort();
  }
  return 0;
}
