// ds-fetch-feeds: stdin users (with profiles) -> each user's own posts, then the user with its
// feed outcome, via app.bsky.feed.getAuthorFeed. Wiring and exit codes only; logic in feed_fetcher.
#include <unistd.h>

#include <optional>

#include "ds/appview/fetch_program.hpp"
#include "ds/config.hpp"
#include "feed_fetcher.hpp"

int main(int argc, char** argv) {
  ds::feeds::FetcherOptions options;
  std::optional<std::int64_t> max_posts;
  ds::appview::FetchProgram program({
      "ds-fetch-feeds",
      "Reads `user` records on stdin, pages each profileStatus=ok user's getAuthorFeed (everything "
      "for a backfill, back to `since` otherwise), writes the user's own posts and then the user, in "
      "input order. Exit: 0 ok, 1 runtime failure, 2 usage, 3 some feeds failed or were capped or "
      "input lines were bad, 6 --health failed.",
      "getAuthorFeed",
      [&] { options.max_posts = ds::setting_int(max_posts, "MAX_POSTS_PER_USER", 100000, 1, 10'000'000); },
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
      "Safety cap on posts per user; a feed that reaches it is `capped` (env MAX_POSTS_PER_USER; default 100000)");
  return program.run(argc, argv);
}
