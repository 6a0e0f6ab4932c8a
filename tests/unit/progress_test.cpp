// Tests for stage progress reporting: formatting, the terminal's 4-per-second limit, the periodic
// log lines, quiet mode and clearing the line around log output, all with an injected clock.
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "ds/progress.hpp"

namespace {

struct Harness {
  double now = 100;  // any origin: only differences matter
  std::vector<std::string> terminal;  // each write to the terminal
  std::vector<std::string> logs;
  ds::Progress::Settings settings(ds::Progress::Mode mode) {
    ds::Progress::Settings s;
    s.mode = mode;
    s.log_interval_s = 30;
    s.clock = [this] { return now; };
    s.terminal = [this](std::string_view b) { terminal.emplace_back(b); };
    s.log = [this](const std::string& l) { logs.push_back(l); };
    return s;
  }
  int draws() const {
    int n = 0;
    for (const auto& t : terminal) n += t != "\r\x1b[K";
    return n;
  }
};

}  // namespace

TEST_CASE("progress: one report's text", "[progress]") {
  using P = ds::Progress;
  P::Counts c;
  c.users = 120;
  CHECK(P::format("ds-select-users", c, 42) == "ds-select-users: users 120, 0:42 elapsed");
  c.users_total = 1000;
  c.posts = 4567;
  c.requests = 130;
  c.rate_waits = 2;
  CHECK(P::format("ds-fetch-feeds", c, 13) ==
        "ds-fetch-feeds: users 120/1000 (12.0%), posts 4567, requests 130 (10.0/s), rate-limit waits 2, "
        "0:13 elapsed, ETA 1:35");
  c = P::Counts{};
  c.users_total = 0;  // an empty run: no division by zero, no ETA
  CHECK(P::format("x", c, 0) == "x: users 0/0, 0:00 elapsed");
  c.users = 5;
  c.users_total = 5;  // done: no ETA
  CHECK(P::format("x", c, 3725) == "x: users 5/5 (100.0%), 1:02:05 elapsed");
}

TEST_CASE("progress: the terminal line is redrawn at most 4 times a second", "[progress]") {
  Harness h;
  ds::Progress p("ds-fetch-feeds", h.settings(ds::Progress::Mode::terminal));
  p.add_users();  // the first update draws at once
  REQUIRE(h.draws() == 1);
  CHECK(h.terminal.back() == "\r\x1b[Kds-fetch-feeds: users 1, 0:00 elapsed");
  // 1000 updates over one second, 1 ms apart: 4 more draws (at +0.25, +0.5, +0.75, +1.0).
  for (int i = 1; i <= 1000; ++i) {
    h.now = 100 + i / 1000.0;
    p.add_posts(1);
  }
  CHECK(h.draws() == 5);
  CHECK(h.terminal.back().rfind("\r\x1b[Kds-fetch-feeds: users 1, posts 1000", 0) == 0);
  CHECK(h.logs.empty());
  p.finish();
  CHECK(h.terminal.back() == "\r\x1b[K");  // cleared for the summary line
  h.now += 10;
  p.add_users();
  CHECK(h.draws() == 5);  // nothing after finish
}

TEST_CASE("progress: a terminal line never wraps", "[progress]") {
  Harness h;
  auto s = h.settings(ds::Progress::Mode::terminal);
  s.width = 22;
  ds::Progress p("ds-fetch-profiles", s);
  p.add_requests(12345);
  CHECK(h.terminal.back() == "\r\x1b[K" + std::string("ds-fetch-profiles: us"));  // 21 columns
}

TEST_CASE("progress: without a terminal, one log line per interval", "[progress]") {
  Harness h;
  ds::Progress p("ds-select-users", h.settings(ds::Progress::Mode::log));
  for (int i = 0; i < 95; ++i) {  // 95 s, one user a second
    h.now = 100 + i;
    p.add_users();
  }
  // at 30, 60 and 90 s; none at the start
  REQUIRE(h.logs.size() == 3);
  CHECK(h.logs[0] == "progress: ds-select-users: users 31, 0:30 elapsed");
  CHECK(h.logs[2] == "progress: ds-select-users: users 91, 1:30 elapsed");
  CHECK(h.terminal.empty());
  p.finish();
  CHECK(h.terminal.empty());  // nothing to clear in log mode
}

TEST_CASE("progress: quiet prints nothing at all", "[progress]") {
  Harness h;
  ds::Progress p("ds-load", h.settings(ds::Progress::Mode::off));
  for (int i = 0; i < 100; ++i) {
    h.now = 100 + i;
    p.add_users();
    p.add_rate_wait();
  }
  p.finish();
  CHECK(h.terminal.empty());
  CHECK(h.logs.empty());
  CHECK(p.counts().users == 100);
  CHECK(p.counts().rate_waits == 100);
}

TEST_CASE("progress: mode from --quiet, the terminal and LOG_FORMAT", "[progress]") {
  using P = ds::Progress;
  CHECK(P::choose_mode(true, true, false) == P::Mode::off);
  CHECK(P::choose_mode(true, false, false) == P::Mode::off);
  CHECK(P::choose_mode(false, true, false) == P::Mode::terminal);
  CHECK(P::choose_mode(false, false, false) == P::Mode::log);
  CHECK(P::choose_mode(false, true, true) == P::Mode::log);  // JSON logs never get `\r` lines
}

TEST_CASE("progress: a log line clears the terminal line first", "[progress]") {
  // A logger of our own as the default, so the real stderr sink is untouched.
  auto stream = std::make_shared<std::ostringstream>();
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(*stream);
  sink->set_pattern("%v");
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("progress-test", sink));

  Harness h;
  std::string order;  // the terminal writes and the log lines in the order they happened
  auto s = h.settings(ds::Progress::Mode::terminal);
  s.terminal = [&](std::string_view b) { order += b == "\r\x1b[K" ? "[clear]" : "[draw]"; };
  s.wrap_logger = true;
  {
    ds::Progress p("ds-fetch-feeds", s);
    p.add_users();
    spdlog::warn("a warning");
    order += stream->str() == "a warning\n" ? "[log]" : "[log missing]";
    spdlog::warn("another");  // the line is already clear: no second clear
    h.now += 1;
    p.add_users();
  }  // destructor: clear, and the logger's own sink back
  CHECK(order == "[draw][clear][log][draw][clear]");
  CHECK(spdlog::default_logger()->sinks().front() == sink);
  spdlog::set_default_logger(previous);
}

TEST_CASE("progress: tick reports when due though nothing was counted", "[progress]") {
  // A stage holding every request for a rate limit counts nothing for minutes; its log lines
  // must still come every interval, with the elapsed time moving.
  Harness h;
  ds::Progress p("ds-fetch-feeds", h.settings(ds::Progress::Mode::log));
  p.add_users();
  for (int i = 1; i <= 65; ++i) {  // 65 s of ticks, nothing counted
    h.now = 100 + i;
    p.tick();
  }
  REQUIRE(h.logs.size() == 2);  // at 30 and 60 s
  CHECK(h.logs[0] == "progress: ds-fetch-feeds: users 1, 0:30 elapsed");
  CHECK(h.logs[1] == "progress: ds-fetch-feeds: users 1, 1:00 elapsed");
}
