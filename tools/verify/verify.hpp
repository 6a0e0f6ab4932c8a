// ds-verify's checks against a live database: one read-only REPEATABLE READ transaction, every
// large read streamed through a cursor, each problem handed to a sink as soon as it is found.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>

#include "ds/clock.hpp"
#include "ds/pg.hpp"
#include "findings.hpp"

namespace ds::verify {

// ds-load's run lock: the ASCII bytes of "ds-load" as a big-endian integer (docs/operations.md,
// "The run locks"); a shard's key is shard_lock_key(this, label). The tests pin it to ds-load's.
constexpr std::int64_t ds_load_lock_key = 0x64732d6c6f6164;

struct Options {
  Micros now = 0;        // the run clock (DS_NOW): "today" for future snapshots
  int stale_days = 3;    // --stale-days: selected on this many run days in a row without a snapshot
  int active_days = 7;   // ACTIVE_DAYS, as ds-select-users: a views row this many days back
  int fetch_rows = 1000; // cursor batch: memory is bounded by this, not by the database
};

struct Summary {
  std::array<std::int64_t, all_checks.size()> problems{};  // by Check
  std::int64_t snapshots_checked = 0;       // latest snapshots compared with their posts
  std::int64_t snapshots_not_ours = 0;      // latest snapshots not written by this pipeline
  std::int64_t snapshots_changed_since = 0; // accounts whose posts were written after it
  std::int64_t handles = 0;                 // users rows whose handles were compared
  std::int64_t runs_in_progress = 0;        // in_progress rows looked at
  std::int64_t runs_too_recent = 0;         // of those, started after the lock probe: next time
  std::int64_t run_days = 0;                // finished runs' days (shard by shard) considered
  std::int64_t accounts_judged = 0;         // active accounts with stale_days covering run days
  bool duplicate_snapshots_by_index = false;  // a unique index on snapshots (did, date) rules them out
  bool untracked_posts_by_key = false;        // a foreign key posts.did -> users: only NULL dids possible
  double elapsed_s = 0;

  std::int64_t total() const;
};

using Sink = std::function<void(const Finding&)>;

// Runs every check; throws PgError when the database cannot be read (not migrated, no rights,
// gone). Nothing is written: the transaction is READ ONLY and rolled back at the end.
Summary verify(PgConnection& c, const Options& o, const Sink& sink);

// The closing line of the text output, and the same as an NDJSON object ({"type":"summary",...}).
std::string summary_text(const Summary& s);
std::string summary_json(const Summary& s);

}  // namespace ds::verify
