// What every ds-* program does the same way: common flags, command-line parsing with the
// documented exit codes (--help 0, usage errors 2), .env loading and logging set-up.
#pragma once
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

namespace ds {

struct CommonOptions {
  bool verbose = false;
  bool quiet = false;
  bool strict = false;              // stop at the first bad input line (stages that read stdin)
  std::optional<std::string> config_file;  // --config FILE, else ./.env when present
};

// Adds --verbose/-v, --quiet/-q, --config; `with_strict` adds --strict.
void add_common_options(CLI::App& app, CommonOptions& o, bool with_strict = true);

// Parses argv. Returns an exit code to leave with (0 after --help, 2 after a usage error, with a
// one-line message on stderr), or nullopt to go on.
std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv);

// Loads .env (--config FILE is required to exist; ./.env is optional) and sets up logging.
// Returns false (after logging why) when the configuration is unusable.
bool init_program(const std::string& program, const CommonOptions& o);

}  // namespace ds
