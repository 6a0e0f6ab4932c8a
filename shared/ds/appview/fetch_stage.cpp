// FetchStage::run: the input window, ordered output, the `end` chain and the summary line that
// ds-fetch-profiles and ds-fetch-feeds share (and the next fetching stage will).
#include "ds/appview/fetch_stage.hpp"

#include <stdexcept>

#include <spdlog/spdlog.h>

#include "ds/clock.hpp"
#include "ds/exit_codes.hpp"

namespace ds::appview {

FetchStage::FetchStage(std::string stage_name, HttpClient& http, OutputWriter& out, int input_fd,
                       Progress* progress)
    : http_(http), out_(out), progress_(progress), stage_name_(std::move(stage_name)), input_fd_(input_fd) {}

FetchStage::~FetchStage() = default;

void FetchStage::before_read_hook(void* self) { static_cast<FetchStage*>(self)->before_read(); }

// Called by the reader just before it would block on input: keep transfers and finished users
// moving until input arrives.
void FetchStage::before_read() {
  write_ready(false);
  out_.flush();
  if (input_fd_ < 0) return;
  bool quiet = false;
  while (!http_.run_until_readable(input_fd_, quiet ? quiet_poll_ms_ : first_quiet_ms_)) {
    quiet = true;
    send_partial_batch_if_due(false);
    write_ready(false);
    out_.flush();
  }
}

void FetchStage::send_partial_batch_if_due(bool input_done) {
  if (input_done || http_.pending() == 0 || head_in_partial_batch()) send_partial_batch();
}

int FetchStage::run(LineReader& reader, RecordInput& input) {
  const double started = monotonic_seconds();
  reader.set_before_read(&FetchStage::before_read_hook, this);
  InputRecord rec;
  bool input_done = false;
  std::int64_t written_at_idle = -1;  // users_written() when nothing was outstanding
  for (;;) {
    write_ready(true);
    if (!input_done && wants_input()) {
      if (input.next(rec)) add_user(std::move(rec.user));
      else input_done = true;
      continue;
    }
    if (window_empty()) break;
    send_partial_batch_if_due(input_done);
    if (http_.pending() == 0) {
      // The partial batch just sent may have been answered at once: write that first.
      // Nothing outstanding twice with nothing written in between is a stage that lost a user.
      if (users_written() == written_at_idle)
        throw std::logic_error(stage_name_ + ": users waiting with no request outstanding");
      written_at_idle = users_written();
      continue;
    }
    http_.poll(250);
  }
  reader.set_before_read(&OutputWriter::flush_hook, &out_);

  const double elapsed = monotonic_seconds() - started;
  make_end(input, elapsed);
  input.write_upstream_ends();
  if (input.saw_upstream_end()) {
    encode(out_.buffer(), end_);
  } else {
    spdlog::warn("input ended without the upstream stage's end record: not writing ours, so the "
                 "run cannot be recorded as complete");
  }
  out_.flush();

  if (progress_) progress_->finish();  // the summary must not share its line
  const auto& c = http_.counters();
  const std::int64_t users = users_written();
  spdlog::info("done: {}, {} requests ({} retries, {} rate-limited), {:.2f} requests/user, {} bad input lines, "
               "{:.1f} s",
               summary(), c.requests, c.retries, c.http_429, users ? double(c.requests) / double(users) : 0.0,
               input.bad_lines(), elapsed);
  return (partial() || input.bad_lines() > 0) ? exit_code::partial : exit_code::ok;
}

void FetchStage::make_end(const RecordInput& input, double elapsed) {
  const auto& c = http_.counters();
  end_ = EndRecord{};
  end_.stage = stage_name_;
  add_end_fields(end_);
  end_.set("requests", c.requests);
  end_.set("retries", c.retries);
  end_.set("http_429", c.http_429);
  end_.set("http_5xx", c.http_5xx);
  end_.set("transport_errors", c.transport_errors);
  end_.set("bytes", c.bytes);
  end_.set("connections", c.connections);
  end_.set("bad_lines", input.bad_lines());
  // Integer, since counters are integers: requests per 1000 users.
  const std::int64_t users = users_written();
  end_.set("requests_per_1000_users", users > 0 ? c.requests * 1000 / users : 0);
  end_.elapsed_s = elapsed;
}

}  // namespace ds::appview
