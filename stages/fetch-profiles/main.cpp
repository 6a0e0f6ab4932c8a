// ds-fetch-profiles: stdin `user` records -> the same users with profileStatus/profile, via
// app.bsky.actor.getProfiles (25 per call). Wiring and exit codes only; logic in profile_fetcher.
#include <unistd.h>

#include <optional>
#include <string>

#include <spdlog/spdlog.h>

#include "ds/exit_codes.hpp"
#include "ds/http.hpp"
#include "ds/ndjson.hpp"
#include "ds/progress.hpp"
#include "ds/record_input.hpp"
#include "ds/signals.hpp"
#include "ds/stage.hpp"
#include "profile_fetcher.hpp"

int main(int argc, char** argv) {
  CLI::App app{"Reads `user` records on stdin, adds each account's Bluesky profile (getProfiles, 25 "
               "accounts per call), writes them to stdout in input order. Exit: 0 ok, 1 runtime "
               "failure, 2 usage, 3 some users failed or input lines were bad, 6 --health failed."};
  app.name("ds-fetch-profiles");
  ds::CommonOptions common;
  ds::add_common_options(app, common);
  ds::HttpFlags http_flags;
  ds::add_http_flags(app, http_flags);
  bool health = false;
  std::string health_actor = "bsky.app";
  app.add_flag("--health", health, "Check that the API answers (one getProfiles call) and exit");
  app.add_option("--health-actor", health_actor, "Account asked about by --health (default bsky.app)");
  if (auto rc = ds::parse_command_line(app, argc, argv)) return *rc;
  if (!ds::init_program("ds-fetch-profiles", common)) return ds::exit_code::usage;
  ds::install_stop_signals("ds-fetch-profiles");  // SIGINT/SIGTERM: exit 130, never inside a line

  ds::HttpSettings settings;
  try {
    settings = ds::resolve_http_settings(http_flags);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return ds::exit_code::usage;
  }

  try {
    if (health) {
      settings.options.max_attempts = 1;  // a health probe reports, it does not insist
      ds::HttpClient http(settings.options);
      const std::string problem = ds::profiles::health_check(http, settings.base_url, health_actor);
      if (!problem.empty()) {
        spdlog::error("{}", problem);
        return ds::exit_code::health_api;
      }
      spdlog::info("API health check ok: {} answered getProfiles", settings.base_url);
      return ds::exit_code::ok;
    }

    // Users come from stdin, so their total is unknown until the end: done-so-far only. Declared
    // before the client, whose observer refers to it.
    ds::Progress progress("ds-fetch-profiles", common.quiet);
    ds::HttpClient http(settings.options);
    http.set_observer(ds::progress_observer(progress));
    ds::LineReader reader(STDIN_FILENO);
    ds::OutputWriter out(STDOUT_FILENO);
    ds::RecordInput input("ds-fetch-profiles", reader, out, ds::want_user, common.strict);
    ds::profiles::FetcherOptions options;
    options.base_url = settings.base_url;
    options.input_fd = STDIN_FILENO;
    options.progress = &progress;
    ds::profiles::ProfileFetcher fetcher(options, http, out);
    return fetcher.run(reader, input);
  } catch (const ds::BadInputError& e) {
    spdlog::error("{} (--strict)", e.what());
    return ds::exit_code::runtime;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return ds::exit_code::runtime;
  }
}
