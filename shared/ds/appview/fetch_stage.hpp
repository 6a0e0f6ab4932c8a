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
  // A stage that batches users into requests (25 profiles, 25 getPosts URIs) keeps its open,
  // partial batch until the loop says to send it: a batch of fewer costs a whole request of the
  // budget. The loop sends it only when holding it gains nothing (send_partial_batch_if_due).
  virtual void send_partial_batch() {}
  // The oldest user of the window waits on the open batch: output cannot move until it goes.
  virtual bool head_in_partial_batch() const { return false; }
  virtual void add_end_fields(EndRecord& end) const = 0;  // the stage's own counters
  virtual std::string summary() const = 0;  // "N users (...)...", the start of the summary line
  virtual std::int64_t users_written() const = 0;
  virtual bool partial() const = 0;         // some user failed: exit 3

  HttpClient& http_;
  OutputWriter& out_;
  Progress* progress_;
  int first_quiet_ms_ = 250;  // how long input may pause before a partial batch may go
  int quiet_poll_ms_ = 250;   // then, how often output is flushed while input stays quiet

 private:
  static void before_read_hook(void* self);
  void before_read();
  // The one rule for a partial batch: it goes when input has ended, when nothing else is in
  // flight (the stage would only sit idle), or when the head of the window is in it. A full
  // window alone is no reason: under the rate cap it stays full of users whose requests wait for
  // the budget, and sending at each wait made getPosts batches of 7 URIs instead of 24
  // (docs/performance-requests.md).
  void send_partial_batch_if_due(bool input_done);
  void make_end(const RecordInput& input, double elapsed);

  std::string stage_name_;
  int input_fd_;
  EndRecord end_;
};

}  // namespace ds::appview
