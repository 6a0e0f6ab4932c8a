// Rendering and writing the run's Prometheus metrics file (see metrics.hpp). Every value is a
// gauge of the last run: the file is replaced at each run, so counter semantics would be wrong.
#include "ds/metrics.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <ctime>
#include <fstream>
#include <map>
#include <system_error>

#include <spdlog/spdlog.h>

#include "ds/clock.hpp"
#include "ds/pg.hpp"

namespace ds::metrics {

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  for (const char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Counts and ids are exact integers: print them without exponent or fraction.
  if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0)
    return std::to_string(static_cast<long long>(v));
  return fmt::format("{}", v);
}

Exposition::Family* Exposition::find(const std::string& name) {
  for (auto& f : families_)
    if (f.name == name) return &f;
  return nullptr;
}

void Exposition::family(const std::string& name, std::string_view help, std::string_view type) {
  if (find(name)) return;
  families_.push_back(Family{name, std::string(help), std::string(type), {}});
}

void Exposition::sample(const std::string& name, const Labels& labels, double value) {
  Family* f = find(name);
  if (!f) throw std::logic_error("metrics: sample of undeclared family " + name);
  std::string line = name;
  if (!labels.empty()) {
    line += '{';
    for (std::size_t i = 0; i < labels.size(); ++i) {
      if (i) line += ',';
      line += labels[i].first + "=\"" + escape_label_value(labels[i].second) + '"';
    }
    line += '}';
  }
  line += ' ' + format_value(value);
  f->samples.push_back(std::move(line));
}

std::string Exposition::text() const {
  std::string out;
  for (const auto& f : families_) {
    if (f.samples.empty()) continue;
    out += "# HELP " + f.name + ' ' + escape_help(f.help) + '\n';
    out += "# TYPE " + f.name + ' ' + f.type + '\n';
    for (const auto& s : f.samples) out += s + '\n';
  }
  return out;
}

void write_file_atomic(const std::string& path, std::string_view text) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "cannot create " + tmp);
  auto fail = [&](const char* what) {
    const int e = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    throw std::system_error(e, std::generic_category(), std::string(what) + " " + tmp);
  };
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot write");
    }
    done += static_cast<std::size_t>(n);
  }
  // Readable by the node_exporter user whatever our umask; fsync so a crash leaves old or new.
  if (::fchmod(fd, 0644) != 0) fail("cannot chmod");
  if (::fsync(fd) != 0) fail("cannot fsync");
  if (::close(fd) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw std::system_error(e, std::generic_category(), "cannot close " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw std::system_error(e, std::generic_category(), "cannot rename " + tmp + " to " + path);
  }
}

std::optional<double> read_sample(const std::string& path, std::string_view name) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.compare(0, name.size(), name) != 0) continue;
    if (line.size() == name.size() || (line[name.size()] != '{' && line[name.size()] != ' ')) continue;
    const auto sp = line.rfind(' ');
    try {
      std::size_t used = 0;
      const double v = std::stod(line.substr(sp + 1), &used);
      if (used == line.size() - sp - 1) return v;
    } catch (const std::exception&) {
    }
    return std::nullopt;
  }
  return std::nullopt;
}

namespace {

// One stage's end records summed (a stream concatenated from shards carries one per shard).
struct StageFigures {
  std::string stage;
  std::vector<std::pair<std::string, std::int64_t>> counters;  // in first-seen order
  double elapsed_s = 0;
  bool has(std::string_view name) const {
    for (const auto& [k, v] : counters)
      if (k == name) return true;
    return false;
  }
  std::int64_t get(std::string_view name) const {
    for (const auto& [k, v] : counters)
      if (k == name) return v;
    return 0;
  }
};

std::vector<StageFigures> stage_figures(const RunReport& r) {
  std::vector<StageFigures> out;
  for (const auto& e : r.ends) {
    StageFigures* s = nullptr;
    for (auto& x : out)
      if (x.stage == e.stage) s = &x;
    if (!s) {
      out.push_back(StageFigures{e.stage, {}, 0});
      s = &out.back();
    }
    for (const auto& [k, v] : e.counters) {
      bool found = false;
      for (auto& [k2, v2] : s->counters)
        if (k2 == k) {
          v2 += v;
          found = true;
        }
      if (!found) s->counters.emplace_back(k, v);
    }
    // Shards run side by side: the stage took as long as its slowest part.
    s->elapsed_s = std::max(s->elapsed_s, e.elapsed_s);
  }
  StageFigures load{"ds-load", r.load_counters, r.duration_s};
  out.push_back(std::move(load));
  return out;
}

// The per-stage metrics with a name of their own: metric, the end-record counter it shows, help.
struct NamedCounter {
  const char* metric;
  const char* counter;
  const char* help;
};
constexpr NamedCounter named_counters[] = {
    {"dopplersky_stage_users_processed", "users", "Users the stage handled in the last run (counter `users` of its end record)."},
    {"dopplersky_stage_users_gone", "gone", "Users the API no longer has (deleted, deactivated, suspended) in the last run."},
    {"dopplersky_stage_users_failed", "failed", "Users the stage could not refresh after retries in the last run."},
    {"dopplersky_stage_users_capped", "capped", "Users whose feed hit the safety cap (no snapshot) in the last run."},
    {"dopplersky_stage_posts", "posts", "Posts the stage emitted or read in the last run."},
    {"dopplersky_stage_requests", "requests", "HTTP requests the stage sent in the last run, retries included."},
    {"dopplersky_stage_retries", "retries", "HTTP requests the stage retried in the last run."},
    {"dopplersky_stage_http_429_responses", "http_429", "HTTP 429 (rate limited) responses the stage got in the last run."},
    {"dopplersky_stage_bytes", "bytes", "Response body bytes the stage received in the last run (before decompression)."},
};

}  // namespace

std::string render(const RunReport& r) {
  Exposition x;
  const std::string shard = r.shard.value_or("");
  const auto stages = stage_figures(r);

  x.family("dopplersky_stage_users_selected", "Users ds-select-users selected for the last run.");
  for (const auto& nc : named_counters) x.family(nc.metric, nc.help);
  x.family("dopplersky_stage_duration_seconds", "Wall time of the stage in the last run (elapsed_s of its end record).");
  x.family("dopplersky_stage_finished", "1 when the stage's end record reached ds-load in the last run (it finished cleanly), else 0.");
  x.family("dopplersky_stage_counter", "Every counter of the stage's end record in the last run, by name (docs/records.md).");

  for (const auto& s : stages) {
    const Labels l{{"stage", s.stage}, {"shard", shard}};
    if (s.stage == "ds-select-users" && s.has("users"))
      x.sample("dopplersky_stage_users_selected", l, static_cast<double>(s.get("users")));
    for (const auto& nc : named_counters)
      if (s.has(nc.counter)) x.sample(nc.metric, l, static_cast<double>(s.get(nc.counter)));
    x.sample("dopplersky_stage_duration_seconds", l, s.elapsed_s);
  }
  // Every upstream stage appears, finished or not, so a missing one is a 0 and not an absence.
  for (const char* stage : {"ds-select-users", "ds-fetch-profiles", "ds-fetch-feeds", "ds-aggregate"}) {
    bool seen = false;
    for (const auto& s : stages) seen = seen || s.stage == stage;
    x.sample("dopplersky_stage_finished", {{"stage", stage}, {"shard", shard}}, seen ? 1 : 0);
  }
  x.sample("dopplersky_stage_finished", {{"stage", "ds-load"}, {"shard", shard}},
           r.status == "completed" || r.status == "partial" ? 1 : 0);
  for (const auto& s : stages)
    for (const auto& [k, v] : s.counters)
      x.sample("dopplersky_stage_counter", {{"stage", s.stage}, {"shard", shard}, {"counter", k}},
               static_cast<double>(v));

  const Labels l{{"shard", shard}};
  x.family("dopplersky_run_status", "1 for the last run's status (completed, partial, failed, locked), 0 for the others.");
  for (const char* st : {"completed", "partial", "failed", "locked"})
    x.sample("dopplersky_run_status", {{"shard", shard}, {"status", st}}, r.status == st ? 1 : 0);
  // A run-level gauge: its HELP line and its one sample for this shard.
  const auto gauge = [&x, &l](const char* name, const char* help, double value) {
    x.family(name, help);
    x.sample(name, l, value);
  };
  const auto count = [](std::int64_t v) { return static_cast<double>(v); };
  gauge("dopplersky_run_exit_code",
        "Exit code of ds-load in the last run (0 ok, 1 failed, 3 partial, 4 locked, 130 interrupted).", r.exit_code);
  gauge("dopplersky_run_id", "snapshot_logs.id of the last run (0 when none was recorded).", count(r.run_id));
  gauge("dopplersky_run_duration_seconds", "Wall time of the last run, as recorded in snapshot_logs.duration.",
        r.duration_s);
  gauge("dopplersky_run_end_timestamp_seconds", "When the last run ended (Unix time), whatever its status.",
        r.end_time_s);
  gauge("dopplersky_run_users_selected", "Users selected for the last run.", count(r.users_selected));
  gauge("dopplersky_run_users_snapshotted",
        "Users that got a snapshot in the last run (snapshot_logs.total_users).", count(r.users_snapshotted));
  gauge("dopplersky_run_users_gone", "Users the API no longer has, in the last run.", count(r.users_gone));
  gauge("dopplersky_run_users_failed",
        "Users not refreshed in the last run: profiles failed + feeds failed + feeds capped.", count(r.users_failed));
  gauge("dopplersky_run_posts_loaded", "Posts ds-load inserted, updated or found unchanged in the last run.",
        count(r.posts_loaded));
  gauge("dopplersky_run_api_requests", "API requests of all stages in the last run, retries included.",
        count(r.api_requests));
  gauge("dopplersky_run_api_retries", "API requests retried by all stages in the last run.", count(r.api_retries));
  x.family("dopplersky_last_success_timestamp_seconds",
           "End of the last completed run of this shard (Unix time, from snapshot_logs; survives failed runs).");
  if (r.last_success_s) x.sample("dopplersky_last_success_timestamp_seconds", l, *r.last_success_s);
  x.family("dopplersky_last_finished_timestamp_seconds",
           "End of the last completed or partial run of this shard (Unix time, from snapshot_logs).");
  if (r.last_finished_s) x.sample("dopplersky_last_finished_timestamp_seconds", l, *r.last_finished_s);
  return x.text();
}

std::pair<std::optional<double>, std::optional<double>> query_last_runs(PgConnection& c,
                                                                        const std::optional<std::string>& shard) {
  const PgResult r = c.exec(
      "SELECT extract(epoch FROM max(time_completed) FILTER (WHERE status = 'completed'))::float8, "
      "       extract(epoch FROM max(time_completed) FILTER (WHERE status IN ('completed', 'partial')))::float8 "
      "  FROM snapshot_logs WHERE shard IS NOT DISTINCT FROM $1",
      {shard ? PgParam(*shard) : PgParam()});
  auto value = [&](int col) -> std::optional<double> {
    if (r.is_null(0, col)) return std::nullopt;
    return std::stod(std::string(r.text(0, col)));
  };
  return {value(0), value(1)};
}

bool write_run_metrics(const std::string& path, RunReport r, const DbParams& db) {
  if (r.end_time_s == 0) {
    try {
      r.end_time_s = static_cast<double>(now()) / static_cast<double>(micros_per_second);
    } catch (const std::exception&) {  // a DS_NOW that does not parse: the system clock then
      r.end_time_s = static_cast<double>(::time(nullptr));
    }
  }
  try {
    PgConnection c(db);
    auto [success, finished] = query_last_runs(c, r.shard);
    r.last_success_s = success;
    r.last_finished_s = finished;
  } catch (const std::exception& e) {
    // The database is what failed the run, most likely: keep what the previous file knew.
    r.last_success_s = read_sample(path, "dopplersky_last_success_timestamp_seconds");
    r.last_finished_s = read_sample(path, "dopplersky_last_finished_timestamp_seconds");
    spdlog::warn("metrics: cannot read the last successful run from snapshot_logs ({}); kept the previous file's value",
                 e.what());
  }
  try {
    write_file_atomic(path, render(r));
    spdlog::debug("metrics written to {}", path);
    return true;
  } catch (const std::exception& e) {
    spdlog::error("metrics: {}", e.what());
    return false;
  }
}

}  // namespace ds::metrics
