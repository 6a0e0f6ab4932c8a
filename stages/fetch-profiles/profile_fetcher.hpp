// ds-fetch-profiles' logic: reads `user` records, asks getProfiles about them 25 at a time over
// one shared HTTP client, and writes each user back, in input order, with its profile outcome.
#pragma once
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <vector>

#include "ds/appview/fetch_stage.hpp"
#include "ds/appview/requests.hpp"
#include "ds/http.hpp"
#include "ds/ndjson.hpp"
#include "ds/progress.hpp"
#include "ds/records.hpp"

namespace ds::profiles {

struct FetcherOptions {
  std::string base_url;              // e.g. https://public.api.bsky.app (no trailing slash needed)
  std::size_t batch_size = appview::max_profiles_per_request;
  // Users held between reading and writing (output keeps input order, so a slow batch holds the
  // ones after it). Bounds memory: about 1 KiB per user.
  std::size_t max_buffered_users = 2000;
  int input_fd = -1;                 // watched while waiting for input, so transfers keep moving
  // Told about each user written; may be null. Requests reach it through the HTTP client's
  // observer, which main.cpp wires, since the client is shared with --health.
  Progress* progress = nullptr;
};

struct FetcherStats {
  std::int64_t users = 0;       // user records written
  std::int64_t ok = 0;
  std::int64_t gone = 0;
  std::int64_t failed = 0;
  std::int64_t duplicates = 0;  // user records whose did was already asked about
  std::int64_t batches = 0;     // getProfiles calls (before HTTP retries)
  std::int64_t bad_items = 0;   // unusable entries in responses
};

// The loop, the `end` chain and the summary are FetchStage's (run() exits 3 when users failed
// or input lines were bad); this class batches, de-duplicates and applies the answers.
class ProfileFetcher : public appview::FetchStage {
 public:
  ProfileFetcher(FetcherOptions options, HttpClient& http, OutputWriter& out);

  const FetcherStats& stats() const { return stats_; }

 private:
  struct Slot {
    UserRecord user;
    bool done = false;
  };
  struct Answer {
    bool done = false;
    ProfileStatus status = ProfileStatus::not_fetched;
    Profile profile;
    std::string error;
    std::vector<std::uint64_t> waiting;  // sequence numbers of slots wanting this answer
  };

  bool wants_input() const override { return window_.size() < options_.max_buffered_users; }
  void add_user(UserRecord&& user) override;
  bool window_empty() const override { return window_.empty(); }
  void write_ready(bool) override;
  // getProfiles batches go by FetchStage's rule for a partial batch (send_partial_batch_if_due).
  void send_partial_batch() override { submit_batch(); }
  bool head_in_partial_batch() const override;
  void add_end_fields(EndRecord& end) const override;
  std::string summary() const override;
  std::int64_t users_written() const override { return stats_.users; }
  bool partial() const override { return stats_.failed > 0; }

  void submit_batch();
  void submit(std::vector<std::string> dids);
  HttpVerdict on_batch(const std::vector<std::string>& dids, HttpResult& r);
  void answer(const std::string& did, ProfileStatus status, const Profile* profile, const std::string& error);
  void apply(Slot& slot, const Answer& a);

  FetcherOptions options_;
  std::deque<Slot> window_;
  std::uint64_t head_seq_ = 0;  // sequence number of window_.front()
  std::uint64_t next_seq_ = 0;
  // Every did seen in this run, so a repeated one is answered without another request. The one
  // structure that grows with the number of distinct users (about 300 bytes each).
  std::unordered_map<std::string, Answer> answers_;
  std::vector<std::string> batch_;
  FetcherStats stats_;
};

// --health: one getProfiles call for `actor`. Returns an empty string when the API answered with
// a getProfiles body, else a one-line reason naming the URL.
std::string health_check(HttpClient& http, const std::string& base_url, const std::string& actor);

}  // namespace ds::profiles
