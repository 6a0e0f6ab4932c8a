// The set-up every fetch-stage test shares: a canned AppView endpoint on 127.0.0.1, stdin and
// stdout as real file descriptors, and one run of a FetchStage with its output split into lines.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <httplib.h>
#include <simdjson.h>

#include "ds/http.hpp"
#include "ds/ndjson.hpp"
#include "ds/progress.hpp"
#include "ds/record_input.hpp"
#include "ds/records.hpp"

namespace fetch_fixture {

// A captured Bluesky answer from tests/fixtures/bsky/ (see its README), whole.
inline std::string read_fixture(const std::string& name) {
  std::ifstream in(std::string(DS_SOURCE_DIR) + "/tests/fixtures/bsky/" + name, std::ios::binary);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One XRPC endpoint answered by `handler` on a loopback port, on a thread pool big enough that
// a slow answer never holds up the others.
class LoopbackEndpoint {
 public:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  LoopbackEndpoint(const std::string& path, Handler handler) {
    server_.new_task_queue = [] { return new httplib::ThreadPool(32); };
    server_.set_keep_alive_max_count(100000);
    server_.set_tcp_nodelay(true);  // else Nagle + delayed ACK add 40 ms per response
    server_.Get(path, std::move(handler));
    port_ = server_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
  }
  ~LoopbackEndpoint() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  void start() {
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // Another endpoint on the same server; before start().
  void add(const std::string& path, Handler handler) { server_.Get(path, std::move(handler)); }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

// A file holding `content`, already unlinked, positioned at its start: stdin or stdout of a run.
inline int temp_fd(const std::string& content) {
  char path[] = "/tmp/ds-fetch-test-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::unlink(path);
  REQUIRE(::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
  ::lseek(fd, 0, SEEK_SET);
  return fd;
}

// e[key] when it is a string, else "": the fields a test reads back from an output line.
inline std::string text_of(simdjson::dom::element e, const char* key) {
  std::string_view s;
  return e[key].get_string().get(s) ? std::string() : std::string(s);
}

// Fast retries and no rate cap: the tests measure behaviour, not politeness.
inline ds::HttpOptions test_http(int concurrency = 4, int max_attempts = 4) {
  ds::HttpOptions o;
  o.concurrency = concurrency;
  o.rate_limit_rps = 0;
  o.backoff_initial_s = 0.01;
  o.backoff_max_s = 0.05;
  o.max_attempts = max_attempts;
  o.timeout_s = 10;
  return o;
}

// Everything written to `fd` (a temp_fd), as whole lines; closes it.
inline std::vector<std::string> read_lines(int fd) {
  ::lseek(fd, 0, SEEK_SET);
  std::string all;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) all.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < all.size()) {
    const std::size_t nl = all.find('\n', start);
    REQUIRE(nl != std::string::npos);  // whole lines only
    lines.push_back(all.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

template <class Stage>
struct StageRun {
  int rc = -1;
  std::vector<std::string> lines;  // stdout, whole lines
  ds::EndRecord end;
  std::decay_t<decltype(std::declval<const Stage&>().stats())> stats;
  ds::HttpCounters http;
  ds::Progress::Counts shown;  // what the live view showed last
};

// Runs `Stage` over input read from `in_fd` (like stdin) with the HTTP client and progress wired
// as the stage's main() wires them, and collects what it wrote.
template <class Stage, class Options>
StageRun<Stage> run_fetch_stage_on(const std::string& stage_name, int in_fd, Options options,
                                   const ds::HttpOptions& http_options) {
  StageRun<Stage> run;
  const int out_fd = temp_fd("");
  {
    ds::Progress progress(stage_name, ds::Progress::Settings{});  // silent; counts only
    ds::HttpClient http(http_options);
    http.set_observer(ds::progress_observer(progress));
    ds::LineReader reader(in_fd, "input");
    ds::OutputWriter out(out_fd);
    ds::RecordInput in(stage_name, reader, out, ds::want_user, false);
    options.input_fd = in_fd;
    options.progress = &progress;
    Stage stage(options, http, out);
    run.rc = stage.run(reader, in);
    run.end = stage.end_record();
    run.stats = stage.stats();
    run.http = http.counters();
    // Whatever the run, the live view ends on the stage's own totals.
    run.shown = progress.counts();
    CHECK(run.shown.users == run.stats.users);
    CHECK(run.shown.requests == run.http.requests);
  }
  run.lines = read_lines(out_fd);
  return run;
}

// The same over `input` from a file: all of it readable at once.
template <class Stage, class Options>
StageRun<Stage> run_fetch_stage(const std::string& stage_name, const std::string& input, Options options,
                                const ds::HttpOptions& http_options) {
  const int in_fd = temp_fd(input);
  auto run = run_fetch_stage_on<Stage>(stage_name, in_fd, std::move(options), http_options);
  ::close(in_fd);
  return run;
}

// The same over a pipe that a writer fills chunk by chunk, pausing `ms` after each: input that
// arrives in bursts, as it does from an upstream stage under the rate cap.
struct PacedChunk {
  std::string text;
  int pause_ms = 0;
};
template <class Stage, class Options>
StageRun<Stage> run_fetch_stage_paced(const std::string& stage_name, std::vector<PacedChunk> chunks, Options options,
                                      const ds::HttpOptions& http_options) {
  int p[2];
  REQUIRE(::pipe(p) == 0);
  std::thread writer([w = p[1], chunks = std::move(chunks)] {
    for (const auto& c : chunks) {
      for (std::size_t done = 0; done < c.text.size();) {
        const ssize_t n = ::write(w, c.text.data() + done, c.text.size() - done);
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(c.pause_ms));
    }
    ::close(w);
  });
  auto run = run_fetch_stage_on<Stage>(stage_name, p[0], std::move(options), http_options);
  writer.join();
  ::close(p[0]);
  return run;
}

// What every record a fetch test reads starts with: its type, account and (for `end`) stage.
template <class Rec>
void read_head(simdjson::dom::element e, Rec& r) {
  r.type = std::string(e["type"].get_string().value());
  r.did = text_of(e, "did");
  r.stage = text_of(e, "stage");
}

}  // namespace fetch_fixture
