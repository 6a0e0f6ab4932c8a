// The loop every fetching stage runs: users in from stdin through a bounded window, answers in
// from the HTTP client, records out in input order, then the `end` chain and the summary line.
#pragma once
#include <cstdint>
#include <string>

#include "ds/http.hpp"
#include "ds/ndjson.hpp"
#include "ds/progress.hpp"
#include "ds/record_input.hpp"
#include "ds/records.hpp"

namespace ds::appview {

// A fetching stage derives from this and keeps only its own decisions: when it has room for
// another user, what to ask the AppView for it, and what it writes when the answers are in.
// The loop never blocks on stdin while answers are due: before a read would block it drives the
// HTTP client and writes what is ready (the reader's before-read hook).
class FetchStage {
 public:
  // `input_fd` is watched while waiting for input (-1: input is never waited on); `progress` is
  // told about users written (may be null).
  FetchStage(std::string stage_name, HttpClient& http, OutputWriter& out, int input_fd, Progress* progress);
  virtual ~FetchStage();
  FetchStage(const FetchStage&) = delete;
  FetchStage& operator=(const FetchStage&) = delete;

  // Reads all input (taking over `reader`'s before-read hook), fetches and writes, then writes
  // the upstream end records and, if upstream's end was seen, this stage's own. Returns the exit
  // code: 0, or exit_code::partial when some user failed (partial()) or input lines were bad.
  int run(LineReader& reader, RecordInput& input);

  const EndRecord& end_record() const { return end_; }

 protected:
  virtual bool wants_input() const = 0;            // room in the window for another user
  virtual void add_user(UserRecord&& user) = 0;     // a user read from input joins the window
  virtual bool window_empty() const = 0;           // every user read has been written
  // Writes what the head of the window can write. `may_open_block` is false inside the
  // reader's hook: a forwarded input line must never land inside a user's block of records.
  virtual void write_ready(bool may_open_block) = 0;
  // The loop is about to wait for answers: input has ended, or the window is full.
  virtual void before_wait(bool /*input_done*/) {}
  // Input has been quiet for `first_quiet_ms` and no request is in flight: the stage would sit
  // idle, so a partial batch should go (holding it while requests are in flight costs nothing and
  // lets it fill). Asked again every `quiet_poll_ms` while input stays quiet.
  virtual void on_input_idle() {}
  virtual void add_end_fields(EndRecord& end) const = 0;  // the stage's own counters
  virtual std::string summary() const = 0;  // "N users (...)...", the start of the summary line
  virtual std::int64_t users_written() const = 0;
  virtual bool partial() const = 0;         // some user failed: exit 3

  HttpClient& http_;
  OutputWriter& out_;
  Progress* progress_;
  int first_quiet_ms_ = 250;  // how long input may pause before on_input_idle()
  int quiet_poll_ms_ = 250;   // then, how often output is flushed while input stays quiet

 private:
  static void before_read_hook(void* self);
  void before_read();
  void make_end(const RecordInput& input, double elapsed);

  std::string stage_name_;
  int input_fd_;
  EndRecord end_;
};

}  // namespace ds::appview
