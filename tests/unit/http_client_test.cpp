// Tests for ds::HttpClient against an in-process cpp-httplib server on 127.0.0.1: concurrency,
// connection reuse, retry policy, server-requested waits and the client-side rate cap.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <httplib.h>

#include "ds/http.hpp"

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Wall-clock epoch seconds, the unit of Bluesky's RateLimit-Reset header.
std::int64_t epoch_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A loopback HTTP server on an ephemeral port, serving whatever handlers the test installs.
class TestServer {
 public:
  TestServer() {
    server.new_task_queue = [] { return new httplib::ThreadPool(32); };
    server.set_keep_alive_max_count(10000);
    server.set_tcp_nodelay(true);  // else Nagle + delayed ACK add 40 ms per response
    port = server.bind_to_any_port("127.0.0.1");
    REQUIRE(port > 0);
  }
  void start() {
    thread = std::thread([this] { server.listen_after_bind(); });
    while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~TestServer() {
    server.stop();
    if (thread.joinable()) thread.join();
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
  // Records each request's arrival (path, time, client port).
  void note(const httplib::Request& req) {
    std::lock_guard<std::mutex> lock(mu);
    arrivals.push_back({req.path, now_s(), req.remote_port});
    ports.insert(req.remote_port);
  }
  struct Arrival {
    std::string path;
    double at;
    int port;
  };
  // PATH (a regex, as httplib takes it) answers 200 "{}" and notes each request.
  void serve_ok(const std::string& path) {
    server.Get(path, [this](const httplib::Request& req, httplib::Response& res) {
      note(req);
      res.set_content("{}", "application/json");
    });
  }
  // Seconds from the first arrival at PATH to the second; PATH must have seen exactly two.
  double gap_between_two(const std::string& path) {
    const auto a = arrivals_of(path);
    REQUIRE(a.size() == 2);
    return a[1].at - a[0].at;
  }
  std::vector<Arrival> arrivals_of(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<Arrival> out;
    for (const auto& a : arrivals)
      if (a.path == path) out.push_back(a);
    return out;
  }

  httplib::Server server;
  int port = 0;
  std::thread thread;
  std::mutex mu;
  std::vector<Arrival> arrivals;
  std::set<int> ports;
};

ds::HttpOptions fast_options(int concurrency = 4) {
  ds::HttpOptions o;
  o.concurrency = concurrency;
  o.rate_limit_rps = 0;
  o.backoff_initial_s = 0.01;
  o.backoff_max_s = 0.05;
  o.timeout_s = 5;
  o.connect_timeout_s = 2;
  o.max_server_wait_s = 5;
  return o;
}

// A port nothing listens on: bind one, note it, close it.
int closed_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(s >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ::close(s);
  return ntohs(addr.sin_port);
}

// One request through `http`, run to its end: the final answer, after any retries.
ds::HttpResult fetch(ds::HttpClient& http, const std::string& url) {
  ds::HttpResult seen;
  http.get(url, [&](ds::HttpResult& r) {
    seen = r;
    return ds::HttpVerdict::done;
  });
  http.run();
  return seen;
}

// PATH answers 429 with Retry-After: SECONDS the first time, then 200 "{}".
void serve_429_once(TestServer& srv, const std::string& path, int seconds) {
  auto hits = std::make_shared<std::atomic<int>>(0);
  srv.server.Get(path, [&srv, hits, seconds](const httplib::Request& req, httplib::Response& res) {
    srv.note(req);
    if (++*hits == 1) {
      res.status = 429;
      res.set_header("Retry-After", std::to_string(seconds));
      res.set_content(R"({"error":"RateLimitExceeded"})", "application/json");
    } else {
      res.set_content("{}", "application/json");
    }
  });
}

}  // namespace

TEST_CASE("url_encode escapes everything but unreserved characters", "[http]") {
  CHECK(ds::url_encode("did:plc:abc123") == "did%3Aplc%3Aabc123");
  CHECK(ds::url_encode("a b&c=d/e?f") == "a%20b%26c%3Dd%2Fe%3Ff");
  CHECK(ds::url_encode("2024-03-21T23:36:16.378Z") == "2024-03-21T23%3A36%3A16.378Z");
  CHECK(ds::url_encode("\xc3\xa9~_.-") == "%C3%A9~_.-");
}

TEST_CASE("retryable statuses", "[http]") {
  CHECK(ds::http_status_retryable(429));
  CHECK(ds::http_status_retryable(503));
  CHECK(ds::http_status_retryable(500));
  CHECK(ds::http_status_retryable(408));
  CHECK_FALSE(ds::http_status_retryable(501));
  CHECK_FALSE(ds::http_status_retryable(400));
  CHECK_FALSE(ds::http_status_retryable(403));
  CHECK_FALSE(ds::http_status_retryable(404));
  CHECK_FALSE(ds::http_status_retryable(200));
}

TEST_CASE("requests overlap up to the concurrency limit", "[http]") {
  TestServer srv;
  std::atomic<int> in_flight{0}, max_in_flight{0};
  srv.server.Get("/slow", [&](const httplib::Request&, httplib::Response& res) {
    const int now = ++in_flight;
    int seen = max_in_flight.load();
    while (now > seen && !max_in_flight.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    --in_flight;
    res.set_content("{}", "application/json");
  });
  srv.start();

  ds::HttpClient http(fast_options(4));
  int ok = 0;
  for (int i = 0; i < 8; ++i)
    http.get(srv.url("/slow"), [&](ds::HttpResult& r) {
      if (r.status == 200) ++ok;
      return ds::HttpVerdict::done;
    });
  http.run();
  CHECK(ok == 8);
  CHECK(max_in_flight.load() > 1);
  CHECK(max_in_flight.load() <= 4);
  CHECK(http.pending() == 0);
}

TEST_CASE("connections are kept alive and reused", "[http]") {
  TestServer srv;
  const std::string big_body = "{\"text\":\"" + std::string(4000, 'a') + "\"}";
  std::string user_agent, accept_encoding;
  srv.server.Get("/x", [&](const httplib::Request& req, httplib::Response& res) {
    srv.note(req);
    {
      std::lock_guard<std::mutex> lock(srv.mu);
      user_agent = req.get_header_value("User-Agent");
      accept_encoding = req.get_header_value("Accept-Encoding");
    }
    res.set_content(big_body, "application/json");
  });
  srv.start();

  ds::HttpClient http(fast_options(2));
  int ok = 0;
  for (int i = 0; i < 40; ++i)
    http.get(srv.url("/x"), [&](ds::HttpResult& r) {
      if (r.ok() && r.body == big_body) ++ok;
      return ds::HttpVerdict::done;
    });
  http.run();
  CHECK(ok == 40);
  CHECK(http.counters().requests == 40);
  CHECK(http.counters().connections <= 4);
  CHECK(http.counters().connections >= 1);
  CHECK(srv.ports.size() <= 4);  // distinct client ports = TCP connections the server saw
  CHECK(user_agent.find("dopplersky") != std::string::npos);
  CHECK(accept_encoding.find("gzip") != std::string::npos);
  // The server compresses what we said we accept; `bytes` counts the wire, not the decoded body.
  CHECK(http.counters().bytes > 0);
  CHECK(http.counters().bytes < 40 * static_cast<std::int64_t>(big_body.size()) / 4);
}

TEST_CASE("5xx is retried until it succeeds", "[http]") {
  TestServer srv;
  std::atomic<int> hits{0};
  srv.server.Get("/flaky", [&](const httplib::Request&, httplib::Response& res) {
    if (++hits <= 2) {
      res.status = 503;
      res.set_content("busy", "text/plain");
    } else {
      res.set_content("fine", "text/plain");
    }
  });
  srv.start();

  ds::HttpClient http(fast_options());
  int observed_requests = 0, observed_waits = 0;
  http.set_observer({[&] { ++observed_requests; }, [&] { ++observed_waits; }, nullptr});
  ds::HttpResult seen;
  int calls = 0;
  http.get(srv.url("/flaky"), [&](ds::HttpResult& r) {
    ++calls;
    seen = r;
    return ds::HttpVerdict::done;
  });
  http.run();
  CHECK(calls == 1);  // the callback only sees the final answer
  CHECK(seen.status == 200);
  CHECK(seen.body == "fine");
  CHECK(seen.attempt == 3);
  CHECK(hits.load() == 3);
  CHECK(http.counters().retries == 2);
  CHECK(http.counters().http_5xx == 2);
  CHECK(observed_requests == 3);  // retries are requests too
  CHECK(observed_waits == 0);     // a 503 without Retry-After is a retry, not a rate-limit hold
}

TEST_CASE("400 is not retried", "[http]") {
  TestServer srv;
  std::atomic<int> hits{0};
  srv.server.Get("/bad", [&](const httplib::Request&, httplib::Response& res) {
    ++hits;
    res.status = 400;
    res.set_content(R"({"error":"InvalidRequest","message":"Profile not found"})", "application/json");
  });
  srv.start();

  ds::HttpClient http(fast_options());
  const ds::HttpResult seen = fetch(http, srv.url("/bad"));
  CHECK(seen.status == 400);
  CHECK(seen.attempt == 1);
  CHECK(seen.body.find("Profile not found") != std::string::npos);
  CHECK(seen.describe().find("HTTP 400") == 0);
  CHECK(hits.load() == 1);
  CHECK(http.counters().retries == 0);
}

TEST_CASE("retries stop at max_attempts", "[http]") {
  TestServer srv;
  std::atomic<int> hits{0};
  srv.server.Get("/down", [&](const httplib::Request&, httplib::Response& res) {
    ++hits;
    res.status = 502;
  });
  srv.start();

  auto opt = fast_options();
  opt.max_attempts = 3;
  ds::HttpClient http(opt);
  ds::HttpResult seen;
  http.get(srv.url("/down"), [&](ds::HttpResult& r) {
    seen = r;
    return ds::HttpVerdict::retry;  // asking again on the last attempt must not loop
  });
  http.run();
  CHECK(hits.load() == 3);
  CHECK(seen.status == 502);
  CHECK(seen.attempt == 3);
  CHECK(seen.last_attempt);
  CHECK(http.counters().requests == 3);
}

TEST_CASE("a callback can ask for another attempt", "[http]") {
  TestServer srv;
  std::atomic<int> hits{0};
  srv.server.Get("/trunc", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(++hits == 1 ? "{\"feed\":[" : "{\"feed\":[]}", "application/json");
  });
  srv.start();

  ds::HttpClient http(fast_options());
  std::vector<std::string> bodies;
  http.get(srv.url("/trunc"), [&](ds::HttpResult& r) {
    bodies.push_back(r.body);
    return r.body == "{\"feed\":[]}" ? ds::HttpVerdict::done : ds::HttpVerdict::retry;
  });
  http.run();
  REQUIRE(bodies.size() == 2);
  CHECK(bodies[1] == "{\"feed\":[]}");
  CHECK(hits.load() == 2);
  CHECK(http.counters().retries == 1);
}

TEST_CASE("connection failures are retried and reported", "[http]") {
  const int port = closed_port();
  auto opt = fast_options();
  opt.max_attempts = 2;
  ds::HttpClient http(opt);
  const ds::HttpResult seen = fetch(http, "http://127.0.0.1:" + std::to_string(port) + "/x");
  CHECK(seen.status == 0);
  CHECK_FALSE(seen.error.empty());
  CHECK_FALSE(seen.ok());
  CHECK(seen.attempt == 2);
  CHECK(http.counters().transport_errors == 2);
}

TEST_CASE("a timed-out transfer is retried", "[http]") {
  TestServer srv;
  std::atomic<int> hits{0};
  srv.server.Get("/stall", [&](const httplib::Request&, httplib::Response& res) {
    if (++hits == 1) std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    res.set_content("late", "text/plain");
  });
  srv.start();

  auto opt = fast_options();
  opt.timeout_s = 0.3;
  ds::HttpClient http(opt);
  const ds::HttpResult seen = fetch(http, srv.url("/stall"));
  CHECK(seen.status == 200);
  CHECK(seen.attempt == 2);
  CHECK(http.counters().transport_errors == 1);
}

TEST_CASE("429 with Retry-After holds every request until the time has passed", "[http]") {
  TestServer srv;
  serve_429_once(srv, "/limited", 1);
  srv.serve_ok("/other");
  srv.start();

  ds::HttpClient http(fast_options(1));  // /other queues behind /limited, so it meets the hold
  int observed_requests = 0, observed_waits = 0;
  http.set_observer({[&] { ++observed_requests; }, [&] { ++observed_waits; }, nullptr});
  int ok = 0;
  auto cb = [&](ds::HttpResult& r) {
    if (r.status == 200) ++ok;
    return ds::HttpVerdict::done;
  };
  http.get(srv.url("/limited"), cb);
  http.get(srv.url("/other"), cb);
  http.run();
  CHECK(ok == 2);
  CHECK(observed_requests == 3);
  CHECK(observed_waits == 1);
  const auto limited = srv.arrivals_of("/limited");
  const auto other = srv.arrivals_of("/other");
  REQUIRE(limited.size() == 2);
  REQUIRE(other.size() == 1);
  CHECK(limited[1].at - limited[0].at >= 0.9);
  CHECK(other[0].at - limited[0].at >= 0.9);
  CHECK(http.counters().http_429 == 1);
}

TEST_CASE("429 with RateLimit-Reset waits until that epoch second", "[http]") {
  TestServer srv;
  std::atomic<int> hits{0};
  srv.server.Get("/limited", [&](const httplib::Request& req, httplib::Response& res) {
    srv.note(req);
    if (++hits == 1) {
      // Absolute epoch seconds, as Bluesky sends it: 1 to 2 s from now.
      res.status = 429;
      res.set_header("RateLimit-Limit", "3000");
      res.set_header("RateLimit-Remaining", "0");
      res.set_header("RateLimit-Reset", std::to_string(epoch_s() + 2));
    } else {
      res.set_content("{}", "application/json");
    }
  });
  srv.start();

  ds::HttpClient http(fast_options());  // max_server_wait_s 5: a misread delay would show as ~5 s
  CHECK(fetch(http, srv.url("/limited")).status == 200);
  const double gap = srv.gap_between_two("/limited");
  CHECK(gap >= 0.9);
  CHECK(gap < 4.0);
  CHECK(http.counters().waited_s > 0.5);
}

TEST_CASE("RateLimit-Remaining 0 on a success holds the next request", "[http]") {
  TestServer srv;
  std::atomic<int> hits{0};
  srv.server.Get("/r", [&](const httplib::Request& req, httplib::Response& res) {
    srv.note(req);
    if (++hits == 1) {
      res.set_header("RateLimit-Remaining", "0");
      res.set_header("RateLimit-Reset", std::to_string(epoch_s() + 2));
    }
    res.set_content("{}", "application/json");
  });
  srv.start();

  ds::HttpClient http(fast_options(1));
  int observed_waits = 0;
  http.set_observer({nullptr, [&] { ++observed_waits; }, nullptr});
  int ok = 0;
  for (int i = 0; i < 2; ++i)
    http.get(srv.url("/r"), [&](ds::HttpResult& r) {
      ok += r.status == 200;
      return ds::HttpVerdict::done;
    });
  http.run();
  CHECK(ok == 2);
  CHECK(srv.gap_between_two("/r") >= 0.9);
  CHECK(observed_waits == 1);
}

TEST_CASE("a low RateLimit-Remaining spreads requests over the time left", "[http]") {
  TestServer srv;
  srv.server.Get("/low", [&](const httplib::Request& req, httplib::Response& res) {
    srv.note(req);
    // One request left for the next 2-3 s: the next one should wait most of that.
    res.set_header("RateLimit-Limit", "3000");
    res.set_header("RateLimit-Remaining", "1");
    res.set_header("RateLimit-Reset", std::to_string(epoch_s() + 3));
    res.set_content("{}", "application/json");
  });
  srv.start();

  ds::HttpClient http(fast_options(1));
  for (int i = 0; i < 2; ++i) http.get(srv.url("/low"), [](ds::HttpResult&) { return ds::HttpVerdict::done; });
  http.run();
  const double gap = srv.gap_between_two("/low");
  CHECK(gap >= 1.5);
  CHECK(gap < 4.5);
}

TEST_CASE("the client-side rate cap bounds the request rate", "[http]") {
  TestServer srv;
  srv.serve_ok("/q");
  srv.start();

  auto opt = fast_options(4);
  opt.rate_limit_rps = 20;
  ds::HttpClient http(opt);
  const int n = 21;
  for (int i = 0; i < n; ++i) http.get(srv.url("/q"), [](ds::HttpResult&) { return ds::HttpVerdict::done; });
  const double t0 = now_s();
  http.run();
  const double elapsed = now_s() - t0;
  const auto a = srv.arrivals_of("/q");
  REQUIRE(a.size() == static_cast<std::size_t>(n));
  const double span = a.back().at - a.front().at;
  // 21 starts at 20/s need 1 s; allow scheduling slack below that, never a burst.
  CHECK(span >= 0.8);
  CHECK((n - 1) / span <= 20 * 1.25);
  CHECK(elapsed >= 0.8);
}

TEST_CASE("lower priority values start first", "[http]") {
  TestServer srv;
  srv.serve_ok(R"(/p/(\d+))");
  srv.start();

  ds::HttpClient http(fast_options(1));
  std::vector<std::string> order;
  for (int p : {5, 1, 3})
    http.get(
        srv.url("/p/" + std::to_string(p)),
        [&, p](ds::HttpResult&) {
          order.push_back(std::to_string(p));
          return ds::HttpVerdict::done;
        },
        p);
  http.run();
  CHECK(order == std::vector<std::string>{"1", "3", "5"});
}

TEST_CASE("run_until_readable returns when input arrives, with transfers still pending", "[http]") {
  TestServer srv;
  srv.server.Get("/slow", [&](const httplib::Request&, httplib::Response& res) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    res.set_content("{}", "application/json");
  });
  srv.start();

  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  ds::HttpClient http(fast_options());
  int done = 0;
  http.get(srv.url("/slow"), [&](ds::HttpResult&) {
    ++done;
    return ds::HttpVerdict::done;
  });
  REQUIRE(::write(fds[1], "x", 1) == 1);
  CHECK(http.run_until_readable(fds[0]));
  CHECK(done == 0);
  CHECK(http.pending() == 1);
  char c;
  REQUIRE(::read(fds[0], &c, 1) == 1);
  // Nothing to read: the transfer runs to its end meanwhile, then the timeout expires.
  CHECK_FALSE(http.run_until_readable(fds[0], 1500));
  CHECK(done == 1);
  CHECK(http.pending() == 0);
  ::close(fds[1]);  // a closed writer counts as readable (EOF), so a stage's read never hangs
  CHECK(http.run_until_readable(fds[0], 1000));
  ::close(fds[0]);
}

TEST_CASE("an observer with on_wake is woken every second through a long hold", "[http]") {
  // Progress reports ride on these wake-ups: without them a stage holding every request for a
  // 3 s Retry-After would show nothing moving until the hold ended.
  TestServer srv;
  serve_429_once(srv, "/limited", 3);
  srv.start();
  ds::HttpClient http(fast_options());
  std::vector<double> wakes;
  http.set_observer({nullptr, nullptr, [&] { wakes.push_back(now_s()); }});
  CHECK(fetch(http, srv.url("/limited")).status == 200);
  REQUIRE(wakes.size() >= 3);
  double longest_gap = 0;
  for (std::size_t i = 1; i < wakes.size(); ++i) longest_gap = std::max(longest_gap, wakes[i] - wakes[i - 1]);
  CHECK(wakes.back() - wakes.front() >= 2.5);  // the hold was sat out
  CHECK(longest_gap < 1.5);
}
