// Progress reports for long-running stages (see progress.hpp for the contract). The terminal line
// and spdlog share stderr, so log lines go through a sink wrapper that wipes the line first.
#include "ds/progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <vector>

#include <spdlog/sinks/sink.h>
#include <spdlog/spdlog.h>

#include "ds/clock.hpp"
#include "ds/signals.hpp"

namespace ds {

// Wraps one of the logger's sinks: a log line first wipes the progress line, which the next
// report redraws. Without it a log line would start in the middle of the progress text.
class ProgressLogSink final : public spdlog::sinks::sink {
 public:
  ProgressLogSink(Progress& p, spdlog::sink_ptr inner) : p_(p), inner_(std::move(inner)) {}
  void log(const spdlog::details::log_msg& msg) override {
    std::lock_guard<std::mutex> lock(p_.mu_);
    p_.clear_line();
    inner_->log(msg);
  }
  void flush() override { inner_->flush(); }
  void set_pattern(const std::string& pattern) override { inner_->set_pattern(pattern); }
  void set_formatter(std::unique_ptr<spdlog::formatter> f) override { inner_->set_formatter(std::move(f)); }
  const spdlog::sink_ptr& inner() const { return inner_; }

 private:
  Progress& p_;
  spdlog::sink_ptr inner_;
};

// The logger whose sinks were wrapped, and its original sinks, to put back on destruction.
struct Progress::LoggerHook {
  std::shared_ptr<spdlog::logger> logger;
  std::vector<spdlog::sink_ptr> original;
};

namespace {

std::string duration_text(double s) {
  if (!(s >= 0)) s = 0;
  const auto total = static_cast<long long>(s);
  const long long h = total / 3600, m = (total / 60) % 60, sec = total % 60;
  char buf[32];
  if (h > 0) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", h, m, sec);
  else std::snprintf(buf, sizeof buf, "%lld:%02lld", m, sec);
  return buf;
}

double interval_from_env() {
  const char* v = std::getenv("PROGRESS_INTERVAL_S");
  if (!v || !*v) return 30;
  char* end = nullptr;
  const double d = std::strtod(v, &end);
  if (end == v || *end != '\0' || !(d >= 0) || !std::isfinite(d)) {
    spdlog::warn("PROGRESS_INTERVAL_S={} is not a number of seconds; using 30", v);
    return 30;
  }
  return d;
}

int terminal_width() {
  winsize ws{};
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 0;
}

Progress::Settings stage_settings(bool quiet) {
  Progress::Settings s;
  const char* fmt = std::getenv("LOG_FORMAT");
  const bool json = fmt && std::string_view(fmt) == "json";
  s.mode = Progress::choose_mode(quiet, isatty(STDERR_FILENO) == 1, json);
  // PROGRESS=log|off: a pipeline whose stages share one terminal (pipelines/snapshot.sh) asks for
  // whole log lines, since five status lines redrawn with `\r` by five processes overwrite each other.
  if (const char* want = std::getenv("PROGRESS"); want && *want && s.mode != Progress::Mode::off) {
    const std::string_view w(want);
    if (w == "off") s.mode = Progress::Mode::off;
    else if (w == "log") s.mode = Progress::Mode::log;
    else if (w != "auto") spdlog::warn("PROGRESS={} is not auto, log or off; using auto", want);
  }
  if (s.mode == Progress::Mode::log) {
    s.log_interval_s = interval_from_env();
    if (s.log_interval_s == 0) s.mode = Progress::Mode::off;
  }
  if (s.mode == Progress::Mode::terminal) {
    s.width = terminal_width();
    s.wrap_logger = true;
  }
  return s;
}

}  // namespace

Progress::Mode Progress::choose_mode(bool quiet, bool stderr_is_tty, bool json_logs) {
  if (quiet) return Mode::off;
  // JSON logs are read by programs: a `\r` status line would corrupt them, so they get log lines.
  if (stderr_is_tty && !json_logs) return Mode::terminal;
  return Mode::log;
}

Progress::Progress(std::string stage, bool quiet) : Progress(std::move(stage), stage_settings(quiet)) {}

Progress::Progress(std::string stage, Settings settings) : stage_(std::move(stage)), s_(std::move(settings)) {
  if (!s_.clock) s_.clock = [] { return monotonic_seconds(); };
  if (!s_.terminal) {
    s_.terminal = [](std::string_view bytes) {
      std::fwrite(bytes.data(), 1, bytes.size(), stderr);
      std::fflush(stderr);
    };
    on_stderr_ = true;
  }
  if (!s_.log) s_.log = [](const std::string& line) { spdlog::info("{}", line); };
  started_ = s_.clock();
  last_report_ = started_;
  if (s_.mode == Mode::terminal && s_.wrap_logger) {
    if (auto logger = spdlog::default_logger()) {
      hook_ = std::make_unique<LoggerHook>();
      hook_->logger = logger;
      hook_->original = logger->sinks();
      for (auto& sink : logger->sinks()) sink = std::make_shared<ProgressLogSink>(*this, sink);
    }
  }
}

Progress::~Progress() {
  finish();
  if (hook_) hook_->logger->sinks() = hook_->original;
}

void Progress::set_total(std::int64_t users) {
  std::lock_guard<std::mutex> lock(mu_);
  c_.users_total = users;
  maybe_report();
}

void Progress::add_users(std::int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  c_.users += n;
  maybe_report();
}

void Progress::add_posts(std::int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  c_.posts += n;
  maybe_report();
}

void Progress::add_requests(std::int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  c_.requests += n;
  maybe_report();
}

void Progress::add_rate_wait() {
  std::lock_guard<std::mutex> lock(mu_);
  ++c_.rate_waits;
  maybe_report();
}

void Progress::tick() {
  std::lock_guard<std::mutex> lock(mu_);
  maybe_report();
}

void Progress::finish() {
  std::lock_guard<std::mutex> lock(mu_);
  clear_line();
  finished_ = true;
}

Progress::Counts Progress::counts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return c_;
}

void Progress::maybe_report() {
  if (finished_ || s_.mode == Mode::off) return;
  const double t = s_.clock();
  if (s_.mode == Mode::terminal) {
    // The first update draws at once: a terminal user wants to see the stage is alive.
    if (reported_once_ && t - last_report_ < s_.terminal_interval_s) return;
    last_report_ = t;
    reported_once_ = true;
    draw();
    return;
  }
  if (t - last_report_ < s_.log_interval_s) return;
  last_report_ = t;
  reported_once_ = true;
  s_.log("progress: " + format(stage_, c_, t - started_));
}

void Progress::draw() {
  std::string text = format(stage_, c_, s_.clock() - started_);
  // A line that wraps cannot be taken back with `\r`: keep it one column short of the width.
  if (s_.width > 1 && text.size() > static_cast<std::size_t>(s_.width - 1)) text.resize(s_.width - 1);
  s_.terminal(clear_line_sequence + text);
  set_line_shown(true);
}

void Progress::clear_line() {
  if (!line_shown_) return;
  s_.terminal(clear_line_sequence);
  set_line_shown(false);
}

void Progress::set_line_shown(bool shown) {
  line_shown_ = shown;
  if (on_stderr_) note_status_line(shown);  // a stop signal's message then clears the line first
}

std::string Progress::format(std::string_view stage, const Counts& c, double elapsed_s) {
  // Appended piece by piece: GCC 12 at -O3 raises a false -Wrestrict on `"literal" + std::string`.
  std::string out(stage);
  const auto add = [&out](std::initializer_list<std::string_view> parts) {
    for (const auto p : parts) out += p;
  };
  add({": users ", std::to_string(c.users)});
  if (c.users_total >= 0) {
    add({"/", std::to_string(c.users_total)});
    if (c.users_total > 0) {
      char pct[32];
      std::snprintf(pct, sizeof pct, " (%.1f%%)", 100.0 * static_cast<double>(c.users) / static_cast<double>(c.users_total));
      out += pct;
    }
  }
  if (c.posts > 0) add({", posts ", std::to_string(c.posts)});
  if (c.requests > 0) {
    char rate[48];
    std::snprintf(rate, sizeof rate, " (%.1f/s)", elapsed_s > 0 ? static_cast<double>(c.requests) / elapsed_s : 0.0);
    add({", requests ", std::to_string(c.requests), rate});
  }
  if (c.rate_waits > 0) add({", rate-limit waits ", std::to_string(c.rate_waits)});
  add({", ", duration_text(elapsed_s), " elapsed"});
  if (c.users_total > c.users && c.users > 0 && elapsed_s > 0) {
    const double remaining = elapsed_s / static_cast<double>(c.users) * static_cast<double>(c.users_total - c.users);
    add({", ETA ", duration_text(remaining)});
  }
  return out;
}

}  // namespace ds
