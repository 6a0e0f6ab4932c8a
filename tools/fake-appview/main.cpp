// ds-fake-appview: serves the generated dataset as a Bluesky AppView on loopback for tests, demos
// and benchmarks; `ds-fake-appview seed-sql` prints the SQL that registers its accounts.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <unistd.h>

#include "ds/exit_codes.hpp"
#include "server.hpp"

namespace {

// Readers poll for the file, so it must never be seen half written.
void write_port_file(const std::string& path, int port) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << port << '\n';
    f.flush();
    if (!f) throw std::runtime_error("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error("cannot rename " + tmp + " to " + path);
  }
}

}  // namespace

int main(int argc, char** argv) {
  ds::fake::DatasetParams params;
  ds::fake::ServerOptions server;
  ds::fake::RateLimitOptions rate;
  int day = 1;
  int latency_ms = 0;
  std::string port_file;

  CLI::App app{"Fake Bluesky AppView (getProfiles, getAuthorFeed) over a generated, deterministic dataset.\n"
               "Listens on loopback only. See tools/fake-appview/server.hpp for the endpoints."};
  app.fallthrough();  // lets `seed-sql --day 2 --seed 7` use the options below
  app.add_option("--host", server.host, "Listen address: 127.0.0.1, ::1 or localhost")->capture_default_str();
  app.add_option("--port", server.port, "TCP port; 0 picks a free one")->capture_default_str();
  app.add_option("--port-file", port_file, "Write the bound port and a newline here (atomically) once listening");
  app.add_option("--day", day, "Dataset day to serve (0 = history only)")->capture_default_str()
      ->check(CLI::Range(0, ds::fake::Dataset::kMaxDay));
  app.add_option("--seed", params.seed, "Dataset seed")->capture_default_str();
  app.add_option("--users", params.users, "Registered accounts in the dataset")->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  app.add_option("--posts-scale", params.posts_scale, "Multiplies every account's post count")->capture_default_str()
      ->check(CLI::Range(0.001, 1000.0));
  app.add_option("--latency-ms", latency_ms, "Fixed delay added to every /xrpc/ request")->capture_default_str()
      ->check(CLI::Range(0, 600'000));
  app.add_option("--threads", server.threads, "Worker threads (connections served at once)")->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--keep-alive-s", server.keep_alive_s, "Idle keep-alive timeout in seconds")->capture_default_str()
      ->check(CLI::Range(1, 3600));
  app.add_option("--rate-limit", rate.limit, "Advertised RateLimit-Limit (never enforced)")->capture_default_str()
      ->check(CLI::Range(1, 1'000'000'000));
  app.add_option("--rate-window-s", rate.window_s, "Advertised rate-limit window")->capture_default_str()
      ->check(CLI::Range(1, 86400));
  app.add_flag("-v,--verbose", server.verbose, "Log every request");
  auto* seed_sql = app.add_subcommand("seed-sql", "Print SQL registering the dataset's accounts and the views rows "
                                                  "that make the active ones active on --day, then exit");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? ds::exit_code::ok : ds::exit_code::usage;
  }

  auto logger = spdlog::stderr_color_mt("ds-fake-appview");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %n %l: %v", spdlog::pattern_time_type::utc);
  if (server.verbose) spdlog::set_level(spdlog::level::debug);

  try {
    if (*seed_sql) {
      const ds::fake::Dataset dataset(params);
      std::cout << dataset.seed_sql(day);
      std::cout.flush();
      return std::cout ? ds::exit_code::ok : ds::exit_code::runtime;
    }
    if (!ds::fake::is_loopback_host(server.host)) {
      spdlog::error("refusing to listen on {}: only 127.0.0.1, ::1 or localhost", server.host);
      return ds::exit_code::usage;
    }
    ds::fake::AppView appview(params, day, rate);
    ds::fake::Handler handler = [&appview](const ds::fake::Request& r) { return appview.handle(r); };
    handler = ds::fake::with_latency(std::move(handler), std::chrono::milliseconds(latency_ms));
    ds::fake::HttpServer http(appview, handler, server);
    const int port = http.bind();
    if (!port_file.empty()) write_port_file(port_file, port);
    spdlog::info("listening on {}:{} day={} seed={} users={} posts_scale={} threads={} latency_ms={}", server.host,
                 port, day, params.seed, params.users, params.posts_scale, server.threads, latency_ms);
    return http.run() ? ds::exit_code::ok : ds::exit_code::runtime;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return ds::exit_code::runtime;
  }
}
