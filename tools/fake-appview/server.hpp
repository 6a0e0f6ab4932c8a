// The fake AppView's HTTP side: request handling as one plain function (AppView::handle), a fault
// layer that wraps it, and a small HTTP/1.1 server of our own that serves it on loopback.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "dataset.hpp"

namespace ds::fake {

// ---------------------------------------------------------------------------------------------
// Endpoints (all JSON, `Content-Type: application/json; charset=utf-8`):
//   GET  /xrpc/app.bsky.actor.getProfiles?actors=A&actors=B   1..25 DIDs or handles (as of the
//        current day), else 400 InvalidRequest. {"profiles":[...]} in request order; unknown and
//        gone accounts are left out silently; a repeated actor is answered once.
//   GET  /xrpc/app.bsky.feed.getAuthorFeed?actor=&limit=&cursor=&filter=&includePins=
//        limit 1..100 (default 50), else 400. Unknown/gone actor: 400 InvalidRequest "Profile not
//        found". Items newest first; with a cursor, only items whose sort time (milliseconds) is
//        strictly older. `cursor` = "<the last item's sort time in epoch milliseconds>__<its cid>",
//        as Bluesky's AppView writes it (docs/real-appview.md), absent when nothing follows; a
//        cursor not of that shape is 500 InternalServerError, as there. includePins=true adds the pinned post (reason #reasonPin)
//        before the first page's items, so that page holds limit+1 items. Every valid `filter`
//        value is accepted and served as posts_with_replies (the only one the pipeline uses).
//   GET  /xrpc/app.bsky.feed.getPosts?uris=A&uris=B   1..25 at:// URIs (none: 400 "Params must
//        have the property", 26+: 400 "must not have more than 25 elements", one that is not a
//        valid at-uri: 400 "uris/<i> must be a valid at-uri", as the real lexicon check says).
//        {"posts":[postView...]} in request order, a repeated URI answered once; URIs naming no
//        post that exists on the served day (unknown, deleted, not yet created, of an account the
//        API does not know that day, or any other valid at-uri) are left out silently. Each
//        postView is byte for byte the one getAuthorFeed shows for that post on that day.
//   Other /xrpc/ methods: 501 MethodNotImplemented. Other paths: 404.
//   Every /xrpc/ answer carries RateLimit-Limit, -Remaining, -Reset (absolute epoch seconds) and
//   -Policy ("3000;w=300"), counted over fixed windows starting when the AppView was created.
//   With RateLimitOptions::enforce a request over the limit gets 429 RateLimitExceeded with
//   Remaining 0 and Retry-After (seconds to Reset) instead of an answer, as the real service does.
//
// Serving files instead (AppView::serve_files(DIR), for hostile-payload tests): the two methods
// answer byte for byte from
//   DIR/getProfiles/<first actor>.json, else DIR/getProfiles/default.json, else {"profiles":[]}
//   DIR/getAuthorFeed/<actor>.json (no cursor) or DIR/getAuthorFeed/<actor>@<cursor>.json,
//   else 400 InvalidRequest "Profile not found".
//   DIR/getPosts/<rkey of the first URI>.json, else DIR/getPosts/default.json, else {"posts":[]}
// A sibling <name>.status file (a number 100..599) sets the status; with only the .status file
// the body is empty. Names holding '/', NUL or starting with '.' are never looked up (treated as
// missing), so a request cannot read outside DIR. Parameters are not otherwise validated.
//
// Control (never counted, never delayed, never faulted):
//   GET  /_fake/health          200 {"ok":true,"day":N}
//   POST /_fake/day?day=N       switches the day the answers come from, without a restart
//   GET  /_fake/stats           counters, see AppView::stats_json (documented in README.md)
//   POST /_fake/stats/reset     zeroes the counters
// connections_opened counts TCP connections the server accepted; max_in_flight is the most
// /xrpc/ requests being handled at once.
//
// Misbehaviour (429s, 5xx, slow, truncated or cut bodies, dropped connections) is with_faults(),
// a Handler wrapping AppView::handle the way with_latency does. A Response can carry any status,
// headers and body, and `delivery` asks the HTTP layer to break the connection.
// ---------------------------------------------------------------------------------------------

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query string, percent-decoded
  std::multimap<std::string, std::string> params;  // query parameters, repeated keys kept in order

  bool has(const std::string& key) const { return params.count(key) > 0; }
  std::string get(const std::string& key) const;  // first value, or ""
  std::vector<std::string> all(const std::string& key) const;
};

struct Response {
  // How the HTTP layer sends it. `cut`: headers announce the whole body, half of it is sent and
  // the connection closed (the client sees a transfer error). `drop`: the connection is closed
  // without a byte of response.
  enum class Delivery { normal, cut, drop };
  int status = 200;
  std::string body;
  std::string content_type = "application/json; charset=utf-8";
  std::vector<std::pair<std::string, std::string>> headers;
  Delivery delivery = Delivery::normal;
};

using Handler = std::function<Response(const Request&)>;

struct RateLimitOptions {
  int limit = 3000;      // RateLimit-Limit
  int window_s = 300;    // the window of RateLimit-Policy and RateLimit-Reset
  bool enforce = false;  // over the limit: 429 instead of an answer
};

// Injected misbehaviour of /xrpc/ requests. Each probability is per request; the kinds exclude
// each other except `slow`, which is drawn on its own and delays whatever answer follows.
struct FaultOptions {
  std::uint64_t seed = 1;
  double p_429 = 0;        // 429 RateLimitExceeded, RateLimit-Remaining 0, Reset and Retry-After
  double p_5xx = 0;        // 500, 502 or 503 (a third each)
  double p_truncated = 0;  // a 200 answer's body cut in half, Content-Length matching: valid HTTP, bad JSON
  double p_cut = 0;        // the connection closes halfway through the announced body
  double p_drop = 0;       // the connection closes before any response
  double p_slow = 0;       // the answer comes slow_ms late
  int slow_ms = 3000;
  int retry_after_s = 2;   // injected 429s: Retry-After and RateLimit-Reset this far ahead
  bool any() const { return p_429 > 0 || p_5xx > 0 || p_truncated > 0 || p_cut > 0 || p_drop > 0 || p_slow > 0; }
};

enum class Fault { http_429, http_5xx, truncated, cut, dropped, slow };
constexpr int kFaultKinds = 6;

enum class Endpoint { get_profiles, get_author_feed, get_posts, other };
constexpr int kEndpoints = 4;

struct Stats {
  std::uint64_t get_profiles = 0, get_author_feed = 0, get_posts = 0, other = 0;  // /xrpc/ requests received
  std::uint64_t connections_opened = 0, max_in_flight = 0, in_flight = 0;
  std::map<int, std::uint64_t> statuses;    // /xrpc/ answers, by status (dropped connections: none)
  std::uint64_t faults[kFaultKinds] = {};   // injected, by Fault
  std::uint64_t rate_limited = 0;           // 429s from the enforced limit
  // Arrival of the first and the latest /xrpc/ request per Endpoint, epoch milliseconds (0: none),
  // so a test can compute the request rate the server saw.
  std::int64_t first_ms[kEndpoints] = {}, last_ms[kEndpoints] = {};
  std::uint64_t http_429() const {
    auto it = statuses.find(429);
    return it == statuses.end() ? 0 : it->second;
  }
};

class AppView {
 public:
  AppView(const DatasetParams& params, int day, RateLimitOptions rate = {});

  // Every endpoint above. Thread-safe; reads the day once per request.
  Response handle(const Request& req);

  // From now on /xrpc/ methods answer from files under `dir` (see above) instead of the dataset.
  void serve_files(std::string dir);

  int day() const { return day_.load(); }
  void set_day(int day);  // throws std::out_of_range outside 0..Dataset::kMaxDay
  const Dataset& dataset() const { return dataset_; }
  const RateLimitOptions& rate_limit() const { return rate_; }

  // Fed by the HTTP layer and the fault layer.
  void connection_opened() { ++connections_; }
  void request_began(const std::string& path);  // an /xrpc/ request arrived
  void request_ended(int status);               // its answer is ready to send (0: dropped)
  void fault_injected(Fault f) { ++faults_[static_cast<int>(f)]; }
  Stats stats() const;
  std::string stats_json() const;
  void reset_stats();

 private:
  Response get_profiles(const Request& req, int day);
  Response get_author_feed(const Request& req, int day);
  Response get_posts(const Request& req, int day);  // get_posts.cpp
  Response file_get_profiles(const Request& req);
  Response file_get_author_feed(const Request& req);
  Response file_get_posts(const Request& req);
  Response control(const Request& req);
  // Counts the request in the current rate window and says what the RateLimit headers carry;
  // false (not counted) when an enforced limit is used up.
  bool take_rate_slot(std::int64_t& remaining, std::int64_t& reset);

  Dataset dataset_;
  std::atomic<int> day_;
  RateLimitOptions rate_;
  std::string files_dir_;  // non-empty: serve files
  std::mutex rate_mu_;
  std::int64_t window_start_s_;
  std::int64_t window_count_ = 0;
  std::atomic<std::uint64_t> n_requests_[kEndpoints] = {};
  std::atomic<std::uint64_t> connections_{0}, max_in_flight_{0};
  std::atomic<std::int64_t> in_flight_{0};
  std::atomic<std::uint64_t> faults_[kFaultKinds] = {};
  std::atomic<std::uint64_t> rate_limited_{0};
  mutable std::mutex stats_mu_;
  std::map<int, std::uint64_t> statuses_;
  std::int64_t first_ms_[kEndpoints] = {}, last_ms_[kEndpoints] = {};
};

// An error body the way the AppView writes them: {"error":...,"message":...}.
Response xrpc_error(int status, const std::string& error, const std::string& message);

// Adds a fixed delay before /xrpc/ requests reach `inner` (simulated network and server time).
Handler with_latency(Handler inner, std::chrono::milliseconds delay);

// Misbehaves on /xrpc/ requests per `options`, reporting each injected fault to `app`. Decisions
// are a hash of (seed, the request's method, path and query, and how many times this same request
// arrived before), so they do not depend on the order concurrent requests arrive in: the same
// client run against the same seed meets the same faults, and a retry draws afresh.
Handler with_faults(Handler inner, FaultOptions options, AppView& app);

struct ServerOptions {
  std::string host = "127.0.0.1";  // loopback only: 127.0.0.1, ::1 or localhost
  int port = 0;                    // 0: any free port
  int threads = 512;               // connections served at once (one thread each)
  int keep_alive_s = 90;           // idle keep-alive timeout, as the real service
  bool verbose = false;            // log every request (spdlog, stderr)
};

bool is_loopback_host(const std::string& host);

// Serves a Handler over HTTP/1.1 with keep-alive, one thread per connection (so latency and slow
// answers hold only their own connection). TCP_NODELAY is set: without it Nagle and delayed ACKs
// add 40 ms to answers on reused connections. The AppView receives the connection, request and
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
  // Stops accepting, closes every connection (idle or not) and waits for their threads.
  void stop();

 private:
  struct Connection;
  void serve(Connection* c);
  void reap_finished();

  AppView& app_;
  Handler handler_;
  ServerOptions options_;
  int listen_fd_ = -1;
  int wake_fd_[2] = {-1, -1};  // a pipe: stop() writes to end the accept loop
  int port_ = -1;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::list<std::unique_ptr<Connection>> connections_;
  int active_ = 0;
  std::thread thread_;
};

}  // namespace ds::fake
