// ds-verify's findings: what each check reports about one problem (a text line naming the account
// and both values, and the same as one NDJSON object), and the pure rules the checks judge rows by.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ds/shard.hpp"

namespace ds::verify {

enum class Check {
  snapshot_sums,       // an account's latest snapshot != the sums over its live posts
  future_snapshot,     // a snapshot dated after today (the run clock's UTC date)
  duplicate_snapshot,  // two snapshots of one account on one date
  untracked_post,      // a post whose did is NULL or not in users
  shared_handle,       // one handle (compared case-insensitively) held by two or more accounts
  stale_run,           // a run left in_progress that no ds-load holds the lock of
  stale_account,       // selected on the last N run days, no snapshot on any of them
};
inline constexpr std::array<Check, 7> all_checks = {Check::snapshot_sums,  Check::future_snapshot,
                                                    Check::duplicate_snapshot, Check::untracked_post,
                                                    Check::shared_handle,  Check::stale_run,
                                                    Check::stale_account};
const char* to_string(Check c);

struct Finding {
  Check check;
  std::string text;  // one line without its newline: "<check>  <account>  <what, with both values>"
  std::string json;  // one NDJSON object without its newline: {"type":"finding","check":...}
};

struct Account {
  std::string did;                    // empty when the row has none
  std::optional<std::string> handle;  // NULL when the account is not in users
};

// The four engagement totals a snapshot stores and ds-verify recomputes from posts.
struct Sums {
  std::int64_t likes = 0, replies = 0, quotes = 0, reposts = 0;
  bool operator==(const Sums&) const = default;
};

// Days since 1970-01-01 (UTC dates as the database's `date - DATE '1970-01-01'` gives them).
using Day = std::int32_t;
std::string format_day(Day d);  // "2026-11-03"

Finding snapshot_sums_finding(const Account& a, Day date, const Sums& snapshot, const Sums& live);
Finding future_snapshot_finding(const Account& a, Day date, Day today);
Finding duplicate_snapshot_finding(const Account& a, Day date, std::int64_t rows);
Finding untracked_post_finding(std::string_view uri, const std::optional<std::string>& did);
Finding shared_handle_finding(std::string_view handle, const std::vector<Account>& holders);
Finding stale_run_finding(std::int64_t id, const std::optional<std::string>& shard,
                          std::string_view time_started, std::int64_t lock_key);
Finding stale_account_finding(const Account& a, const std::vector<Day>& selected_days,
                              std::optional<Day> last_snapshot);

// How an account's latest snapshot was judged.
enum class SnapshotVerdict {
  ok,             // equal to the sums over its live posts
  mismatch,       // a problem
  not_ours,       // not written by this pipeline (no backfill marker, or older than it)
  changed_since,  // a post of the account was written after the snapshot: its sums then are unknown
};
struct LatestSnapshot {
  bool written_by_pipeline = false;
  bool posts_changed_since = false;
  Sums snapshot, live;
};
SnapshotVerdict judge_snapshot(const LatestSnapshot& s);

// A finished run (completed or partial) of the run log, on its UTC start date.
struct RunDay {
  Day day;
  std::optional<Shard> shard;  // nullopt: unsharded, covers every account
};

// The last `n` days on which a finished run covered `did` (its shard or an unsharded run), most
// recent first; fewer when there were fewer.
std::vector<Day> covering_days(const std::vector<RunDay>& runs, std::string_view did, int n);

// The earliest day any account's `n` covering days can reach back to (for the query's bounds), or
// nullopt when there are no runs.
std::optional<Day> earliest_covering_day(const std::vector<RunDay>& runs, int n);

// Whether the default selection (a views row dated within `active_days` before the run day; the
// account not skip_user) picked the account on every one of `days`, none of which has a snapshot
// of it. `views` and `snapshots` are the account's dates, in any order.
bool selected_without_snapshot(const std::vector<Day>& days, const std::vector<Day>& views,
                               const std::vector<Day>& snapshots, int active_days);

// Parses PostgreSQL's text form of an integer array ("{1,2,3}", "{}"); throws std::runtime_error.
std::vector<Day> parse_day_array(std::string_view text);

}  // namespace ds::verify
