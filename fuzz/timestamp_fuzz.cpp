// libFuzzer target for ds::fuzz::timestamp (fuzz/entry_points.hpp); built by fuzz/CMakeLists.txt with
// clang only. The checks live in the entry point so the g++ regression replay runs the same ones.
#include <cstddef>
#include <cstdint>

#include "entry_points.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return ds::fuzz::fuzz_one(ds::fuzz::timestamp, data, size);
}
