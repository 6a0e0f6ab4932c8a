// ds-fetch-feeds: stdin users (with profiles) -> each user's own posts, then the user with its
// feed outcome, via app.bsky.feed.getAuthorFeed. Wiring and exit codes only; logic in feed_fetcher.
#include <unistd.h>

#include <optional>
#include <string>

#include <spdlog/spdlog.h>

#include "ds/config.hpp"
#include "ds/exit_codes.hpp"
#include "ds/http.hpp"
#include "ds/ndjson.hpp"
#include "ds/progress.hpp"
#include "ds/record_input.hpp"
#include "ds/signals.hpp"
#include "ds/stage.hpp"
#include "feed_fetcher.hpp"

int main(int argc, char** argv) {
  CLI::App app{"Reads `user` records on stdin, pages each profileStatus=ok user's getAuthorFeed "
               "(everything for a backfill, back to `since` otherwise), writes the user's own posts "
               "and then the user, in input order. Exit: 0 ok, 1 runtime failure, 2 usage, 3 some "
               "feeds failed or were capped or input lines were bad, 6 --health failed."};
  app.name("ds-fetch-feeds");
  ds::CommonOptions common;
  ds::add_common_options(app, common);
  ds::HttpFlags http_flags;
  ds::add_http_flags(app, http_flags);
  std::optional<std::int64_t> max_posts;
  app.add_option("--max-posts", max_posts,
                 "Safety cap on posts per user; a feed that reaches it is `capped` (env MAX_POSTS_PER_USER; default 100000)");
  bool health = false;
  std::string health_actor = "bsky.app";
  app.add_flag("--health", health, "Check that the API answers (one getAuthorFeed call) and exit");
  app.add_option("--health-actor", health_actor, "Account asked about by --health (default bsky.app)");
  if (auto rc = ds::parse_command_line(app, argc, argv)) return *rc;
  if (!ds::init_program("ds-fetch-feeds", common)) return ds::exit_code::usage;
  ds::install_stop_signals("ds-fetch-feeds");  // SIGINT/SIGTERM: exit 130, never inside a line

  ds::HttpSettings settings;
  ds::feeds::FetcherOptions options;
  try {
    settings = ds::resolve_http_settings(http_flags);
    options.max_posts = ds::setting_int(max_posts, "MAX_POSTS_PER_USER", 100000, 1, 10'000'000);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return ds::exit_code::usage;
  }

  try {
    if (health) {
      settings.options.max_attempts = 1;  // a health probe reports, it does not insist
      ds::HttpClient http(settings.options);
      const std::string problem = ds::feeds::health_check(http, settings.base_url, health_actor);
      if (!problem.empty()) {
        spdlog::error("{}", problem);
        return ds::exit_code::health_api;
      }
      spdlog::info("API health check ok: {} answered getAuthorFeed", settings.base_url);
      return ds::exit_code::ok;
    }

    // Users come from stdin, so their total is unknown until the end: done-so-far only. Declared
    // before the client, whose observer refers to it.
    ds::Progress progress("ds-fetch-feeds", common.quiet);
    ds::HttpClient http(settings.options);
    http.set_observer(ds::progress_observer(progress));
    ds::LineReader reader(STDIN_FILENO);
    ds::OutputWriter out(STDOUT_FILENO);
    ds::RecordInput input("ds-fetch-feeds", reader, out, ds::want_user, common.strict);
    options.base_url = settings.base_url;
    options.input_fd = STDIN_FILENO;
    options.progress = &progress;
    ds::feeds::FeedFetcher fetcher(options, http, out);
    return fetcher.run(reader, input);
  } catch (const ds::BadInputError& e) {
    spdlog::error("{} (--strict)", e.what());
    return ds::exit_code::runtime;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return ds::exit_code::runtime;
  }
}
