// Logging for every program: spdlog to stderr only (stdout is data), level from --verbose/--quiet/
// LOG_LEVEL, UTC timestamps, and the program name on each line.
#pragma once
#include <string>

#include <spdlog/spdlog.h>

namespace ds {

// level: "trace","debug","info","warning"/"warn","error","critical","off" (any case). --verbose
// forces debug, --quiet forces warning. LOG_FORMAT=json makes each line one JSON object.
void init_logging(const std::string& program, bool verbose, bool quiet);

// Shortens `s` to at most `max` bytes for an error excerpt, escaping control bytes.
std::string excerpt(std::string_view s, std::size_t max = 80);

}  // namespace ds
