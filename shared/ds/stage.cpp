// Command-line and start-up conventions common to every ds-* program (see docs/operations.md).
// CLI11's own exit codes are replaced by ours: --help 0, any usage error 2.
#include "ds/stage.hpp"

#include <iostream>

#include "ds/config.hpp"
#include "ds/exit_codes.hpp"
#include "ds/log.hpp"

namespace ds {

void add_common_options(CLI::App& app, CommonOptions& o, bool with_strict) {
  app.add_flag("-v,--verbose", o.verbose, "Debug logging (overrides LOG_LEVEL)");
  app.add_flag("-q,--quiet", o.quiet, "Only warnings and errors on stderr");
  app.add_option("--config", o.config_file, "Read settings from this .env file (default: ./.env if present)");
  if (with_strict) app.add_flag("--strict", o.strict, "Stop at the first bad input line (exit 1) instead of skipping it");
}

std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return exit_code::ok;
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    return exit_code::ok;
  } catch (const CLI::ParseError& e) {
    std::cerr << app.get_name() << ": " << e.what() << " (see --help)\n";
    return exit_code::usage;
  }
  return std::nullopt;
}

bool init_program(const std::string& program, const CommonOptions& o) {
  // Logging first with the environment's level so .env problems are reported, then again once
  // .env may have supplied LOG_LEVEL.
  init_logging(program, o.verbose, o.quiet);
  try {
    if (o.config_file) load_dotenv(*o.config_file, true);
    else load_dotenv(".env", false);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return false;
  }
  init_logging(program, o.verbose, o.quiet);
  return true;
}

}  // namespace ds
