// The record contract between stages (docs/records.md, contract version 3): one JSON object per
// line with a "type"; decode from a line, encode back to a line. Unknown types pass through as text.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ds/clock.hpp"

namespace ds {

// The version this program writes, and the oldest it reads: a version-1 stream (saved before
// `selection` records existed) still replays.
constexpr int record_contract_version = 3;
constexpr int oldest_record_contract_version = 1;

enum class RecordType { selection, user, post, snapshot, end, other };

// What ds-select-users selected, written first so that ds-load knows it before the first post:
// the shard (K/N), nullopt for an unsharded selection.
struct SelectionRecord {
  std::optional<std::string> shard;
  bool operator==(const SelectionRecord&) const = default;
};

// Engagement totals: a baseline, a window's sum, a snapshot's figures.
struct Totals {
  std::int64_t posts = 0;  // number of stored posts the totals cover
  std::int64_t likes = 0;
  std::int64_t replies = 0;
  std::int64_t quotes = 0;
  std::int64_t reposts = 0;
  bool operator==(const Totals&) const = default;
};

// What getProfiles said about an account.
struct Profile {
  std::string handle;
  std::optional<std::string> display_name;
  std::optional<std::string> avatar;
  std::int64_t followers = 0;
  std::int64_t following = 0;
  std::int64_t posts = 0;
  // False when the API sent no postsCount (the lexicon makes it optional): `posts` then reads 0
  // without saying the account has none, so the request economy may not trust it.
  bool posts_known = true;
  bool operator==(const Profile&) const = default;
};

// Outcome of fetching one user's profile (set by ds-fetch-profiles).
enum class ProfileStatus { not_fetched, ok, gone, failed };
// Outcome of fetching one user's feed (set by ds-fetch-feeds).
// `partial`: a backfill stopped at the run's limit (docs/request-economy.md, progressive backfill).
enum class FeedStatus { not_fetched, complete, capped, gone, failed, skipped, partial };

// The last snapshot this pipeline wrote for the account from a complete fetch (set by select).
struct LastSnapshot {
  std::string date;        // YYYY-MM-DD
  std::int64_t posts = 0;  // the profile's postsCount that day
  bool operator==(const LastSnapshot&) const = default;
};

struct FeedOutcome {
  FeedStatus status = FeedStatus::not_fetched;
  std::int64_t pages = 0;
  std::int64_t posts = 0;      // own posts emitted
  std::int64_t requests = 0;   // HTTP requests sent for this user, retries included
  std::optional<std::string> error;
  std::string path;            // "feed", "posts" (getPosts refresh) or "none" (no request); empty: none taken
  std::string reason;          // why that path (fetch-feeds' PathReason, docs/records.md); empty: not said
  std::optional<std::string> cursor;  // `partial`: the getAuthorFeed cursor the next run continues from
  bool operator==(const FeedOutcome&) const = default;
};

struct UserRecord {
  std::string did;
  std::string handle;                       // stored handle
  std::optional<std::string> display_name;  // stored displayName
  std::optional<std::string> avatar;        // stored avatar
  Micros as_of = 0;                         // the run's clock when selected; fixes the snapshot date
  std::optional<Micros> since;              // refresh window start; nullopt = full backfill
  Totals baseline;                          // stored live posts outside the window
  std::optional<LastSnapshot> last_snapshot;             // for the request economy (docs/records.md)
  std::optional<std::vector<std::string>> window_uris;  // stored live window posts, when few
  // YYYY-MM-DD: the newest complete window feed taken for a reason of the account's own
  // (restarts_refresh_clock); its next full refresh is due one refresh period after it
  // (FULL_REFRESH_DAYS, or the window when shorter: fetch-feeds' refresh_period_days).
  std::optional<std::string> refresh_clock;
  // A backfill in progress (select): where its history continues and how many posts earlier runs
  // stored. Set only with a `since`, which then also covers everything after those runs.
  std::optional<std::string> backfill_cursor;
  std::int64_t backfill_posts = 0;
  ProfileStatus profile_status = ProfileStatus::not_fetched;
  std::optional<Profile> profile;
  std::optional<std::string> profile_error;
  FeedOutcome feed;
  bool operator==(const UserRecord&) const = default;
};

struct PostRecord {
  std::string uri;
  std::string did;
  Micros created_at = 0;  // record.createdAt, or indexedAt when createdAt does not parse
  Micros sort_at = 0;     // least(createdAt, indexedAt): the key the API pages by
  std::int64_t likes = 0;
  std::int64_t replies = 0;
  std::int64_t quotes = 0;
  std::int64_t reposts = 0;
  bool operator==(const PostRecord&) const = default;
};

struct SnapshotRecord {
  std::string did;
  std::string date;  // YYYY-MM-DD, UTC date of the user's as_of
  std::int64_t followers = 0;
  std::int64_t following = 0;
  std::int64_t posts = 0;
  std::int64_t likes = 0;
  std::int64_t replies = 0;
  std::int64_t quotes = 0;
  std::int64_t reposts = 0;
  bool operator==(const SnapshotRecord&) const = default;
};

// Written once by a stage that finished cleanly after seeing its upstream's end record.
struct EndRecord {
  std::string stage;
  int contract = record_contract_version;
  std::vector<std::pair<std::string, std::int64_t>> counters;  // in insertion order
  double elapsed_s = 0;
  std::int64_t counter(std::string_view name) const;  // 0 when absent
  void set(std::string_view name, std::int64_t value);
  void add(std::string_view name, std::int64_t delta);
  bool operator==(const EndRecord&) const = default;
};

const char* to_string(ProfileStatus s);
const char* to_string(FeedStatus s);

// Whether a complete feed taken for `reason` (FeedOutcome::reason) restarts the account's
// full-refresh clock (docs/request-economy.md, "The full refresh"): yes for reasons of the
// account's own (its postsCount changed, a window post went missing, its refresh was due, its
// window is long), no for causes many accounts share on one day (a backfill, the economy off, a
// failed getPosts, no previous snapshot), whose clocks would otherwise all come due together.
bool restarts_refresh_clock(std::string_view reason);

// Encoders append one line, newline included.
void encode(std::string& out, const SelectionRecord& r);
void encode(std::string& out, const UserRecord& r);
void encode(std::string& out, const PostRecord& r);
void encode(std::string& out, const SnapshotRecord& r);
void encode(std::string& out, const EndRecord& r);

}  // namespace ds
