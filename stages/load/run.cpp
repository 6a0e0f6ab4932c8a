// One ds-load run end to end: the run lock, the snapshot_logs row, the record loop with its batch
// boundaries, and turning every way a run can end (done, bad input, DB error, signal) into a status.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <csignal>
#include <memory>
#include <thread>

#include <spdlog/spdlog.h>

#include "batch_loader.hpp"
#include "ds/clock.hpp"
#include "ds/exit_codes.hpp"
#include "ds/pg.hpp"
#include "ds/record_input.hpp"
#include "ds/shard.hpp"
#include "load.hpp"

namespace ds::load {
namespace {

volatile std::sig_atomic_t stop_signal = 0;
// When set, the handler puts /dev/null (`unblock_with`) in place of the input descriptor: a read
// blocked on a quiet upstream returns EINTR, the reader retries on /dev/null and sees end of input,
// so the stop takes effect without waiting for more data.
int unblock_fd = -1;
int unblock_with = -1;

void on_stop_signal(int) {
  stop_signal = 1;
  if (unblock_fd >= 0 && unblock_with >= 0) dup2(unblock_with, unblock_fd);  // async-signal-safe
}

std::string param(std::int64_t v) { return std::to_string(v); }
std::string int_param(std::int64_t v) { return std::to_string(std::clamp<std::int64_t>(v, INT_MIN, INT_MAX)); }

// Rows of runs that died without updating their row; only called while holding the run lock, so
// no live run owns an in_progress row of this shard (other shards' runs may be live: not theirs).
constexpr const char* close_stale_runs_sql =
    "UPDATE snapshot_logs SET status = 'failed', error = 'run did not finish' "
    "WHERE status = 'in_progress' AND shard IS NOT DISTINCT FROM $1 RETURNING id";

constexpr const char* start_run_sql =
    "INSERT INTO snapshot_logs (id, status, time_started, shard) "
    "VALUES (DEFAULT, 'in_progress', $1::timestamptz, $2) RETURNING id";

constexpr const char* finish_run_sql =
    "UPDATE snapshot_logs SET status = $2, time_completed = $3::timestamptz, duration = $4::real, "
    "total_users = $5::integer, users_selected = $6::integer, users_gone = $7::integer, "
    "users_failed = $8::integer, posts_loaded = $9::bigint, api_requests = $10::bigint, "
    "api_retries = $11::bigint, bad_lines = $12::integer, error = $13, requests_get_profiles = $14::bigint, "
    "requests_get_author_feed = $15::bigint, requests_get_posts = $16::bigint, backfills_partial = $17::integer "
    "WHERE id = $1";

// The stream's shard as an operator would name it.
std::string shard_name(const std::optional<std::string>& shard) { return shard ? "shard " + *shard : "unsharded"; }

// Ends a run over what a selection record says (a --shard it disagrees with, a shard another run
// holds): an exit code and its one-line message.
struct RunStop : std::runtime_error {
  RunStop(int code, const std::string& why) : std::runtime_error(why), code(code) {}
  int code;
};

// Adds a hint when the tables or columns ds-load needs are missing.
std::string explain(const PgError& e) {
  std::string what = e.what();
  if (e.sqlstate == "42P01" || e.sqlstate == "42703")
    what += " (is the database migrated? run ds-migrate)";
  return what;
}

class Run {
 public:
  Run(const LoadOptions& o, LineReader& in, OutputWriter& out) : o_(o), in_(in), out_(out) { res_.shard = o_.shard; }
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;
  // The run lock is released before the connection closes. Closing alone frees it only once the
  // server process has exited, after ds-load has: a run started right after this one (the next
  // shard, a rerun, a test) could find it still held and exit 4.
  ~Run() {
    if (!locked_ || !db_ || !db_->ok()) return;
    try {
      db_->exec("SELECT pg_advisory_unlock_all()");
    } catch (const std::exception& e) {
      spdlog::debug("releasing the run lock: {} (it goes with the session)", e.what());
    }
  }

  LoadResult go() {
    t0_ = monotonic_seconds();
    started_ = now();
    try {
      db_ = std::make_unique<PgConnection>(o_.db);
    } catch (const PgError& e) {
      return fail_early(e.what());
    }
    try {
      // The base key, shared, at once: an unsharded run holding it refuses this one before any
      // record is read, whatever the stream's shard turns out to be.
      locked_ = true;
      if (!advisory("pg_try_advisory_lock_shared", run_lock_key)) return refuse(std::nullopt);
      // Told its shard, the run starts now; otherwise at the stream's first record, which says it.
      if (o_.shard && !start(o_.shard)) return refuse(o_.shard);
    } catch (const PgError& e) {
      return fail_early(explain(e));
    }
    load_stream();
    return finish_result();
  }

 private:
  // Per shard (docs/operations.md): every run holds the base key shared; a shard adds its own key,
  // exclusively, so shards run side by side, while an unsharded run takes the base key exclusively
  // too and so excludes them all. Calls one of PostgreSQL's advisory lock functions: true when it
  // answers true (granted, or released).
  bool advisory(const char* function, std::int64_t key) {
    return db_->exec(std::string("SELECT ") + function + "($1::bigint)", {param(key)}).text(0, 0) == "t";
  }

  // Takes the lock of `shard`'s runs (nullopt: an unsharded run's) and opens the run's row. False,
  // with nothing written, when another run holds it.
  bool start(const std::optional<std::string>& shard) {
    res_.shard = shard;
    if (!take_run_lock(shard)) return false;
    open_run_row();
    spdlog::info("run {} started ({}{})", res_.run_id, o_.db.describe(), shard ? ", shard " + *shard : std::string());
    return true;
  }

  bool take_run_lock(const std::optional<std::string>& shard) {
    if (!advisory("pg_try_advisory_lock", shard_lock_key(run_lock_key, shard))) return false;
    // The exclusive hold covers the shared one; dropping it leaves one lock per run in pg_locks.
    if (!shard) advisory("pg_advisory_unlock_shared", run_lock_key);
    return true;
  }

  LoadResult refuse(const std::optional<std::string>& shard) {
    res_.status = "locked";
    res_.exit_code = exit_code::locked;
    res_.error = "another ds-load run is in progress (lock key " +
                 std::to_string(shard_lock_key(run_lock_key, shard)) + "); not loading";
    spdlog::error("{}", res_.error);
    return finish_result();
  }

  void open_run_row() {
    const PgResult stale = db_->exec(close_stale_runs_sql, {res_.shard});
    for (int i = 0; i < stale.rows(); ++i)
      spdlog::warn("run {} never finished; marked failed", stale.text(i, 0));
    const PgResult r = db_->exec(start_run_sql, {format_timestamp(started_), res_.shard});
    res_.run_id = r.int64(0, 0);
  }

  // A selection record once the run has started: the stream's first when --shard was given, or one
  // of another selection's stream concatenated after the first. This run's lock must cover it.
  void check_selection(const InputRecord& rec, BatchLoader& loader) {
    const auto& theirs = rec.selection.shard;
    const std::string at = " (line " + std::to_string(rec.line_number) + ")";
    // Given --shard, the run is that shard's. A selection that names no shard claims nothing:
    // --shard labels it, as it labels a version-1 stream (a saved stream replayed under a label).
    if (o_.shard) {
      if (theirs && theirs != o_.shard)
        throw RunStop(exit_code::usage, "--shard " + *o_.shard + " disagrees with the stream's selection record" + at +
                                            ": " + shard_name(theirs));
      return;
    }
    if (!res_.shard || theirs == res_.shard) return;  // an unsharded run covers every shard
    // Streams of several selections, one after the other: only an unsharded run covers them all.
    // Taken between two batches, with no statement in flight on the connection that holds the lock.
    loader.commit();
    loader.sync();
    if (!advisory("pg_try_advisory_lock", run_lock_key))
      throw RunStop(exit_code::locked, "another ds-load run is in progress (lock key " + std::to_string(run_lock_key) +
                                           "): the stream goes on with " + shard_name(theirs) + at + " after " +
                                           shard_name(res_.shard) + ", which only an unsharded run may load");
    advisory("pg_advisory_unlock_shared", run_lock_key);
    db_->exec("UPDATE snapshot_logs SET shard = NULL WHERE id = $1", {param(res_.run_id)});
    spdlog::info("the stream goes on with {}{} after {}: run {} goes on as an unsharded run", shard_name(theirs), at,
                 shard_name(res_.shard), res_.run_id);
    res_.shard.reset();
  }

  bool stop_requested() const { return o_.stop && *o_.stop; }
  bool run_id_known() const { return res_.run_id != 0; }

  void load_stream() {
    BatchLoader loader(*db_, o_.db, res_.stats, o_.max_buffered_posts);
    RecordInput input("ds-load", in_, out_, want_selection | want_post | want_user | want_snapshot, o_.strict);
    std::uint64_t line = 0;
    try {
      if (run_id_known()) loader.prepare();
      InputRecord rec;
      // A batch ends after a user record (its posts come before it, so they and the feed outcome
      // share a transaction) and after that user's snapshot, which comes right after it when there
      // is one: a full batch waits for the next record to see whether it is that snapshot. Stored
      // totals and the posts they sum are then always committed together.
      std::string closing_did;  // set while a full batch waits for its last user's snapshot
      while (input.next(rec)) {
        // A record boundary: the place a stop request takes effect.
        if (stop_requested()) break;
        line = rec.line_number;
        if (!run_id_known()) {
          // The first record: a selection record says the stream's shard; any other (a version-1
          // stream, or one put together by hand) makes this an unsharded run.
          const auto shard = rec.type == RecordType::selection ? rec.selection.shard : std::nullopt;
          if (!start(shard)) {
            refuse(shard);
            return;
          }
          loader.prepare();
        } else if (rec.type == RecordType::selection) {
          check_selection(rec, loader);
        }
        if (rec.type == RecordType::selection) continue;
        ++res_.stats.records;
        if (!closing_did.empty() && !(rec.type == RecordType::snapshot && rec.snapshot.did == closing_did)) {
          loader.commit();
          closing_did.clear();
        }
        switch (rec.type) {
          case RecordType::post:
            loader.add_post(rec.post, rec.line_number);
            if (o_.progress) o_.progress->add_posts(1);
            break;
          case RecordType::snapshot:
            loader.add_snapshot(rec.snapshot, rec.line_number);
            if (!closing_did.empty()) {
              loader.commit();
              closing_did.clear();
            }
            break;
          case RecordType::user:
            loader.add_user(rec.user, rec.line_number);
            if (o_.progress) o_.progress->add_users();
            if (loader.pending_records() >= o_.batch_records || loader.batch_age_s() >= o_.batch_seconds)
              closing_did = rec.user.did;
            break;
          default: break;
        }
      }
      if (stop_requested()) {
        loader.rollback();
        spdlog::warn("interrupted by signal: the open batch was rolled back");
        return record_failure("interrupted by signal", exit_code::interrupted, input.bad_lines(),
                              input.upstream_ends());
      }
      // No record at all (an empty stream, or end records only): an unsharded run, judged below.
      if (!run_id_known() && !start(std::nullopt)) {
        refuse(std::nullopt);
        return;
      }
      loader.commit();
      loader.sync();  // the last commit has completed (or thrown) before the run is judged
      out_.flush();
      const StreamVerdict v = judge_stream(input.upstream_ends(), input.bad_lines());
      res_.upstream_ends = input.upstream_ends();
      res_.upstream = v.counters;
      res_.bad_lines = input.bad_lines();
      res_.status = v.status;
      res_.error = v.error;
      res_.exit_code = v.status == "completed" ? exit_code::ok
                       : v.status == "partial" ? exit_code::partial
                                               : exit_code::runtime;
      if (v.status == "failed") spdlog::error("{}", v.error);
      else if (v.status == "partial") spdlog::warn("{}", v.error);
      write_run_row(v);
    } catch (const RunStop& e) {
      loader.rollback();
      spdlog::error("{}", e.what());
      record_failure(e.what(), e.code, input.bad_lines(), input.upstream_ends());
    } catch (const PgError& e) {
      loader.rollback();
      const std::string msg = explain(e) + " while loading line " + std::to_string(line);
      spdlog::error("{}", msg);
      record_failure(msg, exit_code::runtime, input.bad_lines(), input.upstream_ends());
    } catch (const BadInputError& e) {
      loader.rollback();
      spdlog::error("{} (--strict: stopping)", e.what());
      record_failure(e.what(), exit_code::runtime, input.bad_lines(), input.upstream_ends());
    } catch (const std::exception& e) {
      loader.rollback();
      const std::string msg = std::string(e.what()) + " while loading line " + std::to_string(line);
      spdlog::error("{}", msg);
      record_failure(msg, exit_code::runtime, input.bad_lines(), input.upstream_ends());
    }
  }

  void record_failure(const std::string& why, int code, std::int64_t bad_lines,
                      const std::vector<EndRecord>& ends) {
    res_.status = "failed";
    res_.error = why;
    res_.exit_code = code;
    res_.upstream_ends = ends;
    res_.bad_lines = bad_lines;
    StreamVerdict v = judge_stream(ends, bad_lines);
    res_.upstream = v.counters;
    v.status = "failed";
    v.error = why;
    // Stopped before the stream's first record (a signal, a bad first line): recorded as the run
    // the stream would have been without one, if no other run holds that.
    if (!run_id_known()) {
      try {
        if (!start(res_.shard)) {
          spdlog::error("the run is not recorded: another ds-load run holds the lock");
          return;
        }
      } catch (const std::exception& e) {
        spdlog::error("cannot record the run: {}", e.what());
        return;
      }
    }
    // The connection may have died with the error (a restart, a failover), even while libpq still
    // calls it good (a restart's 57P01 comes before the socket closes). Record on it when it works,
    // else on a new one, retrying for a while since a restarting server refuses connections for a
    // few seconds. The lock went with the old session; a run starting meanwhile marks this row
    // failed anyway, and the next run does if we give up.
    if (db_->ok()) {
      try {
        write_run_row(v);
        return;
      } catch (const PgError& e) {
        if (!e.connection_lost) {
          spdlog::error("cannot record run {} as failed: {}", res_.run_id, e.what());
          return;
        }
      }
    }
    if (!reconnect()) return;
    try {
      write_run_row(v);
    } catch (const std::exception& e) {
      spdlog::error("cannot record run {} as failed: {}", res_.run_id, e.what());
    }
  }

  bool reconnect() {
    const double deadline = monotonic_seconds() + o_.reconnect_seconds;
    double pause = 0.25;
    db_.reset();  // its connection slot may be the one a limited role needs
    for (int attempt = 1;; ++attempt) {
      try {
        db_ = std::make_unique<PgConnection>(o_.db);
        if (attempt > 1) spdlog::info("reconnected to PostgreSQL after {} attempts", attempt);
        return true;
      } catch (const PgError& e) {
        if (monotonic_seconds() + pause > deadline || stop_requested()) {
          spdlog::error("cannot record run {} as failed: {}; the next run will mark it failed", res_.run_id,
                        e.what());
          return false;
        }
        if (attempt == 1)
          spdlog::warn("PostgreSQL is unreachable; retrying for up to {:.0f} s to record run {} as failed",
                       o_.reconnect_seconds, res_.run_id);
      }
      std::this_thread::sleep_for(std::chrono::duration<double>(pause));
      pause = std::min(pause * 2, 2.0);
    }
  }

  void write_run_row(const StreamVerdict& v) {
    // Batches commit with synchronous_commit off (BatchLoader::prepare); this flush waits for the
    // WAL up to here, so once the status is recorded every batch before it is durable too.
    db_->exec("SET synchronous_commit = on");
    res_.wall_s = monotonic_seconds() - t0_;
    wall_recorded_ = true;
    const auto& c = v.counters;
    const Micros completed = started_ + static_cast<Micros>(res_.wall_s * micros_per_second);
    db_->exec(finish_run_sql,
              {param(res_.run_id), v.status, format_timestamp(completed), std::to_string(res_.wall_s),
               int_param(res_.stats.snapshots_loaded()), int_param(c.users_selected),
               int_param(c.users_gone), int_param(c.users_failed), param(res_.stats.posts_loaded()),
               param(c.api_requests), param(c.api_retries), int_param(c.bad_lines),
               v.error.empty() ? PgParam() : PgParam(v.error), param(c.requests_get_profiles),
               param(c.requests_get_author_feed), param(c.requests_get_posts), int_param(c.backfills_partial)});
  }

  LoadResult fail_early(const std::string& why) {
    spdlog::error("{}", why);
    res_.status = "failed";
    res_.error = why;
    res_.exit_code = exit_code::runtime;
    return finish_result();
  }

  LoadResult finish_result() {
    // Once snapshot_logs.duration is written, the summary line and the metrics file report that
    // same figure (an alert compares them), not one taken a few milliseconds later.
    if (!wall_recorded_) res_.wall_s = monotonic_seconds() - t0_;
    return res_;
  }
  bool wall_recorded_ = false;
  bool locked_ = false;  // this session may hold run locks (go)

  const LoadOptions& o_;
  LineReader& in_;
  OutputWriter& out_;
  std::unique_ptr<PgConnection> db_;
  LoadResult res_;
  double t0_ = 0;
  Micros started_ = 0;
};

}  // namespace

LoadResult run_load(const LoadOptions& options, LineReader& input, OutputWriter& output) {
  try {
    return Run(options, input, output).go();
  } catch (const std::exception& e) {
    // DS_NOW that does not parse, or anything else before the run row exists.
    spdlog::error("{}", e.what());
    LoadResult r;
    r.status = "failed";
    r.error = e.what();
    r.exit_code = exit_code::runtime;
    return r;
  }
}

std::string summary_line(const LoadResult& r) {
  const auto& s = r.stats;
  std::string line = "run " + std::to_string(r.run_id) + " " + r.status + ": " + std::to_string(s.users_seen) +
                     " users (" + std::to_string(s.users_updated) + " updated), posts " +
                     std::to_string(s.posts_inserted) + " inserted / " + std::to_string(s.posts_updated) +
                     " updated / " + std::to_string(s.posts_unchanged) + " unchanged";
  if (s.posts_skipped) line += " / " + std::to_string(s.posts_skipped) + " skipped";
  line += ", " + std::to_string(s.posts_deleted) + " marked deleted, " +
          std::to_string(s.snapshots_inserted + s.snapshots_updated) + " snapshots written (" +
          std::to_string(s.snapshots_unchanged) + " unchanged";
  if (s.snapshots_skipped) line += ", " + std::to_string(s.snapshots_skipped) + " skipped";
  line += "), ";
  // Skipped lines make the run partial; the count says how far from complete it was.
  if (r.bad_lines) line += std::to_string(r.bad_lines) + " bad input lines skipped, ";
  // The API budget is the binding limit of a real run: what it cost, by endpoint and per account,
  // and which way the feeds were refreshed (docs/request-economy.md).
  const auto& c = r.upstream;
  if (c.api_requests > 0 || c.users_selected > 0)
    line += fmt::format("{} requests ({} getProfiles, {} getAuthorFeed, {} getPosts; {:.2f} per account), "
                        "feeds by path: {} feed, {} getPosts, {} no request, ",
                        c.api_requests, c.requests_get_profiles, c.requests_get_author_feed, c.requests_get_posts,
                        c.users_selected ? double(c.api_requests) / double(c.users_selected) : 0.0, c.path_feed,
                        c.path_posts, c.path_none);
  if (c.backfills_partial > 0) line += std::to_string(c.backfills_partial) + " backfills in progress, ";
  line += std::to_string(s.batches) + " batches, " + fmt::format("{:.2f}", r.wall_s) + " s";
  return line;
}

const volatile std::sig_atomic_t* install_stop_handlers(int input_fd) {
  if (input_fd >= 0) {
    unblock_with = open("/dev/null", O_RDONLY | O_CLOEXEC);
    unblock_fd = input_fd;
  }
  struct sigaction sa {};  // no SA_RESTART: a blocked read returns to the reader
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  return &stop_signal;
}

std::size_t count_chars(std::string_view s) {
  std::size_t n = 0;
  for (const char c : s)
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  return n;
}

std::string truncate_chars(std::string_view s, std::size_t max_chars) {
  std::size_t chars = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) continue;  // continuation byte
    if (chars == max_chars) return std::string(s.substr(0, i));
    ++chars;
  }
  return std::string(s);
}

}  // namespace ds::load
