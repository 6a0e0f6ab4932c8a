// What the fake AppView's HTTP tests share: the AppView served on a free loopback port (plain, or
// with a rate limit, faults and served files), request helpers and checks of error answers.
#pragma once
#include <stdlib.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <memory>
#include <string>

#include <catch2/catch.hpp>
#include <httplib.h>
#include <simdjson.h>

#include "server.hpp"

namespace fake_test {

// An AppView served on a free loopback port for one test. Clients must go out of scope first:
// the server waits for open keep-alive connections when it stops.
struct Served {
  explicit Served(int day = 1, std::chrono::milliseconds latency = std::chrono::milliseconds(0),
                  const ds::fake::DatasetParams& params = {})
      : app(params, day) {
    ds::fake::ServerOptions options;
    options.keep_alive_s = 2;
    options.threads = 8;
    ds::fake::Handler handler = [this](const ds::fake::Request& r) { return app.handle(r); };
    http = std::make_unique<ds::fake::HttpServer>(app, ds::fake::with_latency(handler, latency), options);
    port = http->start();
  }
  ~Served() { http->stop(); }
  const ds::fake::Dataset& data() const { return app.dataset(); }

  ds::fake::AppView app;
  std::unique_ptr<ds::fake::HttpServer> http;
  int port = 0;
};

inline httplib::Result get(httplib::Client& cli, const std::string& path, const httplib::Params& params) {
  auto res = cli.Get(path, params, httplib::Headers{});
  REQUIRE(res);
  return res;
}

inline void expect_invalid(const httplib::Result& res, const std::string& message_part) {
  REQUIRE(res->status == 400);
  simdjson::dom::parser parser;
  simdjson::dom::element doc = parser.parse(res->body);
  CHECK(std::string_view(doc["error"]) == "InvalidRequest");
  CHECK(std::string(std::string_view(doc["message"])).find(message_part) != std::string::npos);
}

inline int first_user_where(const ds::fake::Dataset& ds, const std::function<bool(const ds::fake::User&)>& pred) {
  for (const auto& u : ds.users())
    if (pred(u)) return u.index;
  FAIL("no account matches");
  return -1;
}

// An AppView with a given rate limit, fault layer and optional served files, on a free port.
struct Misbehaving {
  Misbehaving(ds::fake::RateLimitOptions rate, ds::fake::FaultOptions faults, const std::string& files = "")
      : app(ds::fake::DatasetParams{}, 1, rate) {
    if (!files.empty()) app.serve_files(files);
    ds::fake::ServerOptions options;
    options.keep_alive_s = 2;
    ds::fake::Handler handler = [this](const ds::fake::Request& r) { return app.handle(r); };
    http = std::make_unique<ds::fake::HttpServer>(app, ds::fake::with_faults(handler, faults, app), options);
    port = http->start();
  }
  ~Misbehaving() { http->stop(); }
  ds::fake::AppView app;
  std::unique_ptr<ds::fake::HttpServer> http;
  int port = 0;
};

// What a client saw: the status, or -1 when no complete response arrived.
struct Seen {
  int status = -1;
  bool json_ok = false;
  bool operator==(const Seen&) const = default;
};

inline Seen fetch(httplib::Client& cli, const std::string& path, const httplib::Params& params) {
  auto res = cli.Get(path, params, httplib::Headers{});
  Seen s;
  if (!res) return s;
  s.status = res->status;
  simdjson::dom::parser parser;
  s.json_ok = !parser.parse(res->body).error();
  return s;
}

inline std::string make_temp_dir() {
  char tmpl[] = "/tmp/ds-fake-files-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  return tmpl;
}

inline void write_text(const std::string& path, const std::string& content) {
  std::ofstream f(path, std::ios::binary);
  f << content;
  REQUIRE(f.good());
}

}  // namespace fake_test
