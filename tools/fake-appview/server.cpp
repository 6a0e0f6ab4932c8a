// Request handling for the fake AppView: the dataset's endpoints (getPosts lives in get_posts.cpp),
// the served files mode, the rate-limit window, control endpoints and counters. The JSON views
// themselves are views.cpp.
#include "server.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <iterator>
#include <optional>
#include <stdexcept>

#include "ds/json_writer.hpp"
#include "views.hpp"

namespace ds::fake {

using view::Authors;
using view::json_response;
using view::write_array;
using view::write_feed_item;
using view::write_profile_detailed;

std::string Request::get(const std::string& key) const {
  auto it = params.find(key);
  return it == params.end() ? std::string() : it->second;
}

std::vector<std::string> Request::all(const std::string& key) const {
  std::vector<std::string> out;
  auto range = params.equal_range(key);
  for (auto it = range.first; it != range.second; ++it) out.push_back(it->second);
  return out;
}

namespace {

constexpr const char* kGetProfiles = "/xrpc/app.bsky.actor.getProfiles";
constexpr const char* kGetAuthorFeed = "/xrpc/app.bsky.feed.getAuthorFeed";
constexpr const char* kGetPosts = "/xrpc/app.bsky.feed.getPosts";

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

bool parse_int(const std::string& s, long long& out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

Micros floor_ms(Micros t) {
  Micros q = t / 1000;
  if (t % 1000 < 0) --q;
  return q * 1000;
}

}  // namespace

Response xrpc_error(int status, const std::string& error, const std::string& message) {
  Response r;
  r.status = status;
  JsonWriter w(r.body);
  w.begin_object().field("error", error).field("message", message).end_object();
  return r;
}

namespace {

std::int64_t epoch_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Precise wall-clock seconds. time() may read a coarse clock a few milliseconds behind, which
// would put a request that a client timed to the window's reset into the window before it.
std::int64_t epoch_s() { return epoch_ms() / 1000; }

Endpoint endpoint_of(const std::string& path) {
  if (path == kGetProfiles) return Endpoint::get_profiles;
  if (path == kGetAuthorFeed) return Endpoint::get_author_feed;
  if (path == kGetPosts) return Endpoint::get_posts;
  return Endpoint::other;
}

const char* const kEndpointNames[kEndpoints] = {"getProfiles", "getAuthorFeed", "getPosts", "other"};
const char* const kFaultNames[kFaultKinds] = {"http_429", "http_5xx", "truncated", "cut", "dropped", "slow"};

// A file name taken from a request must stay a plain name inside its directory.
bool safe_name(const std::string& s) {
  return !s.empty() && s[0] != '.' && s.find('/') == std::string::npos && s.find('\0') == std::string::npos;
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::nullopt;
  std::string out((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) return std::nullopt;
  return out;
}

// <base>.json and <base>.status as one response; nullopt when neither exists.
std::optional<Response> file_response(const std::string& base) {
  auto body = read_file(base + ".json");
  auto status_text = read_file(base + ".status");
  if (!body && !status_text) return std::nullopt;
  Response r;
  if (body) r.body = std::move(*body);
  if (status_text) {
    long long code = 0;
    std::string t = *status_text;
    while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
    std::size_t b = 0;
    while (b < t.size() && std::isspace(static_cast<unsigned char>(t[b]))) ++b;
    if (!parse_int(t.substr(b), code) || code < 100 || code > 599)
      return xrpc_error(500, "InternalServerError", base + ".status does not hold a status code 100..599");
    r.status = static_cast<int>(code);
  }
  return r;
}

}  // namespace

AppView::AppView(const DatasetParams& params, int day, RateLimitOptions rate)
    : dataset_(params), day_(day), rate_(rate), window_start_s_(epoch_s()) {
  if (day < 0 || day > Dataset::kMaxDay) throw std::out_of_range("day must be 0.." + std::to_string(Dataset::kMaxDay));
  if (rate_.limit < 1 || rate_.window_s < 1) throw std::invalid_argument("rate limit and window must be positive");
}

void AppView::set_day(int day) {
  if (day < 0 || day > Dataset::kMaxDay) throw std::out_of_range("day must be 0.." + std::to_string(Dataset::kMaxDay));
  day_.store(day);
}

void AppView::serve_files(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir.empty()) throw std::invalid_argument("serve_files: empty directory name");
  files_dir_ = std::move(dir);
}

void AppView::request_began(const std::string& path) {
  const auto e = static_cast<int>(endpoint_of(path));
  ++n_requests_[e];
  const std::int64_t now_ms = epoch_ms();
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    if (first_ms_[e] == 0) first_ms_[e] = now_ms;
    last_ms_[e] = std::max(last_ms_[e], now_ms);
  }
  const auto now = static_cast<std::uint64_t>(++in_flight_);
  std::uint64_t seen = max_in_flight_.load();
  while (now > seen && !max_in_flight_.compare_exchange_weak(seen, now)) {
  }
}

void AppView::request_ended(int status) {
  --in_flight_;
  if (status <= 0) return;
  std::lock_guard<std::mutex> lock(stats_mu_);
  ++statuses_[status];
}

Stats AppView::stats() const {
  Stats s;
  s.get_profiles = n_requests_[static_cast<int>(Endpoint::get_profiles)].load();
  s.get_author_feed = n_requests_[static_cast<int>(Endpoint::get_author_feed)].load();
  s.get_posts = n_requests_[static_cast<int>(Endpoint::get_posts)].load();
  s.other = n_requests_[static_cast<int>(Endpoint::other)].load();
  s.connections_opened = connections_.load();
  s.max_in_flight = max_in_flight_.load();
  s.in_flight = static_cast<std::uint64_t>(std::max<std::int64_t>(0, in_flight_.load()));
  for (int i = 0; i < kFaultKinds; ++i) s.faults[i] = faults_[i].load();
  s.rate_limited = rate_limited_.load();
  std::lock_guard<std::mutex> lock(stats_mu_);
  s.statuses = statuses_;
  for (int i = 0; i < kEndpoints; ++i) {
    s.first_ms[i] = first_ms_[i];
    s.last_ms[i] = last_ms_[i];
  }
  return s;
}

std::string AppView::stats_json() const {
  const Stats s = stats();
  std::string body;
  JsonWriter w(body);
  w.begin_object().key("requests").begin_object();
  const std::uint64_t counts[kEndpoints] = {s.get_profiles, s.get_author_feed, s.get_posts, s.other};
  for (int i = 0; i < kEndpoints; ++i) w.field(kEndpointNames[i], static_cast<std::int64_t>(counts[i]));
  w.end_object();
  w.field("connections_opened", static_cast<std::int64_t>(s.connections_opened));
  w.field("max_in_flight", static_cast<std::int64_t>(s.max_in_flight));
  w.field("in_flight", static_cast<std::int64_t>(s.in_flight));
  w.field("day", day_.load());
  w.key("statuses").begin_object();
  for (const auto& [status, n] : s.statuses) w.field(std::to_string(status), static_cast<std::int64_t>(n));
  w.end_object();
  w.field("http_429", static_cast<std::int64_t>(s.http_429()));
  w.field("rate_limited", static_cast<std::int64_t>(s.rate_limited));
  w.key("faults").begin_object();
  for (int i = 0; i < kFaultKinds; ++i) w.field(kFaultNames[i], static_cast<std::int64_t>(s.faults[i]));
  w.end_object();
  w.key("arrivals").begin_object();
  for (int i = 0; i < kEndpoints; ++i) {
    w.key(kEndpointNames[i]).begin_object();
    w.field("first_ms", s.first_ms[i]).field("last_ms", s.last_ms[i]);
    w.end_object();
  }
  w.end_object();
  w.end_object();
  return body;
}

void AppView::reset_stats() {
  for (auto& n : n_requests_) n = 0;
  connections_ = 0;
  max_in_flight_ = static_cast<std::uint64_t>(std::max<std::int64_t>(0, in_flight_.load()));
  for (auto& n : faults_) n = 0;
  rate_limited_ = 0;
  std::lock_guard<std::mutex> lock(stats_mu_);
  statuses_.clear();
  for (int i = 0; i < kEndpoints; ++i) first_ms_[i] = last_ms_[i] = 0;
}

bool AppView::take_rate_slot(std::int64_t& remaining, std::int64_t& reset) {
  const std::int64_t now = epoch_s();
  std::lock_guard<std::mutex> lock(rate_mu_);
  if (now >= window_start_s_ + rate_.window_s) {
    window_start_s_ += (now - window_start_s_) / rate_.window_s * rate_.window_s;
    window_count_ = 0;
  }
  reset = window_start_s_ + rate_.window_s;
  // A refused request does not use up the window, as on the real service: it did no work.
  if (rate_.enforce && window_count_ >= rate_.limit) {
    remaining = 0;
    return false;
  }
  ++window_count_;
  remaining = std::max<std::int64_t>(0, rate_.limit - window_count_);
  return true;
}

Response AppView::handle(const Request& req) {
  if (starts_with(req.path, "/_fake/")) return control(req);
  if (!starts_with(req.path, "/xrpc/")) return xrpc_error(404, "NotFound", "Not Found");
  std::int64_t remaining = 0, reset = 0;
  const bool allowed = take_rate_slot(remaining, reset);
  Response res;
  if (!allowed) {
    ++rate_limited_;
    res = xrpc_error(429, "RateLimitExceeded", "Rate Limit Exceeded");
    res.headers.emplace_back("Retry-After", std::to_string(std::max<std::int64_t>(1, reset - epoch_s())));
  } else {
    const int day = day_.load();
    try {
      if (req.path == kGetProfiles) {
        res = files_dir_.empty() ? get_profiles(req, day) : file_get_profiles(req);
      } else if (req.path == kGetAuthorFeed) {
        res = files_dir_.empty() ? get_author_feed(req, day) : file_get_author_feed(req);
      } else if (req.path == kGetPosts) {
        res = files_dir_.empty() ? get_posts(req, day) : file_get_posts(req);
      } else {
        res = xrpc_error(501, "MethodNotImplemented", "Method Not Implemented");
      }
    } catch (const std::exception& e) {
      spdlog::error("{} failed: {}", req.path, e.what());
      res = xrpc_error(500, "InternalServerError", "Internal Server Error");
    }
  }
  res.headers.emplace_back("RateLimit-Limit", std::to_string(rate_.limit));
  res.headers.emplace_back("RateLimit-Remaining", std::to_string(remaining));
  res.headers.emplace_back("RateLimit-Reset", std::to_string(reset));
  res.headers.emplace_back("RateLimit-Policy", std::to_string(rate_.limit) + ";w=" + std::to_string(rate_.window_s));
  return res;
}

Response AppView::file_get_profiles(const Request& req) {
  const std::string dir = files_dir_ + "/getProfiles/";
  const std::vector<std::string> actors = req.all("actors");
  if (!actors.empty() && safe_name(actors.front()))
    if (auto r = file_response(dir + actors.front())) return std::move(*r);
  if (auto r = file_response(dir + "default")) return std::move(*r);
  return json_response(R"({"profiles":[]})");
}

Response AppView::file_get_author_feed(const Request& req) {
  const std::string actor = req.get("actor");
  const std::string cursor = req.get("cursor");
  std::string name = actor;
  if (!cursor.empty()) name += "@" + cursor;
  if (safe_name(actor) && safe_name(name))
    if (auto r = file_response(files_dir_ + "/getAuthorFeed/" + name)) return std::move(*r);
  return xrpc_error(400, "InvalidRequest", "Profile not found");
}

Response AppView::file_get_posts(const Request& req) {
  const std::string dir = files_dir_ + "/getPosts/";
  const std::vector<std::string> uris = req.all("uris");
  if (!uris.empty()) {
    const std::string& first = uris.front();
    const std::string rkey = first.substr(first.rfind('/') + 1);  // the whole URI when it has no '/'
    if (safe_name(rkey))
      if (auto r = file_response(dir + rkey)) return std::move(*r);
  }
  if (auto r = file_response(dir + "default")) return std::move(*r);
  return json_response(R"({"posts":[]})");
}

Response AppView::get_profiles(const Request& req, int day) {
  const std::vector<std::string> actors = req.all("actors");
  if (actors.empty()) return xrpc_error(400, "InvalidRequest", "Error: Params must have the property \"actors\"");
  if (actors.size() > 25) return xrpc_error(400, "InvalidRequest", "Error: actors must not have more than 25 elements");
  std::string body;
  JsonWriter w(body);
  w.begin_object().key("profiles");
  write_array(w, body, [&](JsonWriter& a) {
    std::vector<int> seen;
    for (const std::string& actor : actors) {
      const auto user = dataset_.find_actor(actor, day);
      if (!user || std::find(seen.begin(), seen.end(), *user) != seen.end()) continue;
      seen.push_back(*user);
      if (auto p = dataset_.profile(*user, day)) write_profile_detailed(a, *p);
    }
  });
  w.end_object();
  return json_response(std::move(body));
}

Response AppView::get_author_feed(const Request& req, int day) {
  if (!req.has("actor")) return xrpc_error(400, "InvalidRequest", "Error: Params must have the property \"actor\"");
  long long limit = 50;
  if (req.has("limit")) {
    if (!parse_int(req.get("limit"), limit)) return xrpc_error(400, "InvalidRequest", "Error: limit must be an integer");
    if (limit < 1) return xrpc_error(400, "InvalidRequest", "Error: limit can not be less than 1");
    if (limit > 100) return xrpc_error(400, "InvalidRequest", "Error: limit can not be greater than 100");
  }
  if (req.has("filter")) {
    static const char* const kFilters[] = {"posts_with_replies", "posts_no_replies", "posts_with_media",
                                           "posts_and_author_threads", "posts_with_video"};
    const std::string f = req.get("filter");
    if (std::none_of(std::begin(kFilters), std::end(kFilters), [&](const char* k) { return f == k; }))
      return xrpc_error(400, "InvalidRequest", "Error: filter must be one of posts_with_replies, posts_no_replies, "
                                               "posts_with_media, posts_and_author_threads, posts_with_video");
  }
  bool include_pins = false;
  if (req.has("includePins")) {
    const std::string v = req.get("includePins");
    if (v != "true" && v != "false") return xrpc_error(400, "InvalidRequest", "Error: includePins must be a boolean");
    include_pins = v == "true";
  }
  // The real AppView's cursor is "<ms>__<cid>"; it answers any other with a 500 (its key parser
  // throws), which is what a client sending a timestamp would meet there.
  std::optional<Micros> cursor;
  if (req.has("cursor") && !req.get("cursor").empty()) {
    const std::string c = req.get("cursor");
    const std::size_t sep = c.find("__");
    long long ms = 0;
    if (sep == std::string::npos || sep == 0 || sep + 2 == c.size() || !parse_int(c.substr(0, sep), ms) || ms < 0)
      return xrpc_error(500, "InternalServerError", "Internal Server Error");
    cursor = static_cast<Micros>(ms) * 1000;
  }
  const auto user = dataset_.find_actor(req.get("actor"), day);
  if (!user) return xrpc_error(400, "InvalidRequest", "Profile not found");

  const auto index = dataset_.feed_index(*user, day);
  const auto& entries = index->entries;
  std::size_t start = 0;
  if (cursor) {
    const Micros c = floor_ms(*cursor);
    start = static_cast<std::size_t>(
        std::partition_point(entries.begin(), entries.end(), [&](const FeedEntry& e) { return floor_ms(e.sort_at) >= c; }) -
        entries.begin());
  }
  const std::size_t end = std::min(entries.size(), start + static_cast<std::size_t>(limit));

  Authors authors(dataset_, day);
  std::string last_cid;
  std::string body;
  body.reserve((end - start) * 2048 + 64);
  JsonWriter w(body);
  w.begin_object().key("feed");
  write_array(w, body, [&](JsonWriter& a) {
    if (!cursor && include_pins && index->pinned)
      write_feed_item(a, body, dataset_.expand(*index->pinned, *user, day, FeedItem::Reason::Pin), dataset_, day,
                      authors);
    for (std::size_t i = start; i < end; ++i) {
      const FeedEntry& e = entries[i];
      const FeedItem item =
          dataset_.expand(e, *user, day, e.repost ? FeedItem::Reason::Repost : FeedItem::Reason::None);
      write_feed_item(a, body, item, dataset_, day, authors);
      if (i + 1 == end) last_cid = item.post.cid;
    }
  });
  if (end < entries.size())
    w.field("cursor", std::to_string(floor_ms(entries[end - 1].sort_at) / 1000) + "__" + last_cid);
  w.end_object();
  return json_response(std::move(body));
}

Response AppView::control(const Request& req) {
  const int day = day_.load();
  auto day_body = [](int d) {
    std::string body;
    JsonWriter(body).begin_object().field("ok", true).field("day", d).end_object();
    return json_response(std::move(body));
  };
  if (req.path == "/_fake/health") return day_body(day);
  if (req.path == "/_fake/day") {
    if (req.method == "GET") return day_body(day);
    long long d;
    if (req.method != "POST" || !parse_int(req.get("day"), d) || d < 0 || d > Dataset::kMaxDay)
      return xrpc_error(400, "InvalidRequest", "POST /_fake/day?day=N with N in 0.." + std::to_string(Dataset::kMaxDay));
    set_day(static_cast<int>(d));
    spdlog::debug("day switched to {}", d);
    return day_body(static_cast<int>(d));
  }
  if (req.path == "/_fake/stats") return json_response(stats_json());
  if (req.path == "/_fake/stats/reset" && req.method == "POST") {
    reset_stats();
    return day_body(day);
  }
  return xrpc_error(404, "NotFound", "Not Found");
}

Handler with_latency(Handler inner, std::chrono::milliseconds delay) {
  if (delay.count() <= 0) return inner;
  return [inner = std::move(inner), delay](const Request& req) {
    if (starts_with(req.path, "/xrpc/")) std::this_thread::sleep_for(delay);
    return inner(req);
  };
}

bool is_loopback_host(const std::string& host) {
  return host == "127.0.0.1" || host == "::1" || host == "localhost";
}

}  // namespace ds::fake
