// Progress of a long-running stage for the person or the log watching it: a rate-limited one-line
// status on a terminal, a periodic log line otherwise, nothing with --quiet (docs/operations.md).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace ds {

// How to wire it into a stage (the whole API):
//
//   ds::Progress progress("ds-fetch-feeds", common.quiet);  // after ds::init_program()
//   progress.set_total(n);          // optional: users expected, when the stage knows
//   progress.add_users();           // one user finished (done/total)
//   progress.add_posts(k);          // posts emitted
//   progress.add_requests(1);       // HTTP requests sent (retries included)
//   progress.add_rate_wait();       // the client waited for a rate limit (429, Remaining = 0)
//   progress.tick();                // nothing counted, time passed: report if one is due
//   http.set_observer(ds::progress_observer(progress));  // all of the above from the HTTP client
//   progress.finish();              // before the summary line; also done by the destructor
//
// Every call is cheap (a mutex and a clock read) and thread-safe; it reports only when due:
//   - terminal (isatty(2), LOG_FORMAT is not json): `\r` + one line on stderr at most 4 times a
//     second, cut to the terminal width. Log lines written through spdlog meanwhile clear the line
//     first (the stage's logger sinks are wrapped while a Progress is alive), and finish() clears
//     it, so nothing is left half-overwritten.
//   - otherwise: one spdlog info line "progress: ..." every PROGRESS_INTERVAL_S seconds (default
//     30; 0 turns them off), the first one after the first interval.
//   - quiet: nothing.
// One Progress per process at a time (it wraps the default logger).
class Progress {
 public:
  enum class Mode { off, terminal, log };

  // Everything the constructor would otherwise take from the process, so tests can drive it.
  struct Settings {
    Mode mode = Mode::off;
    double terminal_interval_s = 0.25;       // at most 4 redraws a second
    double log_interval_s = 30;              // PROGRESS_INTERVAL_S
    int width = 0;                           // terminal columns; 0 = no cut
    std::function<double()> clock;           // monotonic seconds; default ds::monotonic_seconds
    std::function<void(std::string_view)> terminal;  // raw bytes for the terminal; default stderr
    std::function<void(const std::string&)> log;     // one log line; default spdlog::info
    bool wrap_logger = false;                // clear the terminal line before spdlog lines
  };

  // The stage's figures at one moment; users_total < 0 when unknown.
  struct Counts {
    std::int64_t users = 0;
    std::int64_t users_total = -1;
    std::int64_t posts = 0;
    std::int64_t requests = 0;
    std::int64_t rate_waits = 0;
  };

  // For stages: mode from --quiet, isatty(2), LOG_FORMAT and PROGRESS_INTERVAL_S.
  Progress(std::string stage, bool quiet);
  // For tests and special cases.
  Progress(std::string stage, Settings settings);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void set_total(std::int64_t users);
  void add_users(std::int64_t n = 1);
  void add_posts(std::int64_t n);
  void add_requests(std::int64_t n = 1);
  void add_rate_wait();
  // Reports if one is due though nothing was counted: a stage sitting out a long rate-limit hold
  // still shows its elapsed time moving, and a log line still comes every interval.
  void tick();
  // Clears the terminal line (nothing else is printed: the stage writes its own summary). Later
  // calls to add_* print nothing more.
  void finish();

  Mode mode() const { return s_.mode; }
  Counts counts() const;

  // The text of one report, without "\r" or a trailing newline (exposed for tests):
  //   "ds-fetch-feeds: users 120/1000 (12.0%), posts 4567, requests 130 (9.8/s), rate-limit
  //    waits 2, 0:42 elapsed, ETA 5:08"   (posts/requests/waits only when non-zero, ETA only
  //    with a total; requests per second is the average since start)
  static std::string format(std::string_view stage, const Counts& c, double elapsed_s);

  // The mode the stage constructor picks (exposed for tests).
  static Mode choose_mode(bool quiet, bool stderr_is_tty, bool json_logs);

 private:
  void maybe_report();  // with mu_ held
  void draw();          // with mu_ held
  void clear_line();    // with mu_ held
  friend class ProgressLogSink;

  std::string stage_;
  Settings s_;
  mutable std::mutex mu_;
  Counts c_;
  double started_ = 0;
  double last_report_ = 0;
  bool reported_once_ = false;
  bool line_shown_ = false;
  bool on_stderr_ = false;  // the default terminal: a stop signal's message must know of its line
  void set_line_shown(bool shown);
  bool finished_ = false;
  struct LoggerHook;
  std::unique_ptr<LoggerHook> hook_;
};

}  // namespace ds
