// libcurl multi-interface client shared by ds-fetch-profiles and ds-fetch-feeds (see http.hpp).
// Scheduling (rate cap, server holds, retry backoff) lives here; libcurl only moves bytes.
#include "ds/http.hpp"

#include <curl/curl.h>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <stdexcept>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "ds/config.hpp"
#include "ds/log.hpp"
#include "ds/progress.hpp"
#include "ds/rate_gate.hpp"

namespace ds {

namespace {

double mono_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Server rate-limit headers speak wall-clock epoch seconds.
double epoch_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void global_init_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      throw std::runtime_error("curl_global_init failed");
  });
}

// Bodies beyond this are hostile or a wrong URL; refusing them bounds memory per transfer.
constexpr std::size_t max_body_bytes = 64u << 20;

// Failures that another attempt cannot fix: our own configuration or a certificate problem.
bool transport_retryable(CURLcode code) {
  switch (code) {
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_NOT_BUILT_IN:
    case CURLE_FUNCTION_NOT_FOUND:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_OUT_OF_MEMORY:
    case CURLE_FAILED_INIT:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CIPHER:
    case CURLE_WRITE_ERROR:  // our body-size limit
    case CURLE_FILESIZE_EXCEEDED:
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_LOGIN_DENIED:
    case CURLE_ABORTED_BY_CALLBACK:
      return false;
    default:
      return true;
  }
}

std::optional<double> parse_number(const char* s) {
  if (!s) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(s, &end);
  if (end == s || !std::isfinite(v)) return std::nullopt;
  while (*end == ' ' || *end == '\t') ++end;
  if (*end != '\0') return std::nullopt;
  return v;
}

std::optional<std::string> response_header(CURL* easy, const char* name) {
  struct curl_header* h = nullptr;
  if (curl_easy_header(easy, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h || !h->value)
    return std::nullopt;
  return std::string(h->value);
}

// Retry-After is either delay-seconds or an HTTP-date.
std::optional<double> retry_after_seconds(const std::string& v) {
  if (auto n = parse_number(v.c_str())) return std::max(0.0, *n);
  const time_t t = curl_getdate(v.c_str(), nullptr);
  if (t < 0) return std::nullopt;
  return std::max(0.0, static_cast<double>(t) - epoch_now());
}

// RateLimit-Reset is absolute epoch seconds on Bluesky. A value below 1e9 (2001) cannot be that,
// so it is read as a delay, which is what the IETF draft header means.
std::optional<double> reset_in_seconds(const std::string& v) {
  auto n = parse_number(v.c_str());
  if (!n) return std::nullopt;
  if (*n < 1e9) return std::max(0.0, *n);
  return std::max(0.0, *n - epoch_now());
}

}  // namespace

struct HttpClient::Request {
  std::string url;
  HttpCallback callback;
  Key key;
  int attempt = 0;
  std::string body;
  CURL* easy = nullptr;
  char errbuf[CURL_ERROR_SIZE] = {};
};

std::string default_user_agent() {
  return std::string("dopplersky-workers/1 (daily Bluesky account analytics; libcurl/") +
         curl_version_info(CURLVERSION_NOW)->version + ")";
}

bool http_status_retryable(long status) {
  return status == 408 || status == 429 || (status >= 500 && status <= 599 && status != 501);
}

std::string url_encode(std::string_view s) {
  static const char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (const unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string HttpResult::describe() const {
  if (!error.empty()) return status > 0 ? "HTTP " + std::to_string(status) + ": " + error : error;
  return "HTTP " + std::to_string(status) + ": " + excerpt(body, 160);
}

namespace {
std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* body = static_cast<std::string*>(user);
  const std::size_t len = size * n;
  if (body->size() + len > max_body_bytes) return 0;  // aborts with CURLE_WRITE_ERROR
  body->append(data, len);
  return len;
}

struct SlistHolder {
  curl_slist* list = nullptr;
  ~SlistHolder() { curl_slist_free_all(list); }
};

curl_slist* accept_json_header() {
  static SlistHolder holder;  // options point at it for the process lifetime
  if (!holder.list) holder.list = curl_slist_append(nullptr, "Accept: application/json");
  return holder.list;
}
}  // namespace

HttpClient::HttpClient(HttpOptions options) : options_(std::move(options)) {
  if (options_.concurrency < 1) throw std::invalid_argument("HTTP concurrency must be at least 1");
  if (options_.max_attempts < 1) throw std::invalid_argument("HTTP max attempts must be at least 1");
  if (options_.rate_limit_rps < 0) throw std::invalid_argument("rate limit must not be negative");
  if (options_.user_agent.empty()) options_.user_agent = default_user_agent();
  if (options_.rate_limit_rps > 0) gate_ = std::make_unique<RateGate>(options_.rate_gate_path, options_.rate_limit_rps);
  jitter_state_ = options_.jitter_seed;
  global_init_once();
  CURLM* m = curl_multi_init();
  if (!m) throw std::runtime_error("curl_multi_init failed");
  multi_ = m;
  const long conc = options_.concurrency;
  curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, conc);
  curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, conc);
  curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, conc);  // keep them all alive between bursts
  curl_multi_setopt(m, CURLMOPT_PIPELINING, static_cast<long>(CURLPIPE_MULTIPLEX));
  if (options_.insecure)
    spdlog::warn(
        "TLS certificate verification is OFF (--insecure): any server can answer in the API's name. "
        "Use it only against a local test server.");
}

HttpClient::~HttpClient() {
  auto* m = static_cast<CURLM*>(multi_);
  for (auto& [raw, req] : requests_) {
    if (req->easy) {
      curl_multi_remove_handle(m, req->easy);
      curl_easy_cleanup(req->easy);
    }
  }
  for (void* e : idle_easies_) curl_easy_cleanup(static_cast<CURL*>(e));
  curl_multi_cleanup(m);
}

void HttpClient::get(std::string url, HttpCallback on_done, std::int64_t priority) {
  auto req = std::make_unique<Request>();
  req->url = std::move(url);
  req->callback = std::move(on_done);
  req->key = Key{priority, seq_++};
  Request* r = req.get();
  requests_.emplace(r, std::move(req));
  ready_.emplace(r->key, r);
  ++pending_;
}

double HttpClient::next_start_time() const {
  double t = hold_until_;
  if (gate_) t = std::max(t, gate_->next_slot(mono_now()));
  if (spread_interval_ > 0 && last_start_ + spread_interval_ < spread_until_)
    t = std::max(t, last_start_ + spread_interval_);
  return t;
}

void HttpClient::launch() {
  double now = mono_now();
  while (!delayed_.empty() && delayed_.begin()->first <= now) {
    Request* r = delayed_.begin()->second;
    delayed_.erase(delayed_.begin());
    ready_.emplace(r->key, r);
  }
  while (active_ < static_cast<std::size_t>(options_.concurrency) && !ready_.empty()) {
    now = mono_now();
    if (next_start_time() > now) break;
    // The cap's cadence: another process sharing the gate's file may have taken the slot since
    // next_start_time() read it.
    if (gate_ && !gate_->try_take(now)) break;
    Request* r = ready_.top().second;
    ready_.pop();
    start(r);
    last_start_ = now;
  }
}

void HttpClient::start(Request* r) {
  CURL* e = nullptr;
  if (!idle_easies_.empty()) {
    e = static_cast<CURL*>(idle_easies_.back());
    idle_easies_.pop_back();
  } else {
    e = curl_easy_init();
    if (!e) throw std::runtime_error("curl_easy_init failed");
    // Options that never change stay on the handle across requests.
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");  // whatever libcurl decodes: gzip, deflate, ...
    curl_easy_setopt(e, CURLOPT_USERAGENT, options_.user_agent.c_str());
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, accept_json_header());
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &on_body);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, options_.insecure ? 0L : 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, options_.insecure ? 0L : 2L);
  }
  r->easy = e;
  r->body.clear();
  r->errbuf[0] = '\0';
  ++r->attempt;
  curl_easy_setopt(e, CURLOPT_URL, r->url.c_str());
  // Over TLS, wait for ALPN to say whether the connection multiplexes (HTTP/2) rather than open
  // more. Plain http:// only ever learns that from a whole response, so it would just stall.
  curl_easy_setopt(e, CURLOPT_PIPEWAIT, r->url.rfind("https://", 0) == 0 ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &r->body);
  curl_easy_setopt(e, CURLOPT_PRIVATE, static_cast<void*>(r));
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  if (CURLMcode mc = curl_multi_add_handle(static_cast<CURLM*>(multi_), e); mc != CURLM_OK) {
    idle_easies_.push_back(e);
    r->easy = nullptr;
    throw std::runtime_error(std::string("curl_multi_add_handle: ") + curl_multi_strerror(mc));
  }
  ++active_;
  ++counters_.requests;
  if (r->attempt > 1) ++counters_.retries;
  if (observer_.on_request) observer_.on_request();
}

double HttpClient::backoff_delay(int attempt) {
  // splitmix64: a tiny deterministic generator, so runs with the same seed retry the same way.
  jitter_state_ += 0x9e3779b97f4a7c15ull;
  std::uint64_t z = jitter_state_;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  const double unit = static_cast<double>(z >> 11) / 9007199254740992.0;  // [0, 1)
  const double base = std::min(options_.backoff_max_s,
                               options_.backoff_initial_s * std::ldexp(1.0, std::max(0, attempt - 1)));
  // "Equal jitter": at least half the backoff, so retries never hammer, spread over the rest.
  return base * (0.5 + 0.5 * unit);
}

void HttpClient::hold_all_until(double until, const char* why) {
  const double now = mono_now();
  if (until <= hold_until_) return;
  counters_.waited_s += until - std::max(now, hold_until_);
  hold_until_ = until;
  // One line (and one wait for the observer) per hold, not per request held by it.
  if (until > logged_hold_until_ + 1.0) {
    spdlog::info("API rate limit ({}): holding all requests for {:.1f} s", why, until - now);
    logged_hold_until_ = until;
    if (observer_.on_rate_wait) observer_.on_rate_wait();
  }
}

// Reads the server's rate-limit answer. Returns nothing; adjusts the shared schedule.
void HttpClient::note_rate_headers(Request* r, long status, double now) {
  CURL* e = r->easy;
  const auto remaining_h = response_header(e, "RateLimit-Remaining");
  const auto reset_h = response_header(e, "RateLimit-Reset");
  std::optional<double> reset_in;
  if (reset_h) reset_in = reset_in_seconds(*reset_h);
  const double cap = options_.max_server_wait_s;

  if (status == 429 || status == 503) {
    std::optional<double> wait;
    if (auto ra = response_header(e, "Retry-After")) wait = retry_after_seconds(*ra);
    if (!wait && status == 429 && reset_in) wait = reset_in;
    if (wait && *wait > 0) {
      hold_all_until(now + std::min(*wait, cap), status == 429 ? "HTTP 429" : "HTTP 503 Retry-After");
    } else if (status == 429) {
      // A 429 that names no time: back off everything, not just this request.
      hold_all_until(now + backoff_delay(r->attempt), "HTTP 429 without Retry-After");
    }
  }

  if (!remaining_h || !reset_in) return;
  const auto remaining = parse_number(remaining_h->c_str());
  if (!remaining) return;
  double limit = 0;
  if (auto l = response_header(e, "RateLimit-Limit"))
    if (auto n = parse_number(l->c_str())) limit = *n;
  const double left_s = std::min(*reset_in, cap);
  // "Near zero": within two rounds of in-flight requests, or 5% of the window.
  const double low_water = std::max(2.0 * options_.concurrency, limit / 20.0);
  if (*remaining <= 0 && left_s > 0) {
    hold_all_until(now + left_s, "RateLimit-Remaining is 0");
  } else if (*remaining < low_water && left_s > 0) {
    spread_interval_ = left_s / *remaining;
    spread_until_ = now + left_s;
    if (!spreading_logged_) {
      spdlog::info("API rate limit: {} requests left for the next {:.0f} s; slowing to one every {:.2f} s",
                   *remaining, left_s, spread_interval_);
      spreading_logged_ = true;
    }
  } else if (*remaining >= low_water) {
    spread_interval_ = 0;
    spreading_logged_ = false;
  }
}

void HttpClient::schedule_retry(Request* r, double delay_s) {
  const double at = std::max(mono_now() + delay_s, hold_until_);
  delayed_.emplace(at, r);
}

void HttpClient::finish(Request* r, int code_int) {
  const auto code = static_cast<CURLcode>(code_int);
  CURL* e = r->easy;
  auto* m = static_cast<CURLM*>(multi_);
  const double now = mono_now();

  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  curl_off_t wire = 0;
  if (curl_easy_getinfo(e, CURLINFO_SIZE_DOWNLOAD_T, &wire) == CURLE_OK) counters_.bytes += wire;
  long connects = 0;
  if (curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK) counters_.connections += connects;

  bool retryable;
  HttpResult res;
  res.url = r->url;
  res.status = status;
  if (code != CURLE_OK) {
    ++counters_.transport_errors;
    retryable = transport_retryable(code);
    res.error = r->errbuf[0] ? std::string(r->errbuf) : std::string(curl_easy_strerror(code));
    if (code == CURLE_WRITE_ERROR) res.error = "response body larger than " + std::to_string(max_body_bytes) + " bytes";
  } else {
    if (status == 429) ++counters_.http_429;
    if (status >= 500 && status <= 599) ++counters_.http_5xx;
    retryable = http_status_retryable(status);
  }
  if (status > 0) note_rate_headers(r, status, now);

  curl_multi_remove_handle(m, e);
  idle_easies_.push_back(e);
  r->easy = nullptr;
  --active_;

  const bool can_retry = r->attempt < options_.max_attempts;
  if (retryable && can_retry) {
    spdlog::debug("{} (attempt {}/{}): {}; retrying", r->url, r->attempt, options_.max_attempts,
                  res.error.empty() ? "HTTP " + std::to_string(status) : res.error);
    schedule_retry(r, backoff_delay(r->attempt));
    return;
  }

  res.body = std::move(r->body);
  r->body = std::string();
  res.attempt = r->attempt;
  res.last_attempt = !can_retry;
  HttpVerdict verdict;
  try {
    verdict = r->callback(res);
  } catch (...) {
    requests_.erase(r);
    --pending_;
    throw;
  }
  if (verdict == HttpVerdict::retry && can_retry) {
    spdlog::debug("{} (attempt {}/{}): response rejected by its reader; retrying", r->url, r->attempt,
                  options_.max_attempts);
    schedule_retry(r, backoff_delay(r->attempt));
    return;
  }
  requests_.erase(r);
  --pending_;
}

void HttpClient::harvest() {
  auto* m = static_cast<CURLM*>(multi_);
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(m, &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    void* priv = nullptr;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
    const CURLcode result = msg->data.result;  // msg is invalid once the handle is removed
    finish(static_cast<Request*>(priv), static_cast<int>(result));
  }
}

int HttpClient::wait_budget_ms(int max_wait_ms) const {
  double wait_s = max_wait_ms / 1000.0;
  const double now = mono_now();
  if (!ready_.empty() && active_ < static_cast<std::size_t>(options_.concurrency))
    wait_s = std::min(wait_s, next_start_time() - now);
  if (!delayed_.empty()) wait_s = std::min(wait_s, delayed_.begin()->first - now);
  if (wait_s <= 0) return 0;
  return static_cast<int>(std::ceil(wait_s * 1000.0));
}

namespace {
bool fd_readable(int fd) {
  struct pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL));
}
}  // namespace

bool HttpClient::poll(int max_wait_ms, int watch_fd) {
  auto* m = static_cast<CURLM*>(multi_);
  launch();
  if (watch_fd >= 0 && fd_readable(watch_fd)) return true;
  struct curl_waitfd extra{};
  extra.fd = watch_fd;
  extra.events = CURL_WAIT_POLLIN;
  const int wait = wait_budget_ms(max_wait_ms);
  if (CURLMcode mc = curl_multi_poll(m, watch_fd >= 0 ? &extra : nullptr, watch_fd >= 0 ? 1u : 0u, wait,
                                     nullptr);
      mc != CURLM_OK)
    throw std::runtime_error(std::string("curl_multi_poll: ") + curl_multi_strerror(mc));
  int running = 0;
  if (CURLMcode mc = curl_multi_perform(m, &running); mc != CURLM_OK)
    throw std::runtime_error(std::string("curl_multi_perform: ") + curl_multi_strerror(mc));
  harvest();
  launch();
  if (observer_.on_wake) observer_.on_wake();
  // curl does not report POLLHUP (a pipe whose writer closed), so ask the kernel directly.
  return watch_fd >= 0 && fd_readable(watch_fd);
}

void HttpClient::run() {
  while (pending_ > 0) poll(1000);
}

bool HttpClient::run_until_readable(int fd, int timeout_ms) {
  const double deadline = timeout_ms < 0 ? -1 : mono_now() + timeout_ms / 1000.0;
  for (;;) {
    int slice = 1000;
    if (deadline >= 0) {
      const double left = deadline - mono_now();
      if (left <= 0) return fd_readable(fd);
      slice = std::min(slice, static_cast<int>(std::ceil(left * 1000.0)));
    }
    if (pending_ > 0) {
      if (poll(slice, fd)) return true;
    } else {
      struct pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, deadline < 0 ? -1 : slice) > 0) return true;
    }
  }
}

HttpObserver progress_observer(Progress& progress) {
  return {[&progress] { progress.add_requests(); }, [&progress] { progress.add_rate_wait(); },
          [&progress] { progress.tick(); }};
}

void add_http_flags(CLI::App& app, HttpFlags& f) {
  app.add_option("--base-url", f.base_url,
                 std::string("API base URL (env BLUESKY_BASE_URL; default ") + default_base_url + ")");
  app.add_option("--concurrency", f.concurrency, "Requests in flight (env MAX_WORKERS; default 10)");
  app.add_option("--rate-limit", f.rate_limit,
                 "Requests per second over every stage and shard on this host talking to the same API, decimals "
                 "allowed, 0 = no cap (env RATE_LIMIT_RPS; default 10 = a PDS's 3000 per 5 min)");
  app.add_option("--rate-limit-file", f.rate_limit_file,
                 "File holding the host-wide request cadence, shared by every process using it (env RATE_LIMIT_FILE; "
                 "default one per user and base URL in $XDG_RUNTIME_DIR or /tmp; none = this process alone)");
  app.add_option("--max-attempts", f.max_attempts,
                 "Attempts per request, first included (env HTTP_MAX_ATTEMPTS; default 4)");
  app.add_option("--timeout", f.timeout_s, "Seconds per attempt (env HTTP_TIMEOUT_S; default 30)");
  app.add_option("--retry-backoff-ms", f.backoff_ms,
                 "Delay before the first retry, doubled for each further one and jittered (env HTTP_RETRY_BACKOFF_MS; "
                 "default 500)");
  app.add_flag("--insecure", f.insecure, "Do not verify TLS certificates (local test servers only)");
}

HttpSettings resolve_http_settings(const HttpFlags& f) {
  HttpSettings s;
  s.base_url = setting(f.base_url, "BLUESKY_BASE_URL", default_base_url);
  while (!s.base_url.empty() && s.base_url.back() == '/') s.base_url.pop_back();
  if (s.base_url.rfind("http://", 0) != 0 && s.base_url.rfind("https://", 0) != 0)
    throw std::invalid_argument("base URL \"" + s.base_url + "\" must start with http:// or https://");
  s.options.concurrency = static_cast<int>(setting_int(f.concurrency, "MAX_WORKERS", 10, 1, 100));
  s.options.rate_limit_rps = setting_double(f.rate_limit, "RATE_LIMIT_RPS", 10, 0, 1000);
  s.options.rate_gate_path = setting(f.rate_limit_file, "RATE_LIMIT_FILE", default_rate_gate_path(s.base_url));
  if (s.options.rate_gate_path == "none") s.options.rate_gate_path.clear();
  s.options.max_attempts = static_cast<int>(setting_int(f.max_attempts, "HTTP_MAX_ATTEMPTS", 4, 1, 20));
  s.options.timeout_s = static_cast<double>(setting_int(f.timeout_s, "HTTP_TIMEOUT_S", 30, 1, 600));
  s.options.connect_timeout_s = std::min(10.0, s.options.timeout_s);
  s.options.backoff_initial_s =
      static_cast<double>(setting_int(f.backoff_ms, "HTTP_RETRY_BACKOFF_MS", 500, 1, 60000)) / 1000.0;
  s.options.insecure = f.insecure;
  return s;
}

}  // namespace ds
