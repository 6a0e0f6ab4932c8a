// The fake AppView's HTTP side: request handling as one plain function (AppView::handle) and a
// cpp-httplib binding that serves it on loopback, with counters for tests and benchmarks.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "dataset.hpp"

namespace httplib {
class Server;
}

namespace ds::fake {

// ---------------------------------------------------------------------------------------------
// Endpoints (all JSON, `Content-Type: application/json; charset=utf-8`):
//   GET  /xrpc/app.bsky.actor.getProfiles?actors=A&actors=B   1..25 DIDs or handles (as of the
//        current day), else 400 InvalidRequest. {"profiles":[...]} in request order; unknown and
//        gone accounts are left out silently; a repeated actor is answered once.
//   GET  /xrpc/app.bsky.feed.getAuthorFeed?actor=&limit=&cursor=&filter=&includePins=
//        limit 1..100 (default 50), else 400. Unknown/gone actor: 400 InvalidRequest "Profile not
//        found". Items newest first; with a cursor, only items whose sort time (milliseconds) is
//        strictly older. `cursor` = the last item's sort time as "2024-03-21T23:36:16.378Z",
//        absent when nothing follows. includePins=true adds the pinned post (reason #reasonPin)
//        before the first page's items, so that page holds limit+1 items. Every valid `filter`
//        value is accepted and served as posts_with_replies (the only one the pipeline uses).
//   Other /xrpc/ methods: 501 MethodNotImplemented. Other paths: 404.
//   Every /xrpc/ answer carries RateLimit-Limit, -Remaining, -Reset (absolute epoch seconds) and
//   -Policy ("3000;w=300"), counted over fixed windows starting when the AppView was created.
//   The limit is only advertised, never enforced.
//
// Control (never counted, never delayed):
//   GET  /_fake/health          200 {"ok":true,"day":N}
//   POST /_fake/day?day=N       switches the day the answers come from, without a restart
//   GET  /_fake/stats           {"requests":{"getProfiles":n,"getAuthorFeed":n,"other":n},
//                                "connections_opened":n,"max_in_flight":n,"in_flight":n,"day":d}
//   POST /_fake/stats/reset     zeroes the counters
// connections_opened counts TCP connections the server accepted (one per task handed to the
// worker pool); max_in_flight is the most /xrpc/ requests being handled at once. Both are exact
// for this server but say nothing about connections a client opened and never used.
//
// Misbehaviour (429s, 5xx, slow or truncated bodies, dropped connections, an enforced rate
// limit) belongs in a Handler that wraps AppView::handle the way with_latency does; a Response
// can already carry any status, headers and body.
// ---------------------------------------------------------------------------------------------

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query string
  std::multimap<std::string, std::string> params;  // query parameters, repeated keys kept in order

  bool has(const std::string& key) const { return params.count(key) > 0; }
  std::string get(const std::string& key) const;  // first value, or ""
  std::vector<std::string> all(const std::string& key) const;
};

struct Response {
  int status = 200;
  std::string body;
  std::string content_type = "application/json; charset=utf-8";
  std::vector<std::pair<std::string, std::string>> headers;
};

using Handler = std::function<Response(const Request&)>;

struct RateLimitOptions {
  int limit = 3000;      // RateLimit-Limit
  int window_s = 300;    // the window of RateLimit-Policy and RateLimit-Reset
};

struct Stats {
  std::uint64_t get_profiles = 0, get_author_feed = 0, other = 0;
  std::uint64_t connections_opened = 0, max_in_flight = 0, in_flight = 0;
};

class AppView {
 public:
  AppView(const DatasetParams& params, int day, RateLimitOptions rate = {});

  // Every endpoint above. Thread-safe; reads the day once per request.
  Response handle(const Request& req);

  int day() const { return day_.load(); }
  void set_day(int day);  // throws std::out_of_range outside 0..Dataset::kMaxDay
  const Dataset& dataset() const { return dataset_; }

  // Fed by the HTTP layer.
  void connection_opened() { ++connections_; }
  void request_began();
  void request_ended() { --in_flight_; }
  Stats stats() const;
  void reset_stats();

 private:
  Response get_profiles(const Request& req, int day);
  Response get_author_feed(const Request& req, int day);
  Response control(const Request& req);
  void add_rate_limit_headers(Response& res);

  Dataset dataset_;
  std::atomic<int> day_;
  RateLimitOptions rate_;
  std::mutex rate_mu_;
  std::int64_t window_start_s_;
  std::int64_t window_count_ = 0;
  std::atomic<std::uint64_t> n_profiles_{0}, n_feed_{0}, n_other_{0};
  std::atomic<std::uint64_t> connections_{0}, max_in_flight_{0};
  std::atomic<std::int64_t> in_flight_{0};
};

// An error body the way the AppView writes them: {"error":...,"message":...}.
Response xrpc_error(int status, const std::string& error, const std::string& message);

// Adds a fixed delay before /xrpc/ requests reach `inner` (simulated network and server time).
Handler with_latency(Handler inner, std::chrono::milliseconds delay);

struct ServerOptions {
  std::string host = "127.0.0.1";  // loopback only: 127.0.0.1, ::1 or localhost
  int port = 0;                    // 0: any free port
  int threads = 64;                // worker threads = connections served at once
  int keep_alive_s = 90;           // idle keep-alive timeout, as the real service
  bool verbose = false;            // log every request (spdlog, stderr)
};

bool is_loopback_host(const std::string& host);

// Serves a Handler over HTTP/1.1 with keep-alive. The AppView receives the connection and
// in-flight counts.
class HttpServer {
 public:
  HttpServer(AppView& app, Handler handler, ServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Creates the listening socket; returns the bound port. Throws std::runtime_error on failure
  // or a non-loopback host. Connections made after this wait in the backlog until run().
  int bind();
  // Serves until stop(). Returns false when the server could not run.
  bool run();
  // bind() and run() on a background thread; returns the port.
  int start();
  // Stops accepting and waits for the background thread. Idle keep-alive connections are
  // served until their client closes them or keep_alive_s passes.
  void stop();

 private:
  AppView& app_;
  Handler handler_;
  ServerOptions options_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = -1;
};

}  // namespace ds::fake
