// Tests for the Prometheus metrics file: escaping, value format, the exposition's grammar and
// grouping, what a run's file holds, the atomic write, and the last-success time's sources.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <catch2/catch.hpp>

#include "ds/metrics.hpp"
#include "ds/pg.hpp"
#include "migrate/migrate.hpp"
#include "migrate/scratch_db.hpp"

namespace m = ds::metrics;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// Checks the text exposition format (prometheus.io/docs/instrumenting/exposition_formats): every
// line is HELP, TYPE or a sample; a family's HELP and TYPE come before its samples, which are
// contiguous; no series twice. Returns the samples as "name{labels}" -> value text.
std::map<std::string, std::string> parse_exposition(const std::string& text) {
  static const std::regex help(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$)");
  static const std::regex type(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|untyped|histogram|summary)$)");
  static const std::regex sample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*\})? (-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?|NaN|[+-]Inf)$)");
  std::map<std::string, std::string> samples;
  std::set<std::string> finished;  // families whose samples are over
  std::string current;
  std::set<std::string> typed;
  REQUIRE(!text.empty());
  REQUIRE(text.back() == '\n');
  for (const auto& l : lines_of(text)) {
    INFO(l);
    std::smatch mt;
    if (std::regex_match(l, mt, help)) {
      CHECK(finished.count(mt[1]) == 0);
      if (!current.empty()) finished.insert(current);
      current = mt[1];
    } else if (std::regex_match(l, mt, type)) {
      CHECK(mt[1] == current);
      typed.insert(mt[1]);
    } else if (std::regex_match(l, mt, sample)) {
      CHECK(mt[1] == current);  // contiguous, after its HELP
      CHECK(typed.count(mt[1]) == 1);
      const std::string series = std::string(mt[1]) + std::string(mt[2]);
      CHECK(samples.count(series) == 0);
      samples[series] = mt[3];
    } else {
      FAIL("not a valid exposition line");
    }
  }
  return samples;
}

ds::EndRecord end(const char* stage, std::vector<std::pair<std::string, std::int64_t>> counters, double s) {
  ds::EndRecord e;
  e.stage = stage;
  e.counters = std::move(counters);
  e.elapsed_s = s;
  return e;
}

m::RunReport sample_report() {
  m::RunReport r;
  r.shard = "1/4";
  r.status = "partial";
  r.exit_code = 3;
  r.run_id = 17;
  r.duration_s = 12.5;
  r.end_time_s = 1764568800.25;
  r.ends = {end("ds-select-users", {{"users", 100}, {"backfill", 3}}, 0.5),
            end("ds-fetch-profiles", {{"users", 100}, {"ok", 97}, {"gone", 2}, {"failed", 1}, {"requests", 4},
                                      {"retries", 1}, {"http_429", 1}, {"bytes", 12345}}, 2.0),
            end("ds-fetch-feeds", {{"users", 100}, {"complete", 96}, {"capped", 1}, {"gone", 0}, {"failed", 0},
                                   {"posts", 555}, {"requests", 120}, {"retries", 3}, {"http_429", 0}, {"bytes", 99}}, 9.75),
            end("ds-aggregate", {{"users", 100}, {"snapshots", 96}, {"posts", 555}}, 1.0)};
  r.users_selected = 100;
  r.users_gone = 2;
  r.users_failed = 2;
  r.users_snapshotted = 96;
  r.posts_loaded = 555;
  r.api_requests = 124;
  r.api_retries = 4;
  r.load_counters = {{"users", 100}, {"posts", 555}};
  r.last_success_s = 1764482400;
  r.last_finished_s = 1764568800.25;
  return r;
}

std::string temp_dir() {
  char tmpl[] = "/tmp/ds-metrics-test.XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  return tmpl;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("metrics: label values, help text and values are escaped and formatted", "[metrics]") {
  CHECK(m::escape_label_value("plain") == "plain");
  CHECK(m::escape_label_value("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  CHECK(m::escape_help("x\\y\nz \"q\"") == "x\\\\y\\nz \"q\"");  // quotes stay in HELP
  CHECK(m::format_value(0) == "0");
  CHECK(m::format_value(-3) == "-3");
  CHECK(m::format_value(1764568800) == "1764568800");
  CHECK(m::format_value(1764568800.25) == "1764568800.25");
  CHECK(m::format_value(0.5) == "0.5");
  CHECK(m::format_value(1e20) == "1e+20");
  CHECK(m::format_value(std::numeric_limits<double>::quiet_NaN()) == "NaN");
  CHECK(m::format_value(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(m::format_value(-std::numeric_limits<double>::infinity()) == "-Inf");
}

TEST_CASE("metrics: an exposition groups each family under its HELP and TYPE", "[metrics]") {
  m::Exposition x;
  x.family("b_metric", "second\nline", "counter");
  x.family("a_metric", "first");
  x.family("unused", "never sampled");
  x.sample("a_metric", {{"k", "v\"1"}}, 1);
  x.sample("b_metric", {}, 2);
  x.sample("a_metric", {{"k", "v2"}, {"z", ""}}, 3.5);
  x.family("a_metric", "declared again: ignored");
  CHECK(x.text() ==
        "# HELP b_metric second\\nline\n# TYPE b_metric counter\nb_metric 2\n"
        "# HELP a_metric first\n# TYPE a_metric gauge\na_metric{k=\"v\\\"1\"} 1\na_metric{k=\"v2\",z=\"\"} 3.5\n");
  CHECK_THROWS_AS(x.sample("nope", {}, 1), std::logic_error);
  parse_exposition(x.text());
}

TEST_CASE("metrics: a run's file holds every stage's end counters and the run's figures", "[metrics]") {
  const auto r = sample_report();
  const auto s = parse_exposition(m::render(r));
  auto get = [&](const std::string& series) {
    INFO(series);
    REQUIRE(s.count(series) == 1);
    return s.at(series);
  };
  const std::string feeds = "{stage=\"ds-fetch-feeds\",shard=\"1/4\"}";
  CHECK(get("dopplersky_stage_users_selected{stage=\"ds-select-users\",shard=\"1/4\"}") == "100");
  CHECK(get("dopplersky_stage_users_processed" + feeds) == "100");
  CHECK(get("dopplersky_stage_users_capped" + feeds) == "1");
  CHECK(get("dopplersky_stage_posts" + feeds) == "555");
  CHECK(get("dopplersky_stage_requests" + feeds) == "120");
  CHECK(get("dopplersky_stage_retries" + feeds) == "3");
  CHECK(get("dopplersky_stage_http_429_responses{stage=\"ds-fetch-profiles\",shard=\"1/4\"}") == "1");
  CHECK(get("dopplersky_stage_bytes{stage=\"ds-fetch-profiles\",shard=\"1/4\"}") == "12345");
  CHECK(get("dopplersky_stage_users_gone{stage=\"ds-fetch-profiles\",shard=\"1/4\"}") == "2");
  CHECK(get("dopplersky_stage_users_failed{stage=\"ds-fetch-profiles\",shard=\"1/4\"}") == "1");
  CHECK(get("dopplersky_stage_duration_seconds" + feeds) == "9.75");
  CHECK(get("dopplersky_stage_duration_seconds{stage=\"ds-load\",shard=\"1/4\"}") == "12.5");
  CHECK(get("dopplersky_stage_posts{stage=\"ds-load\",shard=\"1/4\"}") == "555");
  CHECK(get("dopplersky_stage_counter{stage=\"ds-select-users\",shard=\"1/4\",counter=\"backfill\"}") == "3");
  CHECK(get("dopplersky_stage_counter{stage=\"ds-fetch-profiles\",shard=\"1/4\",counter=\"ok\"}") == "97");
  // A counter a stage does not report is absent, not a made-up 0.
  CHECK(s.count("dopplersky_stage_requests{stage=\"ds-aggregate\",shard=\"1/4\"}") == 0);
  CHECK(s.count("dopplersky_stage_users_selected" + feeds) == 0);
  for (const char* st : {"ds-select-users", "ds-fetch-profiles", "ds-fetch-feeds", "ds-aggregate", "ds-load"})
    CHECK(get(std::string("dopplersky_stage_finished{stage=\"") + st + "\",shard=\"1/4\"}") == "1");

  CHECK(get("dopplersky_run_status{shard=\"1/4\",status=\"partial\"}") == "1");
  CHECK(get("dopplersky_run_status{shard=\"1/4\",status=\"completed\"}") == "0");
  CHECK(get("dopplersky_run_status{shard=\"1/4\",status=\"failed\"}") == "0");
  CHECK(get("dopplersky_run_exit_code{shard=\"1/4\"}") == "3");
  CHECK(get("dopplersky_run_id{shard=\"1/4\"}") == "17");
  CHECK(get("dopplersky_run_duration_seconds{shard=\"1/4\"}") == "12.5");
  CHECK(get("dopplersky_run_end_timestamp_seconds{shard=\"1/4\"}") == "1764568800.25");
  CHECK(get("dopplersky_run_users_selected{shard=\"1/4\"}") == "100");
  CHECK(get("dopplersky_run_users_snapshotted{shard=\"1/4\"}") == "96");
  CHECK(get("dopplersky_run_users_failed{shard=\"1/4\"}") == "2");
  CHECK(get("dopplersky_run_users_gone{shard=\"1/4\"}") == "2");
  CHECK(get("dopplersky_run_posts_loaded{shard=\"1/4\"}") == "555");
  CHECK(get("dopplersky_run_api_requests{shard=\"1/4\"}") == "124");
  CHECK(get("dopplersky_run_api_retries{shard=\"1/4\"}") == "4");
  CHECK(get("dopplersky_last_success_timestamp_seconds{shard=\"1/4\"}") == "1764482400");
  CHECK(get("dopplersky_last_finished_timestamp_seconds{shard=\"1/4\"}") == "1764568800.25");
}

TEST_CASE("metrics: a failed run's file shows the missing stages and keeps a usable shape", "[metrics]") {
  auto r = sample_report();
  r.shard.reset();
  r.status = "failed";
  r.exit_code = 1;
  r.ends.resize(2);  // ds-fetch-feeds died
  r.ends.push_back(end("ds-select-users", {{"users", 5}}, 0.75));  // a second shard's stream in it
  r.last_success_s.reset();
  r.last_finished_s.reset();
  const std::string text = m::render(r);
  const auto s = parse_exposition(text);
  CHECK(s.at("dopplersky_stage_finished{stage=\"ds-fetch-feeds\",shard=\"\"}") == "0");
  CHECK(s.at("dopplersky_stage_finished{stage=\"ds-aggregate\",shard=\"\"}") == "0");
  CHECK(s.at("dopplersky_stage_finished{stage=\"ds-fetch-profiles\",shard=\"\"}") == "1");
  CHECK(s.at("dopplersky_stage_finished{stage=\"ds-load\",shard=\"\"}") == "0");
  CHECK(s.at("dopplersky_stage_users_selected{stage=\"ds-select-users\",shard=\"\"}") == "105");  // summed
  CHECK(s.at("dopplersky_stage_duration_seconds{stage=\"ds-select-users\",shard=\"\"}") == "0.75");  // slowest
  CHECK(s.at("dopplersky_run_status{shard=\"\",status=\"failed\"}") == "1");
  CHECK(s.count("dopplersky_stage_posts{stage=\"ds-fetch-feeds\",shard=\"\"}") == 0);
  // Unknown last success: no sample, and no HELP line without samples either.
  CHECK(text.find("dopplersky_last_success_timestamp_seconds") == std::string::npos);
}

TEST_CASE("metrics: the file is replaced atomically and read back", "[metrics]") {
  const std::string dir = temp_dir();
  const std::string path = dir + "/dopplersky.prom";
  m::write_file_atomic(path, "# HELP x y\n# TYPE x gauge\nx{a=\"b\"} 1\n");
  m::write_file_atomic(path, "# HELP x y\n# TYPE x gauge\nx{a=\"b\"} 2.5\nx_total 7\n");
  CHECK(read_all(path) == "# HELP x y\n# TYPE x gauge\nx{a=\"b\"} 2.5\nx_total 7\n");
  struct stat st {};
  REQUIRE(stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0644);  // node_exporter runs as another user
  // Nothing but the file itself is left in the directory.
  std::FILE* ls = popen(("ls -A " + dir).c_str(), "r");
  char buf[256] = {};
  const auto n = std::fread(buf, 1, sizeof buf - 1, ls);
  pclose(ls);
  CHECK(std::string(buf, n) == "dopplersky.prom\n");

  CHECK(m::read_sample(path, "x") == 2.5);
  CHECK(m::read_sample(path, "x_total") == 7);
  CHECK_FALSE(m::read_sample(path, "x_tot"));
  CHECK_FALSE(m::read_sample(dir + "/missing.prom", "x"));

  CHECK_THROWS_AS(m::write_file_atomic(dir + "/no/such/dir.prom", "x 1\n"), std::system_error);
  std::remove(path.c_str());
  rmdir(dir.c_str());
}

TEST_CASE("metrics: without a database the last success comes from the previous file", "[metrics]") {
  const std::string dir = temp_dir();
  const std::string path = dir + "/dopplersky.prom";
  auto r = sample_report();
  m::write_file_atomic(path, m::render(r));  // yesterday's file: last success 1764482400
  r.status = "failed";
  r.last_success_s.reset();
  r.last_finished_s.reset();
  ds::DbParams unreachable;  // a closed port: the connection fails at once
  unreachable.keywords = {{"host", "127.0.0.1"}, {"port", "1"}, {"dbname", "x"}, {"connect_timeout", "2"}};
  REQUIRE(m::write_run_metrics(path, r, unreachable));
  const auto s = parse_exposition(read_all(path));
  CHECK(s.at("dopplersky_last_success_timestamp_seconds{shard=\"1/4\"}") == "1764482400");
  CHECK(s.at("dopplersky_run_status{shard=\"1/4\",status=\"failed\"}") == "1");
  CHECK_FALSE(m::write_run_metrics(dir + "/no/such/dir.prom", r, unreachable));
  std::remove(path.c_str());
  rmdir(dir.c_str());
}

TEST_CASE("metrics: the last success per shard comes from snapshot_logs", "[db][metrics]") {
  const auto url = ds::testing::test_database_url();
  if (!url) FAIL("DS_TEST_DATABASE_URL is not set: run [db] tests under tests/scripts/with-pg.sh");
  ds::testing::ScratchDatabase db(*url, "ds_test_metrics_last_runs");
  ds::PgConnection c(db.params());
  ds::migrate::apply(c, ds::migrate::embedded_migrations());
  c.exec(R"SQL(
    INSERT INTO snapshot_logs (status, time_started, time_completed, shard) VALUES
      ('completed', '2026-11-01T06:00Z', '2026-11-01T07:00Z', NULL),
      ('partial',   '2026-11-02T06:00Z', '2026-11-02T07:00Z', NULL),
      ('failed',    '2026-11-03T06:00Z', '2026-11-03T07:00Z', NULL),
      ('completed', '2026-11-02T06:00Z', '2026-11-02T06:30Z', '0/2'),
      ('failed',    '2026-11-03T06:00Z', '2026-11-03T06:10Z', '0/2'),
      ('in_progress', '2026-11-04T06:00Z', NULL, '1/2');
  )SQL");
  const double nov1_7h = 1793516400, nov2_7h = nov1_7h + 86400, nov2_630 = nov2_7h - 1800;
  auto [success, finished] = m::query_last_runs(c, std::nullopt);
  CHECK(success == nov1_7h);   // the partial and failed runs after it do not count
  CHECK(finished == nov2_7h);  // the partial one does here
  std::tie(success, finished) = m::query_last_runs(c, std::string("0/2"));
  CHECK(success == nov2_630);
  CHECK(finished == nov2_630);
  std::tie(success, finished) = m::query_last_runs(c, std::string("1/2"));
  CHECK_FALSE(success);
  CHECK_FALSE(finished);

  const std::string dir = temp_dir();
  const std::string path = dir + "/dopplersky.prom";
  auto r = sample_report();
  r.shard = "0/2";
  r.last_success_s.reset();
  REQUIRE(m::write_run_metrics(path, r, db.params()));
  const auto s = parse_exposition(read_all(path));
  CHECK(s.at("dopplersky_last_success_timestamp_seconds{shard=\"0/2\"}") == m::format_value(nov2_630));
  std::remove(path.c_str());
  rmdir(dir.c_str());
}
