// Process exit codes shared by every ds-* program, documented in docs/operations.md.
// Cron and the pipeline script branch on these, so their values never change.
#pragma once

namespace ds::exit_code {
constexpr int ok = 0;            // success
constexpr int runtime = 1;       // a runtime failure (database, network, I/O, --strict bad input)
constexpr int usage = 2;         // bad flags or configuration
constexpr int partial = 3;       // finished, but some users failed or some input lines were skipped
constexpr int locked = 4;        // another run holds the run lock (ds-load)
constexpr int health_db = 5;     // --health: the database is unreachable or not migrated
constexpr int health_api = 6;    // --health: the API does not answer
constexpr int interrupted = 130; // stopped by SIGINT/SIGTERM
}  // namespace ds::exit_code
