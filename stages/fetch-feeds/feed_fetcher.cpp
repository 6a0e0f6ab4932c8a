// ds-fetch-feeds: per-user paging state machines sharing one HTTP client, and the output window
// that keeps each user's posts contiguous and users in input order with bounded memory.
#include "feed_fetcher.hpp"

#include <stdexcept>

#include <spdlog/spdlog.h>

#include "ds/clock.hpp"
#include "ds/exit_codes.hpp"
#include "ds/log.hpp"
#include "feed_parser.hpp"

namespace ds::feeds {

struct FeedFetcher::Job {
  std::uint64_t seq = 0;
  UserRecord user;
  std::string buffer;        // encoded post lines not yet written
  std::int64_t buffered_posts = 0;  // how many posts `buffer` holds
  bool opened = false;       // some posts already written: the output block is open
  bool done = false;
  bool paused = false;       // next page held back by the buffer budget
  std::optional<std::string> cursor;
  std::unordered_set<std::string> uris;     // de-duplication within the user
  std::unordered_set<std::string> cursors;  // a cursor seen twice means the server is looping
  Micros previous_sort = 0;  // fallback time for a post with no usable timestamp
  std::int64_t pages = 0;
  std::int64_t posts = 0;
  std::int64_t requests = 0;
  Micros oldest_kept = 0;    // sortAt of the last post written, for the cap message
};

std::string author_feed_url(const std::string& base_url, const std::string& actor, int limit,
                            const std::optional<std::string>& cursor) {
  std::string url = base_url;
  while (!url.empty() && url.back() == '/') url.pop_back();
  url += "/xrpc/app.bsky.feed.getAuthorFeed?actor=" + url_encode(actor) + "&limit=" + std::to_string(limit);
  if (cursor) url += "&cursor=" + url_encode(*cursor);
  return url;
}

FeedFetcher::FeedFetcher(FetcherOptions options, HttpClient& http, OutputWriter& out)
    : options_(std::move(options)), http_(http), out_(out) {
  if (options_.max_users_in_flight == 0)
    options_.max_users_in_flight = 50 * static_cast<std::size_t>(http_.options().concurrency);
  if (options_.max_posts < 1) throw std::invalid_argument("max posts must be at least 1");
  options_.page_limit = std::max(1, std::min(100, options_.page_limit));
}

FeedFetcher::~FeedFetcher() = default;

void FeedFetcher::add_user(UserRecord&& user) {
  auto job = std::make_unique<Job>();
  job->seq = next_seq_++;
  job->user = std::move(user);
  // Newest first: the first post's only honest fallback time is the run clock.
  job->previous_sort = job->user.as_of;
  Job& j = *job;
  window_.push_back(std::move(job));
  if (j.user.profile_status != ProfileStatus::ok) {
    finish(j, FeedStatus::skipped, std::nullopt);
  } else if (!seen_dids_.insert(j.user.did).second) {
    // A second copy would need the first copy's posts again (unbounded memory) or would produce
    // a snapshot without them (wrong totals); skipping it leaves the first copy's snapshot.
    ++stats_.duplicates;
    finish(j, FeedStatus::skipped, std::string("repeated user record; its feed was fetched for the first copy"));
  } else if (&j != window_.front().get() && buffered_bytes_ >= options_.max_buffered_bytes) {
    j.paused = true;  // over the budget: starts when pump() has written enough
    ++paused_;
  } else {
    request_page(j);
  }
}

void FeedFetcher::request_page(Job& job) {
  if (job.paused) {
    job.paused = false;
    --paused_;
  }
  const std::string url = author_feed_url(options_.base_url, job.user.did, options_.page_limit, job.cursor);
  Job* j = &job;  // jobs stay in the window (stable address) until done and written
  // Earlier users first: the head's pages are what lets output (and memory) move on.
  http_.get(url, [this, j](HttpResult& r) { return on_page(*j, r); }, static_cast<std::int64_t>(job.seq));
}

HttpVerdict FeedFetcher::on_page(Job& job, HttpResult& r) {
  const std::string& did = job.user.did;
  if (!r.ok()) {
    job.requests += r.attempt;
    if (r.status == 400 && r.body.find("Profile not found") != std::string::npos) {
      finish(job, FeedStatus::gone, std::nullopt);  // deactivated, deleted or taken down
    } else {
      const std::string why = "page " + std::to_string(job.pages + 1) + ": " + r.describe() + " (after " +
                              std::to_string(r.attempt) + " attempts)";
      spdlog::warn("{}: feed failed: {}", did, why);
      finish(job, FeedStatus::failed, why);
    }
    return HttpVerdict::done;
  }

  FeedPage page;
  Micros previous = job.previous_sort;
  if (const std::string err = parse_author_feed(r.body, did, previous, page); !err.empty()) {
    if (!r.last_attempt) return HttpVerdict::retry;  // truncated or garbled: ask again
    job.requests += r.attempt;
    const std::string why = "page " + std::to_string(job.pages + 1) + ": " + err + " (after " +
                            std::to_string(r.attempt) + " attempts)";
    spdlog::warn("{}: feed failed: {}", did, why);
    finish(job, FeedStatus::failed, why);
    return HttpVerdict::done;
  }
  job.requests += r.attempt;
  job.previous_sort = previous;
  ++job.pages;
  ++stats_.pages;
  stats_.others_dropped += page.others;
  stats_.bad_items += page.bad_items;
  stats_.time_fallbacks += page.created_fallbacks + page.time_fallbacks;
  if (page.bad_items > 0)
    spdlog::debug("{}: page {}: {} unusable items dropped (first: {})", did, job.pages, page.bad_items,
                  page.first_problem);

  const std::optional<Micros>& since = job.user.since;
  bool capped = false;
  for (const PostRecord& p : page.posts) {
    if (!job.uris.insert(p.uri).second) {
      ++stats_.repeated_posts;
      continue;
    }
    if (since && p.sort_at < *since) {
      ++stats_.outside_window;
      continue;
    }
    if (job.posts >= options_.max_posts) {
      capped = true;
      break;
    }
    const std::size_t before = job.buffer.size();
    encode(job.buffer, p);
    buffered_bytes_ += job.buffer.size() - before;
    ++job.buffered_posts;
    ++job.posts;
    job.oldest_kept = p.sort_at;
  }

  const auto cap_reached = [&] {
    const std::string why = "stopped at the cap of " + std::to_string(options_.max_posts) +
                            " posts (--max-posts); posts before " + format_timestamp(job.oldest_kept) +
                            " were not fetched";
    spdlog::warn("{}: {}", did, why);
    finish(job, FeedStatus::capped, why);
    return HttpVerdict::done;
  };
  if (capped) return cap_reached();
  if (!page.cursor) {
    finish(job, FeedStatus::complete, std::nullopt);
    return HttpVerdict::done;
  }
  if (since) {
    // The cursor is the sort time of the page's last item and the next page holds only items
    // strictly older, so a cursor at or before `since` means nothing more is in the window. It is
    // opaque by contract, so when it is not a timestamp fall back to the page's own posts.
    const auto cursor_time = parse_timestamp(*page.cursor);
    const bool past_window = cursor_time ? *cursor_time <= *since
                                         : (!page.posts.empty() && page.posts.back().sort_at < *since);
    if (past_window) {
      finish(job, FeedStatus::complete, std::nullopt);
      return HttpVerdict::done;
    }
  }
  if (job.posts >= options_.max_posts) return cap_reached();
  if (!job.cursors.insert(*page.cursor).second) {
    const std::string why = "page " + std::to_string(job.pages) + ": cursor did not advance (" +
                            excerpt(*page.cursor) + "); stopped to avoid looping";
    spdlog::warn("{}: feed failed: {}", did, why);
    finish(job, FeedStatus::failed, why);
    return HttpVerdict::done;
  }
  job.cursor = std::move(page.cursor);
  if (&job != window_.front().get() && buffered_bytes_ >= options_.max_buffered_bytes) {
    job.paused = true;  // resumed by pump() once the head has written its share
    ++paused_;
  } else {
    request_page(job);
  }
  return HttpVerdict::done;
}

void FeedFetcher::finish(Job& job, FeedStatus status, std::optional<std::string> error) {
  job.done = true;
  job.cursors = {};
  job.uris = {};
  job.user.feed = FeedOutcome{status, job.pages, job.posts, job.requests, std::move(error)};
}

bool FeedFetcher::head_block_open() const { return !window_.empty() && window_.front()->opened; }

// Writes what the head of the window can write. `may_open_block` is false inside the reader's
// hook: a forwarded input line must never land between a user's posts and its user record.
void FeedFetcher::pump(bool may_open_block) {
  while (!window_.empty()) {
    Job& head = *window_.front();
    if (!head.buffer.empty() &&
        (head.done || head.opened || (may_open_block && head.buffer.size() >= options_.stream_after_bytes))) {
      out_.buffer().append(head.buffer);
      buffered_bytes_ -= head.buffer.size();
      head.buffer.clear();
      head.opened = true;
      out_.record_done();
      // Counted as written, not when fetched, so a long backfill streaming out shows its posts.
      if (options_.progress) options_.progress->add_posts(head.buffered_posts);
      head.buffered_posts = 0;
    }
    if (!head.done) break;
    encode(out_.buffer(), head.user);
    out_.record_done();
    if (options_.progress) options_.progress->add_users();
    ++stats_.users;
    stats_.posts += head.posts;
    switch (head.user.feed.status) {
      case FeedStatus::complete: ++stats_.complete; break;
      case FeedStatus::capped: ++stats_.capped; break;
      case FeedStatus::gone: ++stats_.gone; break;
      case FeedStatus::failed: ++stats_.failed; break;
      default: ++stats_.skipped; break;
    }
    window_.pop_front();
  }
  resume_paused();
}

void FeedFetcher::resume_paused() {
  if (paused_ == 0) return;
  for (auto& job : window_) {
    if (!job->paused) continue;
    if (job.get() != window_.front().get() && buffered_bytes_ >= options_.max_buffered_bytes) break;
    request_page(*job);
  }
}

void FeedFetcher::before_read_hook(void* self) { static_cast<FeedFetcher*>(self)->before_read(); }

// Called by the reader just before it would block on input: keep transfers and finished users
// moving until input arrives.
void FeedFetcher::before_read() {
  pump(false);
  out_.flush();
  if (options_.input_fd < 0) return;
  while (!http_.run_until_readable(options_.input_fd, 250)) {
    pump(false);
    out_.flush();
  }
}

int FeedFetcher::run(LineReader& reader, RecordInput& input) {
  started_ = monotonic_seconds();
  reader.set_before_read(&FeedFetcher::before_read_hook, this);
  InputRecord rec;
  bool input_done = false;
  for (;;) {
    pump(true);
    if (!input_done && window_.size() < options_.max_users_in_flight && !head_block_open()) {
      if (input.next(rec)) {
        add_user(std::move(rec.user));
        http_.poll(0);  // start its first page now
      } else {
        input_done = true;
      }
      continue;
    }
    if (window_.empty()) {
      if (input_done) break;
      continue;
    }
    if (http_.pending() == 0)
      throw std::logic_error("ds-fetch-feeds: users waiting with no request outstanding");
    http_.poll(250);
  }
  reader.set_before_read(&OutputWriter::flush_hook, &out_);

  const double elapsed = monotonic_seconds() - started_;
  make_end(input, elapsed);
  input.write_upstream_ends();
  if (input.saw_upstream_end()) {
    encode(out_.buffer(), end_);
  } else {
    spdlog::warn("input ended without the upstream stage's end record: not writing ours, so the "
                 "run cannot be recorded as complete");
  }
  out_.flush();

  if (options_.progress) options_.progress->finish();  // the summary must not share its line
  const auto& c = http_.counters();
  spdlog::info("done: {} users ({} complete, {} capped, {} gone, {} failed, {} skipped), {} posts, {} pages, "
               "{} requests ({} retries, {} rate-limited), {:.2f} requests/user, {} bad input lines, {:.1f} s",
               stats_.users, stats_.complete, stats_.capped, stats_.gone, stats_.failed, stats_.skipped,
               stats_.posts, stats_.pages, c.requests, c.retries, c.http_429,
               stats_.users ? double(c.requests) / double(stats_.users) : 0.0, input.bad_lines(), elapsed);
  // A capped feed gets no snapshot, like a failed one: cron should hear about both.
  return (stats_.failed > 0 || stats_.capped > 0 || input.bad_lines() > 0) ? exit_code::partial : exit_code::ok;
}

void FeedFetcher::make_end(const RecordInput& input, double elapsed) {
  const auto& c = http_.counters();
  end_ = EndRecord{};
  end_.stage = "ds-fetch-feeds";
  end_.set("users", stats_.users);
  end_.set("complete", stats_.complete);
  end_.set("capped", stats_.capped);
  end_.set("gone", stats_.gone);
  end_.set("failed", stats_.failed);
  end_.set("skipped", stats_.skipped);
  end_.set("duplicates", stats_.duplicates);
  end_.set("posts", stats_.posts);
  end_.set("pages", stats_.pages);
  end_.set("requests", c.requests);
  end_.set("retries", c.retries);
  end_.set("http_429", c.http_429);
  end_.set("http_5xx", c.http_5xx);
  end_.set("transport_errors", c.transport_errors);
  end_.set("bytes", c.bytes);
  end_.set("connections", c.connections);
  end_.set("reposts_dropped", stats_.others_dropped);
  end_.set("bad_items", stats_.bad_items);
  end_.set("repeated_posts", stats_.repeated_posts);
  end_.set("outside_window", stats_.outside_window);
  end_.set("time_fallbacks", stats_.time_fallbacks);
  end_.set("bad_lines", input.bad_lines());
  end_.set("requests_per_1000_users", stats_.users > 0 ? c.requests * 1000 / stats_.users : 0);
  end_.elapsed_s = elapsed;
}

std::string health_check(HttpClient& http, const std::string& base_url, const std::string& actor) {
  const std::string url = author_feed_url(base_url, actor, 1, std::nullopt);
  std::string problem = "no answer";
  http.get(url, [&](HttpResult& r) {
    if (!r.ok()) {
      problem = r.describe();
      return HttpVerdict::done;
    }
    FeedPage page;
    Micros t = 0;
    problem = parse_author_feed(r.body, actor, t, page);
    return HttpVerdict::done;
  });
  http.run();
  if (problem.empty()) return {};
  return "API health check failed: " + url + " : " + problem;
}

}  // namespace ds::feeds
