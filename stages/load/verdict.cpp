// Judging a run from the chain of upstream `end` records: which stages finished, what they counted,
// and whether the run is completed, partial or failed (docs/records.md, `end`).
#include <algorithm>

#include "load.hpp"

namespace ds::load {
namespace {

std::int64_t stage_counter(const std::vector<EndRecord>& ends, std::string_view stage,
                           std::string_view name) {
  // Summed rather than taken once: a stream concatenated from shards carries one end per shard.
  std::int64_t total = 0;
  for (const auto& e : ends)
    if (e.stage == stage) total += e.counter(name);
  return total;
}

std::int64_t all_counter(const std::vector<EndRecord>& ends, std::string_view name) {
  std::int64_t total = 0;
  for (const auto& e : ends) total += e.counter(name);
  return total;
}

std::string plural(std::int64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

}  // namespace

StreamVerdict judge_stream(const std::vector<EndRecord>& ends, std::int64_t own_bad_lines) {
  StreamVerdict v;
  auto& c = v.counters;
  const std::int64_t profiles_failed = stage_counter(ends, "ds-fetch-profiles", "failed");
  const std::int64_t feeds_failed = stage_counter(ends, "ds-fetch-feeds", "failed");
  const std::int64_t feeds_capped = stage_counter(ends, "ds-fetch-feeds", "capped");
  c.users_selected = stage_counter(ends, "ds-select-users", "users");
  c.users_gone = stage_counter(ends, "ds-fetch-profiles", "gone") + stage_counter(ends, "ds-fetch-feeds", "gone");
  c.users_failed = profiles_failed + feeds_failed + feeds_capped;
  // Requests, retries and bad lines count whatever stage reported them, known or not.
  c.api_requests = all_counter(ends, "requests");
  c.api_retries = all_counter(ends, "retries");
  c.bad_lines = all_counter(ends, "bad_lines") + own_bad_lines;
  c.requests_get_profiles = all_counter(ends, "requests_get_profiles");
  c.requests_get_author_feed = all_counter(ends, "requests_get_author_feed");
  c.requests_get_posts = all_counter(ends, "requests_get_posts");
  c.path_feed = stage_counter(ends, "ds-fetch-feeds", "path_feed");
  c.path_posts = stage_counter(ends, "ds-fetch-feeds", "path_posts");
  c.path_none = stage_counter(ends, "ds-fetch-feeds", "path_none");
  c.backfills_partial = stage_counter(ends, "ds-fetch-feeds", "backfill_partial");

  std::vector<std::string> missing;
  for (const char* stage : upstream_stages)
    if (std::none_of(ends.begin(), ends.end(), [&](const EndRecord& e) { return e.stage == stage; }))
      missing.emplace_back(stage);
  if (!missing.empty()) {
    v.status = "failed";
    v.error = missing.size() == 1 ? "the stream ended without the end record of "
                                  : "the stream ended without the end records of ";
    for (std::size_t i = 0; i < missing.size(); ++i) v.error += (i ? ", " : "") + missing[i];
    return v;
  }
  if (c.users_failed > 0 || c.bad_lines > 0) {
    v.status = "partial";
    if (c.users_failed > 0)
      v.error = plural(c.users_failed, "user", "users") + " not refreshed (profiles failed " +
                std::to_string(profiles_failed) + ", feeds failed " + std::to_string(feeds_failed) +
                ", feeds capped " + std::to_string(feeds_capped) + ")";
    if (c.bad_lines > 0)
      v.error += (v.error.empty() ? "" : "; ") + plural(c.bad_lines, "bad input line", "bad input lines") + " skipped";
    return v;
  }
  v.status = "completed";
  return v;
}

}  // namespace ds::load
