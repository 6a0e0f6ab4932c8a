// ds-fake-appview: serves the generated dataset (or files) as a Bluesky AppView on loopback for tests,
// demos and benchmarks, misbehaving on request; `seed-sql` / `user-records` print its accounts.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <unistd.h>

#include "ds/exit_codes.hpp"
#include "ds/records.hpp"
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
  ds::fake::FaultOptions faults;
  int latency_ms = 0;
  std::string port_file, serve_dir;

  CLI::App app{"Fake Bluesky AppView (getProfiles, getAuthorFeed, getPosts) over a generated, deterministic dataset, or over\n"
               "files (--serve-files), misbehaving on request (--p-*, --enforce-rate-limit).\n"
               "Listens on loopback only. See tools/fake-appview/README.md for endpoints, flags and /_fake/stats."};
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
  app.add_flag("--economy-cases", params.economy_cases,
               "Accounts 23..27 play the request-economy scenarios (+1 -1 days, quiet accounts, a deletion; "
               "see dataset.hpp)");
  const std::map<std::string, ds::fake::Activity> activities{{"normal", ds::fake::Activity::normal},
                                                             {"sparse", ds::fake::Activity::sparse}};
  app.add_option("--activity", params.activity,
                 "How ordinary accounts post: normal (the tests' busy world) or sparse (most under once a day, "
                 "a few dozens a day, 3 in 1000 with 120,000+ posts; bench/requests)")
      ->transform(CLI::CheckedTransformer(activities, CLI::ignore_case))->default_str("normal");
  app.add_option("--latency-ms", latency_ms, "Fixed delay added to every /xrpc/ request")->capture_default_str()
      ->check(CLI::Range(0, 600'000));
  app.add_option("--threads", server.threads, "Connections served at once (a thread each); more wait in the backlog")->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--keep-alive-s", server.keep_alive_s, "Idle keep-alive timeout in seconds")->capture_default_str()
      ->check(CLI::Range(1, 3600));
  app.add_option("--rate-limit", rate.limit, "RateLimit-Limit: requests per window (advertised; enforced with "
                                             "--enforce-rate-limit)")->capture_default_str()
      ->check(CLI::Range(1, 1'000'000'000));
  app.add_option("--rate-window-s", rate.window_s, "Rate-limit window in seconds (RateLimit-Policy w=)")->capture_default_str()
      ->check(CLI::Range(1, 86400));
  app.add_flag("--enforce-rate-limit", rate.enforce,
               "Answer requests over the limit with 429 RateLimitExceeded, Remaining 0, Reset and Retry-After");
  app.add_option("--serve-files", serve_dir,
                 "Serve getProfiles/getAuthorFeed/getPosts from files in this directory instead of the dataset (see README)")
      ->check(CLI::ExistingDirectory);
  // Faults: probabilities per /xrpc/ request, deterministic per --fault-seed (see README).
  const auto prob = CLI::Range(0.0, 1.0);
  app.add_option("--fault-seed", faults.seed, "Seed of the fault draws")->capture_default_str();
  app.add_option("--p-429", faults.p_429, "Probability of a 429 with RateLimit headers and Retry-After")
      ->capture_default_str()->check(prob);
  app.add_option("--p-5xx", faults.p_5xx, "Probability of a 500, 502 (HTML body) or 503")->capture_default_str()->check(prob);
  app.add_option("--p-truncated", faults.p_truncated,
                 "Probability of a 200 whose body is cut in half (Content-Length matches: bad JSON, good HTTP)")
      ->capture_default_str()->check(prob);
  app.add_option("--p-cut", faults.p_cut, "Probability that the connection closes halfway through the body")
      ->capture_default_str()->check(prob);
  app.add_option("--p-drop", faults.p_drop, "Probability that the connection closes without any response")
      ->capture_default_str()->check(prob);
  app.add_option("--p-slow", faults.p_slow, "Probability that the answer comes --slow-ms late")->capture_default_str()->check(prob);
  app.add_option("--slow-ms", faults.slow_ms, "Delay of a slow answer")->capture_default_str()->check(CLI::Range(0, 600'000));
  app.add_option("--retry-after-s", faults.retry_after_s, "Injected 429s: Retry-After and RateLimit-Reset this far ahead")
      ->capture_default_str()->check(CLI::Range(0, 3600));
  app.add_flag("-v,--verbose", server.verbose, "Log every request");
  auto* seed_sql = app.add_subcommand("seed-sql", "Print SQL registering the dataset's accounts and the views rows "
                                                  "that make the active ones active on --day, then exit");
  int window_days = 7;
  auto* user_records = app.add_subcommand(
      "user-records", "Print the `user` records ds-select-users --all would emit for the dataset on --day (every "
                      "registered account without skip_user), then its end record, and exit: input for the fetch "
                      "stages without a database (benchmarks, tests)");
  user_records->add_option("--window-days", window_days, "`since` = the day's clock minus this; 0 = null (backfill)")
      ->capture_default_str()->check(CLI::Range(0, 3650));

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
    if (*user_records) {
      const ds::fake::Dataset dataset(params);
      const ds::Micros now = dataset.now_of_day(day);
      std::string out;
      std::int64_t n = 0;
      for (int u = 0; u < dataset.registered_count(); ++u) {
        const ds::fake::User& user = dataset.users()[static_cast<std::size_t>(u)];
        if (user.skip_user) continue;  // as the selection: never asked about
        ds::UserRecord r;
        r.did = user.did;
        r.handle = user.handle;
        r.as_of = now;
        if (window_days > 0) r.since = now - window_days * ds::micros_per_day;
        ds::encode(out, r);
        ++n;
      }
      ds::EndRecord end;
      end.stage = "ds-select-users";
      end.set("users", n);
      ds::encode(out, end);
      std::cout << out;
      std::cout.flush();
      return std::cout ? ds::exit_code::ok : ds::exit_code::runtime;
    }
    if (!ds::fake::is_loopback_host(server.host)) {
      spdlog::error("refusing to listen on {}: only 127.0.0.1, ::1 or localhost", server.host);
      return ds::exit_code::usage;
    }
    if (faults.p_429 + faults.p_5xx + faults.p_truncated + faults.p_cut + faults.p_drop > 1.0) {
      spdlog::error("--p-429, --p-5xx, --p-truncated, --p-cut and --p-drop exclude each other and must add up to at most 1");
      return ds::exit_code::usage;
    }
    ds::fake::AppView appview(params, day, rate);
    if (!serve_dir.empty()) appview.serve_files(serve_dir);
    ds::fake::Handler handler = [&appview](const ds::fake::Request& r) { return appview.handle(r); };
    // Faults inside the latency: a broken answer takes as long to arrive as a good one.
    handler = ds::fake::with_faults(std::move(handler), faults, appview);
    handler = ds::fake::with_latency(std::move(handler), std::chrono::milliseconds(latency_ms));
    ds::fake::HttpServer http(appview, handler, server);
    const int port = http.bind();
    if (!port_file.empty()) write_port_file(port_file, port);
    spdlog::info("listening on {}:{} day={} seed={} users={} posts_scale={}{}{} threads={} latency_ms={}{}{}", server.host,
                 port, day, params.seed, params.users, params.posts_scale, params.economy_cases ? " economy_cases" : "",
                 params.activity == ds::fake::Activity::sparse ? " activity=sparse" : "",
                 server.threads, latency_ms,
                 rate.enforce ? fmt::format(" enforcing {} requests per {} s", rate.limit, rate.window_s) : "",
                 serve_dir.empty() ? "" : " serving files from " + serve_dir);
    if (faults.any())
      spdlog::info("faults (seed {}): 429 {} 5xx {} truncated {} cut {} drop {} slow {} ({} ms)", faults.seed, faults.p_429,
                   faults.p_5xx, faults.p_truncated, faults.p_cut, faults.p_drop, faults.p_slow, faults.slow_ms);
    return http.run() ? ds::exit_code::ok : ds::exit_code::runtime;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return ds::exit_code::runtime;
  }
}
