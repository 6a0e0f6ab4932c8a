// ds-fetch-feeds: stdin users (with profiles) -> each user's own posts, then the user with its
// feed outcome, via app.bsky.feed.getAuthorFeed. Wiring and exit codes only; logic in feed_fetcher.
#include <unistd.h>

#include <optional>
#include <stdexcept>
#include <string>

#include "ds/appview/fetch_program.hpp"
#include "ds/config.hpp"
#include "feed_fetcher.hpp"

int main(int argc, char** argv) {
  ds::feeds::FetcherOptions options;
  std::optional<std::int64_t> max_posts;
  std::optional<std::string> economy;
  std::optional<std::int64_t> full_refresh_days;
  std::optional<std::int64_t> backfill_max_requests;
  ds::appview::FetchProgram program({
      "ds-fetch-feeds",
      "Reads `user` records on stdin, pages each profileStatus=ok user's getAuthorFeed (everything "
      "for a backfill, back to `since` otherwise), writes the user's own posts and then the user, in "
      "input order. Exit: 0 ok (also when backfills stopped at the run's limit), 1 runtime failure, 2 usage, "
      "3 some feeds failed or were capped or input lines were bad, 6 --health failed.",
      "getAuthorFeed",
      [&] {
        options.max_posts = ds::setting_int(max_posts, "MAX_POSTS_PER_USER", 100000, 1, 10'000'000);
        const std::string e = ds::setting(economy, "FEED_ECONOMY", "on");
        if (e != "on" && e != "off") throw std::invalid_argument("--economy / FEED_ECONOMY: on or off, not \"" + e + "\"");
        options.economy.enabled = e == "on";
        options.economy.full_refresh_days =
            static_cast<int>(ds::setting_int(full_refresh_days, "FULL_REFRESH_DAYS", 7, 1, 365));
        options.backfill_max_requests =
            ds::setting_int(backfill_max_requests, "BACKFILL_MAX_REQUESTS", 3000, 0, 100'000'000);
      },
      ds::feeds::health_check,
      [&](ds::appview::FetchContext& c) {
        options.base_url = c.settings.base_url;
        options.input_fd = STDIN_FILENO;
        options.progress = &c.progress;
        ds::feeds::FeedFetcher fetcher(options, c.http, c.out);
        return fetcher.run(c.reader, c.input);
      },
  });
  program.app().add_option(
      "--max-posts", max_posts,
      "Cap on posts per user and run: a window that reaches it is `capped`, a backfill `partial` and continued "
      "by the next run (env MAX_POSTS_PER_USER; default 100000)");
  program.app().add_option(
      "--backfill-max-requests", backfill_max_requests,
      "History pages all backfills of this run may request together; a backfill that runs out is `partial` "
      "and continued by the next run (env BACKFILL_MAX_REQUESTS; default 3000)");
  program.app().add_option(
      "--economy", economy,
      "on: an account with nothing created or deleted since its last snapshot is refreshed with getPosts, "
      "or not at all when its window is empty; off: every account's feed (env FEED_ECONOMY; default on)");
  program.app().add_option(
      "--full-refresh-days", full_refresh_days,
      "Every account takes its whole window feed at least once in this many days, and at least once in "
      "its window's length when that is shorter (env FULL_REFRESH_DAYS; default 7)");
  return program.run(argc, argv);
}
