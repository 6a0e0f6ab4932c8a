// Tests for the host-wide rate gate: one cadence through a file, exclusive slots between
// independent openers, and two HTTP clients sharing one cap as a loopback server measures it.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "ds/http.hpp"
#include "ds/rate_gate.hpp"
#include "fetch_stage_fixture.hpp"

namespace {

std::string temp_gate_path() {
  char path[] = "/tmp/ds-rate-gate-test-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::close(fd);
  return path;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Arrival times of every request a loopback endpoint answered.
struct Arrivals {
  std::mutex mu;
  std::vector<double> at;
  void note() {
    std::lock_guard<std::mutex> l(mu);
    at.push_back(now_s());
  }
  // Requests per second from the first arrival to the last.
  double rate() {
    std::lock_guard<std::mutex> l(mu);
    REQUIRE(at.size() > 1);
    std::sort(at.begin(), at.end());
    return double(at.size() - 1) / (at.back() - at.front());
  }
};

// Two clients ("two stages") started at once, each sending `each` requests with cap `rps`.
double two_clients_rate(const std::string& gate_path, double rps, int each) {
  Arrivals arrivals;
  fetch_fixture::LoopbackEndpoint api("/x", [&](const httplib::Request&, httplib::Response& res) {
    arrivals.note();
    res.set_content("{}", "application/json");
  });
  api.start();
  auto run_client = [&] {
    ds::HttpOptions o = fetch_fixture::test_http(4);
    o.rate_limit_rps = rps;
    o.rate_gate_path = gate_path;
    ds::HttpClient http(o);
    for (int i = 0; i < each; ++i) http.get(api.base() + "/x", [](ds::HttpResult&) { return ds::HttpVerdict::done; });
    http.run();
    CHECK(http.counters().requests == each);
  };
  std::thread a(run_client), b(run_client);
  a.join();
  b.join();
  return arrivals.rate();
}

}  // namespace

TEST_CASE("rate gate: a slot is taken once, and the next comes one interval later", "[rate_gate]") {
  const std::string path = temp_gate_path();
  ds::RateGate a(path, 10), b(path, 10);  // two openers, as two processes would be
  const double t = now_s();
  CHECK(a.try_take(t));
  CHECK_FALSE(b.try_take(t));  // taken: the file moved on for everyone
  CHECK(b.next_slot(t) == Approx(t + 0.1));
  CHECK_FALSE(a.try_take(t + 0.05));
  CHECK(b.try_take(t + 0.1));
  CHECK(a.next_slot(t + 0.1) == Approx(t + 0.2));
  // A slot missed by more than an interval restarts the cadence from now: no banked burst.
  CHECK(a.try_take(t + 5));
  CHECK(b.next_slot(t + 5) == Approx(t + 5.1));
  ::unlink(path.c_str());
}

TEST_CASE("rate gate: without a file the cadence is the one object's (RATE_LIMIT_FILE=none)", "[rate_gate]") {
  ds::RateGate own("", 10), other("", 10);
  const double t = now_s();
  CHECK(own.try_take(t));
  CHECK_FALSE(own.try_take(t + 0.05));
  CHECK(own.next_slot(t) == Approx(t + 0.1));
  CHECK(other.try_take(t));  // nothing shared: another gate has its own slot
  CHECK(own.try_take(t + 0.1));
  CHECK(own.try_take(t + 5));  // missed by more than an interval: restarts from now
  CHECK(own.next_slot(t + 5) == Approx(t + 5.1));
}

TEST_CASE("rate gate: a slot from before a reboot does not hold anyone back", "[rate_gate]") {
  const std::string path = temp_gate_path();
  {
    ds::RateGate before(path, 10);
    REQUIRE(before.try_take(now_s() + 1e6));  // as if the monotonic clock had been far ahead
  }
  ds::RateGate after(path, 10);
  CHECK(after.next_slot(now_s()) == 0);
  CHECK(after.try_take(now_s()));
  ::unlink(path.c_str());
}

TEST_CASE("rate gate: the default file is per user and per API", "[rate_gate]") {
  const std::string one = ds::default_rate_gate_path("https://public.api.bsky.app");
  CHECK(one == ds::default_rate_gate_path("https://public.api.bsky.app"));
  CHECK(one != ds::default_rate_gate_path("http://127.0.0.1:8080"));
  CHECK(one.find("dopplersky-rate-" + std::to_string(::getuid()) + "-") != std::string::npos);
}

TEST_CASE("rate gate: two clients sharing it stay within one cap, as the server measures", "[rate_gate]") {
  const double cap = 40;
  const std::string path = temp_gate_path();
  const double shared = two_clients_rate(path, cap, 40);
  INFO("server-measured rate of two clients through one gate: " << shared << "/s");
  CHECK(shared <= cap * 1.10);
  // Without the gate each client keeps its own cap, so together they send about twice as fast:
  // the measurement above can tell the two apart.
  const double apart = two_clients_rate("", cap, 40);
  INFO("server-measured rate of two clients each on its own: " << apart << "/s");
  CHECK(apart > cap * 1.5);
  ::unlink(path.c_str());
}
