// ds-aggregate's logic: window sums per user in flight, snapshot = baseline + window.
// Posts and users are forwarded byte for byte; the snapshot follows its user record.
#include "aggregator.hpp"

#include <limits>

#include <spdlog/spdlog.h>

#include "ds/exit_codes.hpp"

namespace ds::aggregate {
namespace {

// Counts are decoded as 0..2^63-1, so a hostile stream could overflow a plain sum (undefined
// behaviour); saturate instead. ds-load clamps to the int columns anyway.
std::int64_t add(std::int64_t a, std::int64_t b) {
  std::int64_t r;
  return __builtin_add_overflow(a, b, &r) ? std::numeric_limits<std::int64_t>::max() : r;
}

}  // namespace

void Aggregator::add_post(const PostRecord& post) {
  Sums& s = open_[post.did];
  s.posts = add(s.posts, 1);
  s.likes = add(s.likes, post.likes);
  s.replies = add(s.replies, post.replies);
  s.quotes = add(s.quotes, post.quotes);
  s.reposts = add(s.reposts, post.reposts);
}

std::optional<SnapshotRecord> Aggregator::finish_user(const UserRecord& user) {
  Sums sums;
  if (auto it = open_.find(user.did); it != open_.end()) {
    sums = it->second;
    open_.erase(it);
  }
  if (user.profile_status != ProfileStatus::ok || !user.profile ||
      user.feed.status != FeedStatus::complete)
    return std::nullopt;
  SnapshotRecord s;
  s.did = user.did;
  s.date = format_date(user.as_of);
  s.followers = user.profile->followers;
  s.following = user.profile->following;
  s.posts = user.profile->posts;
  s.likes = add(user.baseline.likes, sums.likes);
  s.replies = add(user.baseline.replies, sums.replies);
  s.quotes = add(user.baseline.quotes, sums.quotes);
  s.reposts = add(user.baseline.reposts, sums.reposts);
  return s;
}

int run(RecordInput& input, OutputWriter& out, Counters& c, Progress* progress) {
  const double started = monotonic_seconds();
  Aggregator agg;
  InputRecord rec;
  while (input.next(rec)) {
    out.buffer().append(rec.raw);
    out.buffer() += '\n';
    if (rec.type == RecordType::post) {
      ++c.posts;
      agg.add_post(rec.post);
    } else if (rec.type == RecordType::user) {
      ++c.users;
      if (auto snap = agg.finish_user(rec.user)) {
        encode(out.buffer(), *snap);
        ++c.snapshots;
      } else {
        ++c.no_snapshot;
        spdlog::debug("{}: no snapshot (profile {}, feed {})", rec.user.did, to_string(rec.user.profile_status),
                      to_string(rec.user.feed.status));
      }
    }
    out.record_done();
    if (progress && rec.type == RecordType::post) progress->add_posts(1);
    if (progress && rec.type == RecordType::user) progress->add_users();
  }
  c.orphan_users = static_cast<std::int64_t>(agg.users_in_flight());
  if (c.orphan_users > 0)
    spdlog::warn("{} users had posts but no user record (truncated stream?); no snapshot for them", c.orphan_users);

  input.write_upstream_ends();
  EndRecord end;
  end.stage = "ds-aggregate";
  end.set("users", c.users);
  end.set("snapshots", c.snapshots);
  end.set("no_snapshot", c.no_snapshot);
  end.set("posts", c.posts);
  end.set("orphan_users", c.orphan_users);
  end.set("bad_lines", input.bad_lines());
  end.elapsed_s = monotonic_seconds() - started;
  if (input.saw_upstream_end()) encode(out.buffer(), end);
  else spdlog::warn("no end record from upstream: not writing ds-aggregate's end (the run will be recorded failed)");
  out.flush();
  if (progress) progress->finish();  // the summary must not share its line
  spdlog::info("done: {} users, {} snapshots, {} without snapshot, {} posts, {} bad lines, {:.2f}s", c.users,
               c.snapshots, c.no_snapshot, c.posts, input.bad_lines(), end.elapsed_s);
  return input.bad_lines() > 0 ? exit_code::partial : exit_code::ok;
}

}  // namespace ds::aggregate
