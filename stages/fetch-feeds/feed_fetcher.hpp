// ds-fetch-feeds' logic: pages getAuthorFeed for many users at once over one HTTP client and
// writes each user's own posts contiguously, then that user's record, in input order.
#pragma once
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>

#include "ds/appview/fetch_stage.hpp"
#include "ds/http.hpp"
#include "ds/ndjson.hpp"
#include "ds/progress.hpp"
#include "ds/records.hpp"
#include "path_choice.hpp"

namespace ds::feeds {

struct FetcherOptions {
  std::string base_url;
  std::int64_t max_posts = 100000;  // safety cap per user; reaching it makes the feed `capped`
  int page_limit = 100;             // getAuthorFeed's maximum
  // Users between reading and writing. Only the head of this window writes; the others fetch
  // ahead, so one long backfill at the head does not starve the connections. A finished user
  // waiting its turn costs its record (~1 KiB) plus its posts, which the budget below bounds.
  // 0 = 50 x the HTTP concurrency.
  std::size_t max_users_in_flight = 0;
  // Encoded posts held for users behind the head. Past it, those users stop asking for pages
  // (or do not start) until the head moves on; the head itself always proceeds. Memory for posts
  // stays below this plus one page (~30 KiB) per user with a request in flight.
  std::size_t max_buffered_bytes = 64u << 20;
  // The head starts streaming its posts (opening its block) once this much is buffered;
  // smaller feeds are written whole when they complete.
  std::size_t stream_after_bytes = 1u << 20;
  int input_fd = -1;  // watched while waiting for input, so transfers and output keep moving
  // Told about users and posts as they are written; may be null. Requests reach it through the
  // HTTP client's observer, which main.cpp wires, since the client is shared with --health.
  Progress* progress = nullptr;
  // Which accounts may skip their feed (path_choice.hpp, docs/request-economy.md).
  EconomyOptions economy;
  // History pages of backfills, over the whole run (docs/request-economy.md, progressive
  // backfill): a fresh backfill's pages after its first, a resumed one's pages from its stored
  // cursor. A backfill that runs out, or reaches max_posts, ends `partial` with the cursor to
  // continue from. Window pages are never counted: every account's window is refreshed daily.
  std::int64_t backfill_max_requests = 3000;
};

struct FetcherStats {
  std::int64_t users = 0;
  std::int64_t complete = 0;
  std::int64_t capped = 0;
  std::int64_t backfill_partial = 0;   // backfills that stopped at the run's limit, to continue
  std::int64_t backfill_requests = 0;  // history pages taken from backfill_max_requests
  std::int64_t gone = 0;
  std::int64_t failed = 0;
  std::int64_t skipped = 0;          // profile not ok, or a repeated did
  std::int64_t duplicates = 0;       // repeated dids (counted in skipped too)
  std::int64_t posts = 0;            // post records written
  std::int64_t pages = 0;
  std::int64_t others_dropped = 0;   // reposts of other people's posts
  std::int64_t bad_items = 0;        // unusable feed items
  std::int64_t repeated_posts = 0;   // same uri twice for one user
  std::int64_t outside_window = 0;   // fetched posts older than `since`
  std::int64_t time_fallbacks = 0;   // posts dated by indexedAt or the previous post
  std::int64_t feed_requests = 0;    // getAuthorFeed attempts
  std::int64_t posts_requests = 0;   // getPosts attempts
  std::int64_t posts_uris = 0;       // URIs in the getPosts requests sent (25 fill one)
  std::int64_t paths[feed_path_count] = {};      // users written, by FeedPath
  std::int64_t reasons[path_reason_count] = {};  // users written, by the PathReason of their path
  std::int64_t path(FeedPath p) const { return paths[static_cast<int>(p)]; }
};

// The loop, the `end` chain and the summary are FetchStage's (run() exits 3 when a feed failed
// or was capped, or input lines were bad); this class decides what to ask for each user and
// when its posts may be written.
class FeedFetcher : public appview::FetchStage {
 public:
  FeedFetcher(FetcherOptions options, HttpClient& http, OutputWriter& out);
  ~FeedFetcher() override;

  const FetcherStats& stats() const { return stats_; }

 private:
  struct Job;
  bool wants_input() const override;
  void add_user(UserRecord&& user) override;
  bool window_empty() const override { return window_.empty(); }
  void write_ready(bool may_open_block) override;
  void add_end_fields(EndRecord& end) const override;
  std::string summary() const override;
  std::int64_t users_written() const override { return stats_.users; }
  bool partial() const override { return stats_.failed > 0 || stats_.capped > 0; }

  // getPosts batches go by FetchStage's rule for a partial batch (send_partial_batch_if_due).
  void send_partial_batch() override { submit_posts_batch(); }
  bool head_in_partial_batch() const override {
    return !posts_batch_.empty() && !window_.empty() && posts_batch_.front().job == window_.front().get();
  }

  struct PostsEntry {
    std::string uri;
    Job* job;
    std::size_t index;  // in the job's windowUris
  };
  void warn_if_refresh_period_capped(const UserRecord& user);
  void start_feed(Job& job);
  void queue_window_uris(Job& job);
  void submit_posts_batch();
  HttpVerdict on_posts(const std::vector<PostsEntry>& batch, HttpResult& r);
  void settle_posts(Job& job);
  void request_page(Job& job);
  HttpVerdict on_page(Job& job, HttpResult& r);
  void fail(Job& job, const std::string& why);
  void finish(Job& job, FeedStatus status, std::optional<std::string> error);
  void resume_paused();
  bool head_block_open() const;
  void stop_backfill(Job& job);

  FetcherOptions options_;
  std::deque<std::unique_ptr<Job>> window_;
  std::unordered_set<std::string> seen_dids_;  // grows with distinct users (~100 bytes each)
  bool said_period_capped_ = false;  // the warning that the window shortens FULL_REFRESH_DAYS, once
  std::size_t buffered_bytes_ = 0;
  std::size_t paused_ = 0;  // jobs waiting for the buffer budget
  std::uint64_t next_seq_ = 0;
  std::vector<PostsEntry> posts_batch_;  // window URIs waiting for a getPosts request
  FetcherStats stats_;
  std::int64_t backfill_left_ = 0;  // of options_.backfill_max_requests
};

// --health: one getAuthorFeed call (limit 1) for `actor`. Empty when the API answered with a feed
// page, else a one-line reason naming the URL.
std::string health_check(HttpClient& http, const std::string& base_url, const std::string& actor);

}  // namespace ds::feeds
