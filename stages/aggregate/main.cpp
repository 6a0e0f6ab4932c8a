// ds-aggregate: reads fetched posts and users on stdin, writes them through plus one snapshot
// per complete user (baseline + window totals). See docs/records.md and docs/design.md (the pipeline).
#include <spdlog/spdlog.h>

#include "aggregator.hpp"
#include "ds/exit_codes.hpp"
#include "ds/progress.hpp"
#include "ds/signals.hpp"
#include "ds/stage.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "ds-aggregate: totals each user's window posts plus its stored baseline into one snapshot\n"
      "record per user whose profile and feed are complete. NDJSON stdin -> stdout; every record\n"
      "is passed through unchanged. Exit codes: 0 ok, 1 failure, 2 usage, 3 bad lines skipped,\n"
      "130 stopped by SIGINT/SIGTERM (at once; never inside a line).",
      "ds-aggregate"};
  ds::CommonOptions common;
  ds::add_common_options(app, common);
  if (auto code = ds::parse_command_line(app, argc, argv)) return *code;
  if (!ds::init_program("ds-aggregate", common)) return ds::exit_code::usage;
  // SIGINT/SIGTERM: exit 130 at once, never inside a write (no half line downstream).
  ds::install_stop_signals("ds-aggregate");
  try {
    ds::LineReader reader(0);
    ds::OutputWriter out(1);
    ds::RecordInput input("ds-aggregate", reader, out, ds::want_user | ds::want_post, common.strict);
    // Its input is a stream: the number of users is unknown until the end.
    ds::Progress progress("ds-aggregate", common.quiet);
    ds::aggregate::Counters counters;
    return ds::aggregate::run(input, out, counters, &progress);
  } catch (const ds::BadInputError& e) {
    spdlog::error("{} (--strict: stopping)", e.what());
    return ds::exit_code::runtime;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return ds::exit_code::runtime;
  }
}
