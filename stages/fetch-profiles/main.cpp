// ds-fetch-profiles: stdin `user` records -> the same users with profileStatus/profile, via
// app.bsky.actor.getProfiles (25 per call). Wiring and exit codes only; logic in profile_fetcher.
#include <unistd.h>

#include "ds/appview/fetch_program.hpp"
#include "profile_fetcher.hpp"

int main(int argc, char** argv) {
  ds::appview::FetchProgram program({
      "ds-fetch-profiles",
      "Reads `user` records on stdin, adds each account's Bluesky profile (getProfiles, 25 accounts "
      "per call), writes them to stdout in input order. Exit: 0 ok, 1 runtime failure, 2 usage, 3 "
      "some users failed or input lines were bad, 6 --health failed.",
      "getProfiles",
      nullptr,
      ds::profiles::health_check,
      [](ds::appview::FetchContext& c) {
        ds::profiles::FetcherOptions options;
        options.base_url = c.settings.base_url;
        options.input_fd = STDIN_FILENO;
        options.progress = &c.progress;
        ds::profiles::ProfileFetcher fetcher(options, c.http, c.out);
        return fetcher.run(c.reader, c.input);
      },
  });
  return program.run(argc, argv);
}
