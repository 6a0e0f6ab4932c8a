// ds-aggregate's logic: folds each user's window posts into running sums and, when the user's
// record arrives, turns baseline + sums into that day's snapshot. O(users in flight) memory.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>

#include "ds/ndjson.hpp"
#include "ds/progress.hpp"
#include "ds/record_input.hpp"
#include "ds/records.hpp"

namespace ds::aggregate {

class Aggregator {
 public:
  // Adds a post to its author's running window sums. Every post counts: ds-fetch-feeds emits only
  // posts inside the user's window (and no duplicates), which is what makes baseline + sums right.
  void add_post(const PostRecord& post);

  // The user's record closes its posts: returns the snapshot when the profile is `ok` and the
  // feed `complete`, else nothing (an incomplete feed must not produce a wrong snapshot).
  std::optional<SnapshotRecord> finish_user(const UserRecord& user);

  // Users whose posts arrived but whose user record never did (a truncated stream).
  std::size_t users_in_flight() const { return open_.size(); }

 private:
  struct Sums {
    std::int64_t posts = 0, likes = 0, replies = 0, quotes = 0, reposts = 0;
  };
  std::unordered_map<std::string, Sums> open_;
};

struct Counters {
  std::int64_t users = 0, snapshots = 0, no_snapshot = 0, posts = 0, orphan_users = 0;
};

// Reads the stream, forwards every record, writes a snapshot after each complete user, and ends
// with the upstream end records and its own (when upstream's was seen). Returns the exit code.
// `progress`, when given, is told about each user and post passed on.
int run(RecordInput& input, OutputWriter& out, Counters& counters, Progress* progress = nullptr);

}  // namespace ds::aggregate
