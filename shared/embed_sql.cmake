# Build-time generator (cmake -P): writes a C++ source holding every sql/NNN_*.sql file as bytes.
# Hex arrays rather than raw string literals, so no SQL text can ever end the literal early.
if(NOT SQL_DIR OR NOT OUTPUT)
  message(FATAL_ERROR "usage: cmake -DSQL_DIR=dir -DOUTPUT=file.cpp -P embed_sql.cmake")
endif()
file(GLOB files ${SQL_DIR}/[0-9][0-9][0-9]_*.sql)
list(SORT files)

set(arrays "")
set(entries "")
set(count 0)
foreach(f IN LISTS files)
  get_filename_component(name ${f} NAME)
  file(READ ${f} hex HEX)
  string(LENGTH "${hex}" hex_len)
  math(EXPR size "${hex_len} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  # A trailing NUL keeps the array non-empty for an empty file; `size` excludes it.
  string(APPEND arrays "const unsigned char file_${count}[] = {${bytes}0x00};\n")
  string(APPEND entries "    {\"${name}\", reinterpret_cast<const char*>(file_${count}), ${size}},\n")
  math(EXPR count "${count} + 1")
endforeach()

set(text "// Generated at build time by shared/embed_sql.cmake from sql/NNN_*.sql; do not edit.
// The migrations this build knows: what ds-migrate applies (without --sql-dir) and --health checks.
#include <cstddef>

#include \"ds/migrations.hpp\"

namespace ds::migrate::detail {
namespace {
${arrays}}  // namespace

const EmbeddedFile embedded_files[] = {
${entries}    {nullptr, nullptr, 0},
};
const std::size_t embedded_file_count = ${count};

}  // namespace ds::migrate::detail
")
file(WRITE ${OUTPUT} "${text}")
