// The fake AppView's fault layer: 429s, 5xx, slow answers, truncated or cut bodies and dropped
// connections, drawn per request from a seeded hash so that runs are repeatable.
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "server.hpp"

namespace ds::fake {

namespace {

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

double unit(std::uint64_t x) { return static_cast<double>(x >> 11) * (1.0 / 9007199254740992.0); }

std::int64_t epoch_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Response injected_429(const FaultOptions& o, const RateLimitOptions& rate) {
  Response r = xrpc_error(429, "RateLimitExceeded", "Rate Limit Exceeded");
  const std::string ahead = std::to_string(o.retry_after_s);
  r.headers.emplace_back("RateLimit-Limit", std::to_string(rate.limit));
  r.headers.emplace_back("RateLimit-Remaining", "0");
  r.headers.emplace_back("RateLimit-Reset", std::to_string(epoch_s() + o.retry_after_s));  // absolute, like Bluesky
  r.headers.emplace_back("RateLimit-Policy", std::to_string(rate.limit) + ";w=" + std::to_string(rate.window_s));
  r.headers.emplace_back("Retry-After", ahead);
  return r;
}

// What an overloaded service and the proxies in front of it send: JSON from the service, HTML
// from a proxy (so a client must not expect a JSON error body).
Response injected_5xx(std::uint64_t pick) {
  switch (pick % 3) {
    case 0: return xrpc_error(500, "InternalServerError", "Internal Server Error");
    case 1: {
      Response r;
      r.status = 502;
      r.content_type = "text/html";
      r.body = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>\n";
      return r;
    }
    default: return xrpc_error(503, "ServiceUnavailable", "Service Unavailable");
  }
}

}  // namespace

Handler with_faults(Handler inner, FaultOptions o, AppView& app) {
  if (!o.any()) return inner;
  struct State {
    std::mutex mu;
    std::unordered_map<std::string, std::uint32_t> arrivals;  // per distinct request
  };
  auto state = std::make_shared<State>();
  return [inner = std::move(inner), o, &app, state](const Request& req) -> Response {
    if (req.path.rfind("/xrpc/", 0) != 0) return inner(req);
    // The request's identity: method, path and every parameter (a multimap iterates in a fixed
    // order), so the draw does not depend on how concurrent requests interleave.
    std::string key = req.method + ' ' + req.path;
    for (const auto& [k, v] : req.params) {
      key += '\x1f';
      key += k;
      key += '=';
      key += v;
    }
    std::uint32_t nth;
    {
      std::lock_guard<std::mutex> lock(state->mu);
      nth = state->arrivals[key]++;
    }
    const std::uint64_t h = mix64(mix64(o.seed ^ fnv1a(key)) + nth);

    if (unit(mix64(h ^ 0x736c6f77ull)) < o.p_slow) {
      app.fault_injected(Fault::slow);
      std::this_thread::sleep_for(std::chrono::milliseconds(o.slow_ms));
    }
    const double u = unit(h);
    double edge = o.p_429;
    if (u < edge) {
      app.fault_injected(Fault::http_429);
      return injected_429(o, app.rate_limit());
    }
    if (u < (edge += o.p_5xx)) {
      app.fault_injected(Fault::http_5xx);
      return injected_5xx(mix64(h ^ 0x35787878ull));
    }
    if (u < (edge += o.p_truncated)) {
      Response r = inner(req);
      // Only answers with a payload: a cut error body would turn "Profile not found" into an
      // unexplained 400, which no real server sends and no client could tell apart.
      if (r.status == 200) {
        app.fault_injected(Fault::truncated);
        r.body.resize(r.body.size() / 2);  // Content-Length follows the body: HTTP is fine, JSON is not
      }
      return r;
    }
    if (u < (edge += o.p_cut)) {
      app.fault_injected(Fault::cut);
      Response r = inner(req);
      r.delivery = Response::Delivery::cut;
      return r;
    }
    if (u < (edge += o.p_drop)) {
      app.fault_injected(Fault::dropped);
      Response r;
      r.delivery = Response::Delivery::drop;
      return r;
    }
    return inner(req);
  };
}

}  // namespace ds::fake
