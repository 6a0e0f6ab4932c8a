// What a fetching stage's main() does the same way: common and HTTP flags, --health, signals, and
// stdin/stdout wired to the stage, with the documented exit codes. main() adds only its own parts.
#pragma once
#include <functional>
#include <string>

#include <CLI/CLI.hpp>

#include "ds/http.hpp"
#include "ds/ndjson.hpp"
#include "ds/progress.hpp"
#include "ds/record_input.hpp"
#include "ds/stage.hpp"

namespace ds::appview {

// The pieces a stage's run gets, live for the duration of the run.
struct FetchContext {
  const HttpSettings& settings;
  HttpClient& http;
  LineReader& reader;
  OutputWriter& out;
  RecordInput& input;
  Progress& progress;
};

struct FetchProgramSpec {
  std::string name;             // "ds-fetch-feeds"
  std::string description;      // the --help text
  std::string health_endpoint;  // named by --health's help and its success line
  // Resolves the stage's own settings after parsing; throws std::invalid_argument (usage error).
  std::function<void()> resolve;
  // One request for `actor`: empty when the API answered as it should, else why not.
  std::function<std::string(HttpClient&, const std::string& base_url, const std::string& actor)> health_check;
  std::function<int(FetchContext&)> run;
};

// The program's command line, for the stage to add its own options to before run().
class FetchProgram {
 public:
  explicit FetchProgram(FetchProgramSpec spec);
  CLI::App& app() { return app_; }
  // Parses argv and runs --health or the stage. Returns the process exit code.
  int run(int argc, char** argv);

 private:
  FetchProgramSpec spec_;
  CLI::App app_;
  CommonOptions common_;
  HttpFlags http_flags_;
  bool health_ = false;
  std::string health_actor_ = "bsky.app";
};

}  // namespace ds::appview
