// FetchProgram::run: the wiring both fetching stages' main() repeated: parse, configure, --health,
// signals, stdin/stdout, progress, and exceptions mapped to exit codes (README, "Exit codes").
#include "ds/appview/fetch_program.hpp"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include "ds/exit_codes.hpp"
#include "ds/signals.hpp"

namespace ds::appview {

FetchProgram::FetchProgram(FetchProgramSpec spec) : spec_(std::move(spec)), app_(spec_.description) {
  app_.name(spec_.name);
  add_common_options(app_, common_);
  add_http_flags(app_, http_flags_);
  app_.add_flag("--health", health_, "Check that the API answers (one " + spec_.health_endpoint + " call) and exit");
  app_.add_option("--health-actor", health_actor_, "Account asked about by --health (default bsky.app)");
}

int FetchProgram::run(int argc, char** argv) {
  if (auto rc = parse_command_line(app_, argc, argv)) return *rc;
  if (!init_program(spec_.name, common_)) return exit_code::usage;
  install_stop_signals(spec_.name.c_str());  // SIGINT/SIGTERM: exit 130, never inside a line

  HttpSettings settings;
  try {
    settings = resolve_http_settings(http_flags_);
    if (spec_.resolve) spec_.resolve();
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return exit_code::usage;
  }

  try {
    if (health_) {
      settings.options.max_attempts = 1;  // a health probe reports, it does not insist
      HttpClient http(settings.options);
      const std::string problem = spec_.health_check(http, settings.base_url, health_actor_);
      if (!problem.empty()) {
        spdlog::error("{}", problem);
        return exit_code::health_api;
      }
      spdlog::info("API health check ok: {} answered {}", settings.base_url, spec_.health_endpoint);
      return exit_code::ok;
    }

    // Users come from stdin, so their total is unknown until the end: done-so-far only. Declared
    // before the client, whose observer refers to it.
    Progress progress(spec_.name, common_.quiet);
    HttpClient http(settings.options);
    http.set_observer(progress_observer(progress));
    LineReader reader(STDIN_FILENO);
    OutputWriter out(STDOUT_FILENO);
    RecordInput input(spec_.name, reader, out, want_user, common_.strict);
    FetchContext context{settings, http, reader, out, input, progress};
    return spec_.run(context);
  } catch (const BadInputError& e) {
    spdlog::error("{} (--strict)", e.what());
    return exit_code::runtime;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return exit_code::runtime;
  }
}

}  // namespace ds::appview
