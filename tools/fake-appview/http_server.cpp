// The fake AppView's HTTP/1.1 server: keep-alive, one thread per connection, and the ability to
// break a connection on purpose (Response::Delivery), which a general-purpose library hides.
// It serves loopback tests and benchmarks only: GET/POST without request bodies worth reading.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "server.hpp"

namespace ds::fake {

namespace {

constexpr std::size_t kMaxHeaderBytes = 64 * 1024;
constexpr std::size_t kMaxBodyBytes = 1 << 20;
constexpr int kReadTimeoutMs = 30'000;  // for the rest of a request once its first byte came

const char* reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX decoding; in a query '+' is a space too (HTML form encoding, which clients also use).
std::string url_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool send_all(int fd, const char* data, std::size_t len) {
  while (len > 0) {
    const ssize_t n = ::send(fd, data, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    len -= static_cast<std::size_t>(n);
  }
  return true;
}

// Waits for input; false on timeout, error or hang-up without data.
bool wait_readable(int fd, int timeout_ms) {
  struct pollfd p{fd, POLLIN, 0};
  for (;;) {
    const int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    return r > 0;
  }
}

struct Parsed {
  Request req;
  bool keep_alive = true;
  std::size_t content_length = 0;
  int error_status = 0;  // set: answer this and close
};

Parsed parse_head(std::string_view head) {
  Parsed p;
  const std::size_t eol = head.find("\r\n");
  const std::string_view line = head.substr(0, eol);
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) {
    p.error_status = 400;
    return p;
  }
  p.req.method = std::string(line.substr(0, sp1));
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    p.error_status = 400;
    return p;
  }
  p.keep_alive = version == "HTTP/1.1";
  if (const auto hash = target.find('#'); hash != std::string_view::npos) target = target.substr(0, hash);
  const std::size_t q = target.find('?');
  p.req.path = url_decode(target.substr(0, q), false);
  if (q != std::string_view::npos) {
    std::string_view query = target.substr(q + 1);
    while (!query.empty()) {
      const std::size_t amp = query.find('&');
      const std::string_view pair = query.substr(0, amp);
      if (!pair.empty()) {
        const std::size_t eq = pair.find('=');
        p.req.params.emplace(url_decode(pair.substr(0, eq), true),
                             eq == std::string_view::npos ? std::string() : url_decode(pair.substr(eq + 1), true));
      }
      if (amp == std::string_view::npos) break;
      query.remove_prefix(amp + 1);
    }
  }
  std::size_t pos = eol == std::string_view::npos ? head.size() : eol + 2;
  while (pos < head.size()) {
    std::size_t end = head.find("\r\n", pos);
    if (end == std::string_view::npos) end = head.size();
    const std::string_view h = head.substr(pos, end - pos);
    pos = end + 2;
    const std::size_t colon = h.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string name = lower(trim(h.substr(0, colon)));
    const std::string_view value = trim(h.substr(colon + 1));
    if (name == "connection") {
      const std::string v = lower(value);
      if (v.find("close") != std::string::npos) p.keep_alive = false;
      else if (v.find("keep-alive") != std::string::npos) p.keep_alive = true;
    } else if (name == "content-length") {
      std::size_t n = 0;
      for (const char c : value) {
        if (c < '0' || c > '9' || n > kMaxBodyBytes) {
          p.error_status = 413;
          return p;
        }
        n = n * 10 + static_cast<std::size_t>(c - '0');
      }
      if (n > kMaxBodyBytes) p.error_status = 413;
      p.content_length = n;
    } else if (name == "transfer-encoding") {
      p.error_status = 501;  // no client of ours sends chunked requests
    }
  }
  return p;
}

std::string response_head(const Response& res, std::size_t content_length, bool keep_alive, int keep_alive_s) {
  std::string h = "HTTP/1.1 " + std::to_string(res.status) + " " + reason_phrase(res.status) + "\r\n";
  h += "Content-Type: " + res.content_type + "\r\n";
  h += "Content-Length: " + std::to_string(content_length) + "\r\n";
  for (const auto& [name, value] : res.headers) h += name + ": " + value + "\r\n";
  if (keep_alive) h += "Connection: keep-alive\r\nKeep-Alive: timeout=" + std::to_string(keep_alive_s) + "\r\n";
  else h += "Connection: close\r\n";
  h += "\r\n";
  return h;
}

}  // namespace

struct HttpServer::Connection {
  int fd = -1;
  std::thread thread;
  bool finished = false;  // the thread is done and may be joined
};

HttpServer::HttpServer(AppView& app, Handler handler, ServerOptions options)
    : app_(app), handler_(std::move(handler)), options_(std::move(options)) {
  if (options_.threads < 1) throw std::invalid_argument("threads must be at least 1");
  if (options_.keep_alive_s < 1) throw std::invalid_argument("keep-alive timeout must be at least 1 s");
}

HttpServer::~HttpServer() {
  stop();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  for (int fd : wake_fd_)
    if (fd >= 0) ::close(fd);
}

int HttpServer::bind() {
  if (!is_loopback_host(options_.host))
    throw std::runtime_error("refusing to listen on " + options_.host + ": only 127.0.0.1, ::1 or localhost");
  const bool v6 = options_.host == "::1";
  const int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc;
  if (v6) {
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    a.sin6_port = htons(static_cast<std::uint16_t>(options_.port));
    rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(options_.port));
    rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  if (rc != 0 || ::listen(fd, 1024) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    throw std::runtime_error("cannot listen on " + options_.host + ":" + std::to_string(options_.port) + ": " + why);
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  if (::pipe2(wake_fd_, O_CLOEXEC) != 0) {
    ::close(fd);
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  }
  listen_fd_ = fd;
  return port_;
}

void HttpServer::reap_finished() {
  // Called with mu_ held.
  for (auto it = connections_.begin(); it != connections_.end();) {
    if ((*it)->finished) {
      (*it)->thread.join();
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

bool HttpServer::run() {
  if (listen_fd_ < 0) return false;
  for (;;) {
    {
      // Beyond `threads` connections, new ones wait in the listen backlog.
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_.load() || active_ < options_.threads; });
      reap_finished();
    }
    if (stopping_) break;
    struct pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_[0], POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("poll: {}", std::strerror(errno));
      break;
    }
    if (p[1].revents) break;
    if (!(p[0].revents & POLLIN)) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;  // EINTR, ECONNABORTED, EAGAIN: try again
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    app_.connection_opened();
    std::lock_guard<std::mutex> lock(mu_);
    auto c = std::make_unique<Connection>();
    c->fd = fd;
    Connection* raw = c.get();
    ++active_;
    connections_.push_back(std::move(c));
    raw->thread = std::thread([this, raw] { serve(raw); });
  }
  // Wake every connection thread (idle ones sit in poll) and wait for them.
  std::unique_lock<std::mutex> lock(mu_);
  for (auto& c : connections_)
    if (!c->finished) ::shutdown(c->fd, SHUT_RDWR);
  cv_.wait(lock, [&] { return active_ == 0; });
  reap_finished();
  return true;
}

void HttpServer::serve(Connection* c) {
  const int fd = c->fd;
  std::string in;
  char buf[16384];
  for (;;) {
    // Idle between requests for at most keep_alive_s; then the rest of the head must follow.
    std::size_t head_end;
    bool idle = true;
    for (;;) {
      head_end = in.find("\r\n\r\n");
      if (head_end != std::string::npos) break;
      if (in.size() > kMaxHeaderBytes) {
        head_end = std::string::npos;
        break;
      }
      if (stopping_ || !wait_readable(fd, idle && in.empty() ? options_.keep_alive_s * 1000 : kReadTimeoutMs)) {
        head_end = std::string::npos;
        in.clear();
        break;
      }
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        in.clear();
        head_end = std::string::npos;
        break;
      }
      idle = false;
      in.append(buf, static_cast<std::size_t>(n));
    }
    if (head_end == std::string::npos) {
      if (in.size() > kMaxHeaderBytes) {
        Response r = xrpc_error(431, "InvalidRequest", "Request header too large");
        const std::string h = response_head(r, r.body.size(), false, options_.keep_alive_s);
        send_all(fd, (h + r.body).data(), h.size() + r.body.size());
      }
      break;
    }
    Parsed parsed = parse_head(std::string_view(in).substr(0, head_end + 2));
    std::size_t consumed = head_end + 4;
    if (parsed.error_status == 0) {
      // Bodies are read and ignored: control POSTs carry their arguments in the query.
      while (in.size() < consumed + parsed.content_length) {
        if (!wait_readable(fd, kReadTimeoutMs)) break;
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        in.append(buf, static_cast<std::size_t>(n));
      }
      if (in.size() < consumed + parsed.content_length) break;
      consumed += parsed.content_length;
    }
    in.erase(0, consumed);

    Response res;
    const Request& req = parsed.req;
    const bool counted = parsed.error_status == 0 && req.path.rfind("/xrpc/", 0) == 0;
    if (parsed.error_status != 0) {
      res = xrpc_error(parsed.error_status, "InvalidRequest", "Malformed request");
      parsed.keep_alive = false;
    } else {
      if (counted) app_.request_began(req.path);
      try {
        res = handler_(req);
      } catch (const std::exception& e) {
        spdlog::error("{} failed: {}", req.path, e.what());
        res = xrpc_error(500, "InternalServerError", "Internal Server Error");
      }
    }
    if (options_.verbose)
      spdlog::info("{} {} -> {} ({} bytes){}", req.method, req.path, res.status, res.body.size(),
                   res.delivery == Response::Delivery::drop  ? " dropped"
                   : res.delivery == Response::Delivery::cut ? " cut"
                                                             : "");
    // Ended once handled, before the bytes go out: the client may read the answer and send its
    // next request before this thread runs again, and that is not two requests in flight.
    if (counted) app_.request_ended(res.delivery == Response::Delivery::drop ? 0 : res.status);
    if (res.delivery == Response::Delivery::drop) {
      ::shutdown(fd, SHUT_RDWR);
      break;
    }
    const bool keep = parsed.keep_alive && res.delivery == Response::Delivery::normal && !stopping_;
    std::string out = response_head(res, res.body.size(), keep, options_.keep_alive_s);
    const std::size_t body_bytes = res.delivery == Response::Delivery::cut ? res.body.size() / 2 : res.body.size();
    out.append(res.body, 0, body_bytes);
    const bool sent = send_all(fd, out.data(), out.size());
    if (!sent || !keep) {
      ::shutdown(fd, SHUT_RDWR);
      break;
    }
  }
  // Closed under the lock: run() shuts down the fds of unfinished connections, and a number
  // closed outside it could already belong to someone else.
  std::lock_guard<std::mutex> lock(mu_);
  ::close(fd);
  c->finished = true;
  --active_;
  cv_.notify_all();
}

int HttpServer::start() {
  const int port = bind();
  thread_ = std::thread([this] { run(); });
  return port;
}

void HttpServer::stop() {
  if (stopping_.exchange(true)) {
    if (thread_.joinable()) thread_.join();
    return;
  }
  if (wake_fd_[1] >= 0) {
    const char x = 'x';
    [[maybe_unused]] const ssize_t n = ::write(wake_fd_[1], &x, 1);
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace ds::fake
