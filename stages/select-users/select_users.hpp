// ds-select-users' logic: one set-based, streamed query that picks the users of a run and builds
// their `user` records (stored profile, refresh window, baseline of stored posts outside it).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ds/appview/requests.hpp"
#include "ds/clock.hpp"
#include "ds/pg.hpp"
#include "ds/records.hpp"
#include "ds/shard.hpp"

namespace ds::select_users {

// A window of fewer stored posts than this travels as its URIs (`windowUris`): getPosts takes 25
// URIs a request, a feed page 100 posts, so at 25 or more the feed is as cheap (docs/request-economy.md).
constexpr auto max_window_uris = static_cast<std::int64_t>(appview::max_posts_per_request);

enum class Mode {
  active,  // users with a views row dated within active_days of as_of (the original's default)
  all,     // every user (--all, the original's --simple-query)
  dids,    // the accounts named with --did
};

struct Options {
  Mode mode = Mode::active;
  std::vector<std::string> dids;      // for Mode::dids
  std::int64_t active_days = 7;       // ACTIVE_DAYS
  std::int64_t window_days = 7;       // TIME_RANGE_DAYS: since = as_of - window_days
  Micros as_of = 0;                   // the run clock (ds::now())
  int fetch_rows = 1000;              // cursor batch: memory is bounded by this, not by the users
  // --shard K/N: only users whose DID hashes to shard K (ds/shard.hpp). Filtered here rather than
  // in SQL so the one hash definition is the C++ one; the extra rows read cost seconds, not requests.
  std::optional<Shard> shard;
};

struct Counters {
  std::int64_t users = 0;           // user records emitted
  std::int64_t backfill = 0;        // of those, since = null (no backfill marker yet)
  std::int64_t backfill_resumed = 0;  // of those, a backfill in progress (backfillCursor)
  std::int64_t incremental = 0;     // of those, with a refresh window
  std::int64_t skipped = 0;         // matched the selection but skip_user = true
  std::int64_t missing = 0;         // --did accounts not in users
  std::int64_t baseline_posts = 0;  // stored posts covered by the emitted baselines
  std::int64_t window_lists = 0;    // incremental users whose window's URIs were carried
  std::int64_t other_shards = 0;    // matched the selection but belong to another shard
  bool sharded = false;             // the end record carries other_shards only for sharded runs
};

using Sink = std::function<void(const UserRecord&)>;

// Streams the selected users, ordered by did, to `sink`, inside one read-only REPEATABLE READ
// transaction (one consistent snapshot). Throws PgError (and whatever `sink` throws).
Counters select(PgConnection& c, const Options& o, const Sink& sink);

// The stream's first line: which shard was selected (docs/records.md, `selection`).
SelectionRecord selection_record(const Options& o);

// The stage's end record from its counters.
EndRecord end_record(const Counters& k, double elapsed_s);

// Empty when the database answers and has every migration this binary knows; otherwise why not
// ("N migration(s) pending: 003_run_log_ids; run ds-migrate"). Throws PgError.
std::string schema_problem(PgConnection& c);

}  // namespace ds::select_users
