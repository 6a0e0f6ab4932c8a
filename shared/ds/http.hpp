// The HTTP client of the fetch stages: one libcurl multi handle driving concurrent keep-alive GETs
// on the calling thread, with retries, backoff and a request-rate cap that also obeys the server.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace CLI {
class App;
}

namespace ds {

// Everything about how politely and how hard we talk to the API. Defaults suit the public AppView.
struct HttpOptions {
  int concurrency = 10;          // transfers in flight, and connections per host
  // Request starts per second over all requests; 0 turns the cap off. 10/s is a PDS's published
  // 3000 requests / 5 min, the only number Bluesky publishes.
  double rate_limit_rps = 10;
  // With a cap: the file whose cadence every process on this host shares (RateGate), so all the
  // stages and shards talking to one API stay within one cap together. Empty: this client alone.
  std::string rate_gate_path;
  int max_attempts = 4;          // per request, first attempt included
  double connect_timeout_s = 10;
  double timeout_s = 30;         // whole transfer, body included
  bool insecure = false;         // no TLS verification (logged as a warning)
  std::string user_agent;        // empty: default_user_agent()
  double backoff_initial_s = 0.5;  // delay before the first retry; doubles per attempt, jittered
  double backoff_max_s = 30;
  double max_server_wait_s = 600;  // cap on a wait asked for by Retry-After / RateLimit-Reset
  std::uint64_t jitter_seed = 0x9e3779b97f4a7c15ull;  // jitter is deterministic per seed
};

std::string default_user_agent();

// One finished attempt, as a completion callback sees it.
struct HttpResult {
  std::string url;
  long status = 0;         // HTTP status; 0 when no response arrived (then `error` says why)
  std::string body;        // decoded (libcurl undoes gzip); the callback may move it out
  std::string error;       // libcurl's message when the transfer itself failed, else empty
  int attempt = 1;         // 1-based
  bool last_attempt = false;  // a `retry` verdict is ignored: treat this result as final
  bool ok() const { return error.empty() && status >= 200 && status < 300; }
  // "HTTP 503: <body excerpt>" or the transport error, for logs and error fields.
  std::string describe() const;
};

// What a callback answers: `retry` asks for another attempt (e.g. a truncated or unparsable body);
// it is honoured with the usual backoff while attempts remain.
enum class HttpVerdict { done, retry };
using HttpCallback = std::function<HttpVerdict(HttpResult&)>;

// Totals for a stage's `end` record.
struct HttpCounters {
  std::int64_t requests = 0;          // attempts sent
  std::int64_t retries = 0;           // attempts after the first
  std::int64_t http_429 = 0;
  std::int64_t http_5xx = 0;
  std::int64_t transport_errors = 0;  // no response: refused, reset, timed out, DNS
  std::int64_t bytes = 0;             // response bodies as received (before gzip decoding)
  std::int64_t connections = 0;       // connections opened (CURLINFO_NUM_CONNECTS)
  double waited_s = 0;                // time spent held back by the server's rate-limit answers
};

// Told about traffic as it happens, for a live view of a run (ds::Progress); counters_ only say
// how it ended. Called on the thread driving the client; either member may be empty.
struct HttpObserver {
  std::function<void()> on_request;    // an attempt was sent (retries included)
  std::function<void()> on_rate_wait;  // every request is held for the server's rate limit (429,
                                       // Retry-After, RateLimit-Remaining 0): once per hold
  std::function<void()> on_wake;       // after every poll(): at least once a second from run()
                                       // and the fetch stages' loops, also through a long hold
};
class Progress;
// The observer that feeds a stage's progress: requests, rate-limit holds and a tick per wake-up.
HttpObserver progress_observer(Progress& progress);

// Retry policy, exposed for tests: is this outcome worth another attempt?
bool http_status_retryable(long status);

// Percent-encodes everything but RFC 3986 unreserved characters (for query values).
std::string url_encode(std::string_view s);

// The command-line side of the client, shared by the fetch stages. Each setting resolves as
// flag > environment (.env included) > default:
//   --base-url      BLUESKY_BASE_URL   https://public.api.bsky.app
//   --concurrency   MAX_WORKERS        10    transfers in flight (1..100)
//   --rate-limit    RATE_LIMIT_RPS     10    requests per second over every process on this host
//                                            talking to the same API (decimals allowed), 0 = no cap
//   --rate-limit-file RATE_LIMIT_FILE  default_rate_gate_path(base URL): the shared cadence;
//                                            "none" = this process alone
//   --max-attempts  HTTP_MAX_ATTEMPTS  4     per request, first included (1..20)
//   --timeout       HTTP_TIMEOUT_S     30    seconds per attempt (1..600)
//   --retry-backoff-ms HTTP_RETRY_BACKOFF_MS 500  delay before the first retry, doubling (1..60000)
//   --insecure                               no TLS verification (test servers only)
struct HttpFlags {
  std::optional<std::string> base_url;
  std::optional<std::int64_t> concurrency;
  std::optional<double> rate_limit;
  std::optional<std::string> rate_limit_file;
  std::optional<std::int64_t> max_attempts;
  std::optional<std::int64_t> timeout_s;
  std::optional<std::int64_t> backoff_ms;
  bool insecure = false;
};
void add_http_flags(CLI::App& app, HttpFlags& flags);

struct HttpSettings {
  std::string base_url;  // without a trailing slash
  HttpOptions options;
};
// Throws std::invalid_argument naming the bad setting (a usage error).
HttpSettings resolve_http_settings(const HttpFlags& flags);

// A single-threaded GET client. Requests are queued with get(); poll()/run() start them (at most
// `concurrency` at once, never faster than the rate cap), and call each request's callback on the
// calling thread once it has a final answer. Callbacks may submit further requests. An exception
// thrown by a callback propagates out of poll() with the client left consistent.
//
// Retried automatically: transport failures (refused, reset, timeout, DNS), 408, 429 and 5xx
// other than 501, up to max_attempts, after an exponential backoff with jitter. After a 429 (or a
// 503 carrying Retry-After) no request at all starts until Retry-After / RateLimit-Reset has
// passed. When RateLimit-Remaining runs low, request starts are spread over the time left until
// RateLimit-Reset. Other 4xx go straight to the callback.
class RateGate;
class HttpClient {
 public:
  explicit HttpClient(HttpOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Queues a GET. Lower `priority` starts first; equal priorities start in submission order.
  void get(std::string url, HttpCallback on_done, std::int64_t priority = 0);

  // Drives transfers for at most `max_wait_ms` (less when something completes), running the
  // callbacks of finished requests. With `watch_fd` >= 0 it also returns as soon as that file
  // descriptor is readable, and reports that.
  bool poll(int max_wait_ms = 1000, int watch_fd = -1);
  // Polls until every request (including ones submitted by callbacks) has been answered.
  void run();
  // Keeps transfers moving while waiting for `fd` to become readable (true) or `timeout_ms` to
  // pass (false; -1 waits as long as it takes): what a stage does instead of blocking on input.
  bool run_until_readable(int fd, int timeout_ms = -1);

  std::size_t pending() const { return pending_; }  // requests whose callback has not run
  std::size_t in_flight() const { return active_; }
  const HttpCounters& counters() const { return counters_; }
  const HttpOptions& options() const { return options_; }
  void set_observer(HttpObserver observer) { observer_ = std::move(observer); }

 private:
  struct Request;
  using Key = std::tuple<std::int64_t, std::uint64_t>;  // (priority, submission sequence)
  void launch();
  void start(Request* r);
  void harvest();
  void finish(Request* r, int curl_code);
  void schedule_retry(Request* r, double delay_s);
  void note_rate_headers(Request* r, long status, double now);
  void hold_all_until(double until, const char* why);
  double backoff_delay(int attempt);
  double next_start_time() const;
  int wait_budget_ms(int max_wait_ms) const;

  HttpOptions options_;
  void* multi_ = nullptr;                  // CURLM*
  std::vector<void*> idle_easies_;         // CURL* kept for reuse (they keep their options)
  std::map<Request*, std::unique_ptr<Request>> requests_;
  std::priority_queue<std::pair<Key, Request*>, std::vector<std::pair<Key, Request*>>,
                      std::greater<>> ready_;
  std::multimap<double, Request*> delayed_;  // retries waiting out their backoff
  std::uint64_t seq_ = 0;
  std::size_t pending_ = 0;
  std::size_t active_ = 0;
  std::unique_ptr<RateGate> gate_;  // the rate cap's cadence (host-wide with rate_gate_path), when capped
  double last_start_ = -1e18;   // monotonic seconds of the latest start
  double hold_until_ = 0;       // monotonic seconds: no starts before (429 / Retry-After / Remaining 0)
  double spread_interval_ = 0;  // extra spacing while RateLimit-Remaining is low
  double spread_until_ = 0;
  double logged_hold_until_ = 0;
  bool spreading_logged_ = false;
  std::uint64_t jitter_state_;
  HttpCounters counters_;
  HttpObserver observer_;
};

}  // namespace ds
