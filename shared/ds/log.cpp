// spdlog set-up for every program: stderr only, UTC timestamps, level from flags or LOG_LEVEL,
// and LOG_FORMAT=json for one JSON object per line (message escaped, safe for any content).
#include "ds/log.hpp"

#include <algorithm>
#include <cstdlib>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include "ds/clock.hpp"
#include "ds/json_writer.hpp"

namespace ds {
namespace {

// Formats a whole log line as JSON; spdlog's pattern flags cannot escape the message.
class JsonFormatter final : public spdlog::formatter {
 public:
  explicit JsonFormatter(std::string program) : program_(std::move(program)) {}
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string line;
    JsonWriter w(line);
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(msg.time.time_since_epoch()).count();
    const auto level = spdlog::level::to_string_view(msg.level);
    w.begin_object()
        .field("ts", format_ts(us))
        .field("level", std::string_view(level.data(), level.size()))
        .field("program", program_)
        .field("msg", std::string_view(msg.payload.data(), msg.payload.size()))
        .end_object();
    line += '\n';
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(program_); }

 private:
  static std::string format_ts(long long us) { return format_timestamp(us); }
  std::string program_;
};

}  // namespace

void init_logging(const std::string& program, bool verbose, bool quiet) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>(program, sink);
  const char* fmt = std::getenv("LOG_FORMAT");
  if (fmt && std::string(fmt) == "json")
    logger->set_formatter(std::make_unique<JsonFormatter>(program));
  else
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %n %^%l%$: %v", spdlog::pattern_time_type::utc);
  std::string level = "info";
  if (const char* l = std::getenv("LOG_LEVEL"); l && *l) level = l;
  std::transform(level.begin(), level.end(), level.begin(), [](unsigned char c) { return std::tolower(c); });
  if (level == "warning") level = "warn";
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") lvl = spdlog::level::info;
  if (verbose) lvl = spdlog::level::debug;
  if (quiet) lvl = spdlog::level::warn;
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

std::string excerpt(std::string_view s, std::size_t max) {
  std::string out;
  const std::size_t n = std::min(s.size(), max);
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  out = sanitize_utf8(out);
  if (s.size() > max) out += "...";
  return out;
}

}  // namespace ds
