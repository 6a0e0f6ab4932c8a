# How every C++ file is compiled, shared by the product (CMakeLists.txt) and the separate clang
# fuzz project (fuzz/CMakeLists.txt), so the fuzzed code is built the way it ships.
set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)
if(NOT CMAKE_BUILD_TYPE)
  set(CMAKE_BUILD_TYPE RelWithDebInfo)
endif()

add_compile_options(-Wall -Wextra)
# simdjson On Demand picks its kernel at compile time: without SSE4.2/PCLMUL it falls back to the
# scalar one. Every x86-64 CPU since 2010 has both (x86-64-v2); turn off for older machines.
option(DS_X86_64_V2 "Compile for x86-64-v2 so simdjson uses its SIMD kernel" ON)
if(DS_X86_64_V2 AND CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  add_compile_options(-msse4.2 -mpclmul -mpopcnt)
endif()
