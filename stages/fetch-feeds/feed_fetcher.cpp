// ds-fetch-feeds: per-user paging state machines sharing one HTTP client, and the output window
// that keeps each user's posts contiguous and users in input order with bounded memory.
#include "feed_fetcher.hpp"

#include <algorithm>
#include <stdexcept>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "ds/appview/answer.hpp"
#include "ds/appview/get_author_feed.hpp"
#include "ds/appview/get_posts.hpp"
#include "ds/appview/requests.hpp"
#include "ds/clock.hpp"
#include "ds/log.hpp"

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
  PathChoice choice;         // feed, posts or none, and why
  // The getPosts path: the refreshed window posts by their place in windowUris.
  std::vector<std::optional<PostRecord>> refreshed;
  std::size_t uris_waiting = 0;  // window URIs whose getPosts answer has not come yet
  bool posts_failed = false;     // a getPosts request for it failed
  // A backfill's history pages: budgeted once they come from a cursor, and not cut at `since`.
  // A fresh backfill is history from its first page; a resumed one after its window.
  bool history = false;
  // A resumed backfill: posts strictly older than its stored cursor were never stored, so its
  // window pages keep them (the stored ones in between are not sent again).
  std::optional<Micros> stored_below;
};

FeedFetcher::FeedFetcher(FetcherOptions options, HttpClient& http, OutputWriter& out)
    : FetchStage("ds-fetch-feeds", http, out, options.input_fd, options.progress), options_(std::move(options)) {
  if (options_.max_users_in_flight == 0)
    options_.max_users_in_flight = 50 * static_cast<std::size_t>(http_.options().concurrency);
  if (options_.max_posts < 1) throw std::invalid_argument("max posts must be at least 1");
  options_.page_limit = std::clamp(options_.page_limit, 1, appview::max_feed_page);
  backfill_left_ = std::max<std::int64_t>(0, options_.backfill_max_requests);
}

bool FeedFetcher::wants_input() const {
  // While the head streams its block, nothing else may be written, so reading more only fills
  // memory.
  return window_.size() < options_.max_users_in_flight && !head_block_open();
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
  } else {
    j.choice = choose_path(j.user, options_.economy);
    warn_if_refresh_period_capped(j.user);
    if (j.choice.path == FeedPath::none) finish(j, FeedStatus::complete, std::nullopt);
    else if (j.choice.path == FeedPath::posts) queue_window_uris(j);
    else {
      j.history = !j.user.since;
      if (j.user.backfill_cursor) j.stored_below = appview::author_feed_cursor_time(*j.user.backfill_cursor);
      start_feed(j);
    }
  }
  http_.poll(0);  // start its first request now
}

// Said once a run: the operator asked for refreshes further apart than the window allows.
void FeedFetcher::warn_if_refresh_period_capped(const UserRecord& user) {
  const auto& economy = options_.economy;
  if (said_period_capped_ || !economy.enabled) return;
  const int period = refresh_period_days(user, economy.full_refresh_days);
  if (period >= economy.full_refresh_days) return;
  said_period_capped_ = true;
  spdlog::warn("FULL_REFRESH_DAYS {} is longer than the input's {}-day window (TIME_RANGE_DAYS): full refreshes come "
               "every {} days instead, as a post the economy missed is found only while it is in the window "
               "(docs/request-economy.md, \"The full refresh\")",
               economy.full_refresh_days, period, period);
}

void FeedFetcher::start_feed(Job& job) {
  if (&job != window_.front().get() && buffered_bytes_ >= options_.max_buffered_bytes) {
    job.paused = true;  // over the budget: starts when write_ready() has written enough
    ++paused_;
  } else {
    request_page(job);
  }
}

// getPosts takes 25 URIs from any accounts: a quiet account's window joins the open batch.
void FeedFetcher::queue_window_uris(Job& job) {
  const auto& uris = *job.user.window_uris;
  job.refreshed.assign(uris.size(), std::nullopt);
  job.uris_waiting = uris.size();
  for (std::size_t i = 0; i < uris.size(); ++i) {
    posts_batch_.push_back({uris[i], &job, i});
    if (posts_batch_.size() >= appview::max_posts_per_request) submit_posts_batch();
  }
}

void FeedFetcher::submit_posts_batch() {
  if (posts_batch_.empty()) return;
  std::vector<std::string> uris;
  uris.reserve(posts_batch_.size());
  for (const auto& e : posts_batch_) uris.push_back(e.uri);
  stats_.posts_uris += static_cast<std::int64_t>(uris.size());
  // The batch's first account is its earliest in input order: the output waits on it first.
  const auto priority = static_cast<std::int64_t>(posts_batch_.front().job->seq);
  http_.get(appview::get_posts_url(options_.base_url, uris),
            [this, batch = std::move(posts_batch_)](HttpResult& r) { return on_posts(batch, r); }, priority);
  posts_batch_.clear();
  http_.poll(0);
}

HttpVerdict FeedFetcher::on_posts(const std::vector<PostsEntry>& batch, HttpResult& r) {
  appview::PostsAnswer answer;
  std::string parse_error;
  if (r.ok()) parse_error = appview::parse_get_posts(r.body, batch.front().job->user.as_of, answer);
  const appview::Outcome outcome = appview::classify(r, parse_error);
  if (outcome == appview::Outcome::retry) return HttpVerdict::retry;
  stats_.posts_requests += r.attempt;
  const bool usable = outcome == appview::Outcome::usable;
  if (!usable)
    spdlog::warn("getPosts failed for {} URIs: {}; their accounts take their feeds instead", batch.size(),
                 appview::failure_reason(r, parse_error));
  stats_.bad_items += answer.bad_items;
  std::unordered_map<std::string_view, const PostRecord*> found;
  for (const auto& p : answer.posts) found.emplace(p.uri, &p);
  Job* previous = nullptr;
  for (const auto& e : batch) {
    Job& job = *e.job;
    if (&job != previous) job.requests += r.attempt;  // a job's entries are contiguous in a batch
    previous = &job;
    if (!usable) {
      job.posts_failed = true;
    } else if (const auto it = found.find(e.uri); it != found.end() && it->second->did == job.user.did &&
                                                  it->second->sort_at >= *job.user.since) {
      job.refreshed[e.index] = *it->second;
    }
    // Not found (deleted, or not yet indexed), or no longer in the window: refreshed stays empty.
    if (--job.uris_waiting == 0) settle_posts(job);
  }
  return HttpVerdict::done;
}

// Every window URI of `job` has its answer: write the refreshed posts, or take the feed when a
// request failed or the posts missing (deleted) are not exactly the ones postsCount lost (one
// missing from a quiet account means another was created: only the feed can tell). Stored window
// posts left out of a complete answer are marked deleted by ds-load, as after a complete feed.
void FeedFetcher::settle_posts(Job& job) {
  const auto missing = std::count_if(job.refreshed.begin(), job.refreshed.end(),
                                     [](const std::optional<PostRecord>& p) { return !p; });
  if (job.posts_failed || missing != expected_missing(job.user, job.choice)) {
    const PathReason why = job.posts_failed                                 ? PathReason::posts_failed
                           : job.choice.reason == PathReason::posts_dropped ? PathReason::drop_unexplained
                                                                            : PathReason::post_missing;
    job.choice = {FeedPath::feed, why};
    spdlog::debug("{}: getPosts {}; taking its feed", job.user.did,
                  job.posts_failed ? "failed" : fmt::format("left {} window posts out", missing));
    job.refreshed = {};
    start_feed(job);
    return;
  }
  for (const auto& p : job.refreshed) {
    if (!p) continue;  // deleted: the account's drop of postsCount
    const std::size_t before = job.buffer.size();
    encode(job.buffer, *p);
    buffered_bytes_ += job.buffer.size() - before;
    ++job.buffered_posts;
    ++job.posts;
  }
  job.refreshed = {};
  finish(job, FeedStatus::complete, std::nullopt);
}

void FeedFetcher::request_page(Job& job) {
  if (job.paused) {
    job.paused = false;
    --paused_;
  }
  if (job.history && job.cursor) {
    if (backfill_left_ == 0) {
      stop_backfill(job);
      return;
    }
    --backfill_left_;
    ++stats_.backfill_requests;
  }
  const std::string url = appview::author_feed_url(options_.base_url, job.user.did, options_.page_limit, job.cursor);
  Job* j = &job;  // jobs stay in the window (stable address) until done and written
  // Earlier users first: the head's pages are what lets output (and memory) move on.
  http_.get(url, [this, j](HttpResult& r) { return on_page(*j, r); }, static_cast<std::int64_t>(job.seq));
}

void FeedFetcher::fail(Job& job, const std::string& why) {
  spdlog::warn("{}: feed failed: {}", job.user.did, why);
  finish(job, FeedStatus::failed, why);
}

HttpVerdict FeedFetcher::on_page(Job& job, HttpResult& r) {
  const std::string& did = job.user.did;
  appview::FeedPage page;
  Micros previous = job.previous_sort;
  std::string parse_error;
  if (r.ok()) parse_error = appview::parse_author_feed(r.body, did, previous, page);
  const appview::Outcome outcome = appview::classify(r, parse_error);
  if (outcome == appview::Outcome::retry) return HttpVerdict::retry;  // truncated or garbled: ask again
  job.requests += r.attempt;
  stats_.feed_requests += r.attempt;
  if (outcome == appview::Outcome::gone) {
    finish(job, FeedStatus::gone, std::nullopt);  // deactivated, deleted or taken down
    return HttpVerdict::done;
  }
  if (outcome == appview::Outcome::fail) {
    fail(job, "page " + std::to_string(job.pages + 1) + ": " + appview::failure_reason(r, parse_error));
    return HttpVerdict::done;
  }
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
    if (since && !job.history && p.sort_at < *since && !(job.stored_below && p.sort_at < *job.stored_below)) {
      ++stats_.outside_window;
      continue;
    }
    if (!job.history && job.posts >= options_.max_posts) {
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
  std::string next = std::move(*page.cursor);
  if (since && !job.history) {
    // The cursor is the sort time of the page's last item and the next page holds only items
    // strictly older, so a cursor at or before `since` means nothing more is in the window. That
    // item may be a repost, sorted by the repost's time while its post is older: the page's own
    // posts cannot stand in for the cursor then, so the real AppView's "<ms>__<cid>" is read too.
    // It is opaque by contract, so when it is neither fall back to the page's own posts.
    const auto cursor_time = appview::author_feed_cursor_time(next);
    const bool past_window = cursor_time ? *cursor_time <= *since
                                         : (!page.posts.empty() && page.posts.back().sort_at < *since);
    if (past_window) {
      if (!job.user.backfill_cursor) {
        finish(job, FeedStatus::complete, std::nullopt);
        return HttpVerdict::done;
      }
      // A resumed backfill: its window is refreshed; its history goes on from the stored cursor,
      // or from here when the window already reached below it.
      job.history = true;
      if (!(cursor_time && job.stored_below && *cursor_time <= *job.stored_below)) next = *job.user.backfill_cursor;
    }
  }
  if (job.posts >= options_.max_posts) {
    if (!job.history) return cap_reached();
    job.cursor = std::move(next);
    stop_backfill(job);
    return HttpVerdict::done;
  }
  if (!job.cursors.insert(next).second) {
    fail(job, "page " + std::to_string(job.pages) + ": cursor did not advance (" + excerpt(next) +
                  "); stopped to avoid looping");
    return HttpVerdict::done;
  }
  job.cursor = std::move(next);
  if (&job != window_.front().get() && buffered_bytes_ >= options_.max_buffered_bytes) {
    job.paused = true;  // resumed by write_ready() once the head has written its share
    ++paused_;
  } else {
    request_page(job);
  }
  return HttpVerdict::done;
}

// The run's limit for this backfill (the request budget, or max_posts) is reached: what it
// fetched is written, and the next run continues from `job.cursor`.
void FeedFetcher::stop_backfill(Job& job) {
  spdlog::info("{}: backfill stopped at the run's limit after {} posts ({} backfill requests left); the next run "
               "continues from cursor {}",
               job.user.did, job.posts, backfill_left_, job.cursor ? excerpt(*job.cursor) : std::string("(none)"));
  finish(job, FeedStatus::partial, std::nullopt);
  job.user.feed.cursor = job.cursor;
}

void FeedFetcher::finish(Job& job, FeedStatus status, std::optional<std::string> error) {
  job.done = true;
  job.cursors = {};
  job.uris = {};
  // A skipped user was never on a path: nothing was asked for it.
  const bool skipped = status == FeedStatus::skipped;
  job.user.feed = FeedOutcome{.status = status,
                              .pages = job.pages,
                              .posts = job.posts,
                              .requests = job.requests,
                              .error = std::move(error),
                              .path = skipped ? std::string() : to_string(job.choice.path),
                              .reason = skipped ? std::string() : to_string(job.choice.reason),
                              .cursor = std::nullopt};
}

bool FeedFetcher::head_block_open() const { return !window_.empty() && window_.front()->opened; }

// A user's posts come before its user record, as one block: a forwarded input line must never
// land between them, so the block opens only when `may_open_block`.
void FeedFetcher::write_ready(bool may_open_block) {
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
      if (progress_) progress_->add_posts(head.buffered_posts);
      head.buffered_posts = 0;
    }
    if (!head.done) break;
    encode(out_.buffer(), head.user);
    out_.record_done();
    if (progress_) progress_->add_users();
    ++stats_.users;
    stats_.posts += head.posts;
    switch (head.user.feed.status) {
      case FeedStatus::complete: ++stats_.complete; break;
      case FeedStatus::capped: ++stats_.capped; break;
      case FeedStatus::partial: ++stats_.backfill_partial; break;
      case FeedStatus::gone: ++stats_.gone; break;
      case FeedStatus::failed: ++stats_.failed; break;
      default: ++stats_.skipped; break;
    }
    if (head.user.feed.status != FeedStatus::skipped) {
      ++stats_.paths[static_cast<int>(head.choice.path)];
      ++stats_.reasons[static_cast<int>(head.choice.reason)];
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

std::string FeedFetcher::summary() const {
  std::string why;
  for (int r = 0; r < path_reason_count; ++r)
    if (stats_.reasons[r] > 0)
      why += fmt::format("{}{} {}", why.empty() ? "" : ", ", stats_.reasons[r], to_string(static_cast<PathReason>(r)));
  return fmt::format("{} users ({} complete, {} capped, {} gone, {} failed, {} skipped, {} backfills to continue), "
                     "{} posts, {} pages ({} of the backfill budget); "
                     "paths: {} feed, {} getPosts, {} no request ({}); {} getAuthorFeed + {} getPosts requests ({} URIs)",
                     stats_.users, stats_.complete, stats_.capped, stats_.gone, stats_.failed, stats_.skipped,
                     stats_.backfill_partial,
                     stats_.posts, stats_.pages, stats_.backfill_requests,
                     stats_.path(FeedPath::feed), stats_.path(FeedPath::posts), stats_.path(FeedPath::none),
                     why.empty() ? "none" : why, stats_.feed_requests, stats_.posts_requests, stats_.posts_uris);
}

void FeedFetcher::add_end_fields(EndRecord& end) const {
  end.set("users", stats_.users);
  end.set("complete", stats_.complete);
  end.set("capped", stats_.capped);
  end.set("backfill_partial", stats_.backfill_partial);
  end.set("backfill_requests", stats_.backfill_requests);
  end.set("gone", stats_.gone);
  end.set("failed", stats_.failed);
  end.set("skipped", stats_.skipped);
  end.set("duplicates", stats_.duplicates);
  end.set("posts", stats_.posts);
  end.set("pages", stats_.pages);
  end.set("reposts_dropped", stats_.others_dropped);
  end.set("bad_items", stats_.bad_items);
  end.set("repeated_posts", stats_.repeated_posts);
  end.set("outside_window", stats_.outside_window);
  end.set("time_fallbacks", stats_.time_fallbacks);
  end.set("requests_get_author_feed", stats_.feed_requests);
  end.set("requests_get_posts", stats_.posts_requests);
  end.set("get_posts_uris", stats_.posts_uris);
  for (int p = 0; p < feed_path_count; ++p)
    end.set(std::string("path_") + to_string(static_cast<FeedPath>(p)), stats_.paths[p]);
  for (int r = 0; r < path_reason_count; ++r)
    end.set(std::string("reason_") + to_string(static_cast<PathReason>(r)), stats_.reasons[r]);
}

std::string health_check(HttpClient& http, const std::string& base_url, const std::string& actor) {
  return appview::probe(http, appview::author_feed_url(base_url, actor, 1, std::nullopt), [&](std::string_view body) {
    appview::FeedPage page;
    Micros t = 0;
    return appview::parse_author_feed(body, actor, t, page);
  });
}

}  // namespace ds::feeds
