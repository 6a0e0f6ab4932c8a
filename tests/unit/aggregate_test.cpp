// Tests for ds-aggregate's logic: snapshot = baseline + window posts, only for complete users,
// and the state per user is released when its record arrives (memory bounded by users in flight).
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>

#include <catch2/catch.hpp>

#include "aggregator.hpp"
#include "ds/progress.hpp"

namespace {
ds::UserRecord complete_user(const std::string& did) {
  ds::UserRecord u;
  u.did = did;
  u.handle = did + ".test";
  u.as_of = *ds::parse_timestamp("2026-11-29T23:59:59Z");
  u.since = u.as_of - 7 * ds::micros_per_day;
  u.baseline = {10, 100, 20, 3, 4};
  u.profile_status = ds::ProfileStatus::ok;
  u.profile = ds::Profile{u.handle, std::nullopt, std::nullopt, 50, 60, 70};
  u.feed.status = ds::FeedStatus::complete;
  return u;
}
ds::PostRecord post(const std::string& did, int n, std::int64_t likes) {
  return ds::PostRecord{"at://" + did + "/p/" + std::to_string(n), did, 0, 0, likes, 1, 2, 3};
}
}  // namespace

TEST_CASE("snapshot totals are the baseline plus the window's posts") {
  ds::aggregate::Aggregator agg;
  agg.add_post(post("a", 1, 5));
  agg.add_post(post("b", 1, 1000));  // another user in flight must not leak into a's sums
  agg.add_post(post("a", 2, 7));
  CHECK(agg.users_in_flight() == 2);
  const auto s = agg.finish_user(complete_user("a"));
  REQUIRE(s);
  CHECK(s->date == "2026-11-29");  // the UTC date of asOf, not of the wall clock
  CHECK(s->followers == 50);
  CHECK(s->following == 60);
  CHECK(s->posts == 70);  // postsCount from the profile, as the original did
  CHECK(s->likes == 100 + 5 + 7);
  CHECK(s->replies == 20 + 2);
  CHECK(s->quotes == 3 + 4);
  CHECK(s->reposts == 4 + 6);
  CHECK(agg.users_in_flight() == 1);
}

TEST_CASE("no snapshot unless the profile is ok and the feed complete") {
  for (auto feed : {ds::FeedStatus::failed, ds::FeedStatus::capped, ds::FeedStatus::gone, ds::FeedStatus::skipped,
                    ds::FeedStatus::not_fetched}) {
    ds::aggregate::Aggregator agg;
    agg.add_post(post("a", 1, 5));
    auto u = complete_user("a");
    u.feed.status = feed;
    CHECK_FALSE(agg.finish_user(u));
    CHECK(agg.users_in_flight() == 0);  // state released even without a snapshot
  }
  ds::aggregate::Aggregator agg;
  auto gone = complete_user("a");
  gone.profile_status = ds::ProfileStatus::gone;
  gone.profile.reset();
  CHECK_FALSE(agg.finish_user(gone));
}

TEST_CASE("a user without posts in the window gets the baseline; a backfill starts from zero") {
  ds::aggregate::Aggregator agg;
  auto s = agg.finish_user(complete_user("quiet"));
  REQUIRE(s);
  CHECK(s->likes == 100);
  auto fresh = complete_user("new");
  fresh.since.reset();
  fresh.baseline = {};
  agg.add_post(post("new", 1, 3));
  s = agg.finish_user(fresh);
  REQUIRE(s);
  CHECK(s->likes == 3);
  CHECK(s->reposts == 3);
}

TEST_CASE("the stage tells its progress about every user and post it passes on") {
  std::string in;
  ds::encode(in, post("a", 1, 5));
  ds::encode(in, post("a", 2, 7));
  ds::encode(in, complete_user("a"));
  ds::encode(in, complete_user("b"));
  ds::EndRecord upstream;
  upstream.stage = "ds-fetch-feeds";
  ds::encode(in, upstream);
  char path[] = "/tmp/ds-aggregate-test-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::unlink(path);
  REQUIRE(::write(fd, in.data(), in.size()) == static_cast<ssize_t>(in.size()));
  ::lseek(fd, 0, SEEK_SET);
  const int null_fd = ::open("/dev/null", O_WRONLY);
  REQUIRE(null_fd >= 0);

  ds::Progress progress("ds-aggregate", ds::Progress::Settings{});  // silent; counts only
  ds::aggregate::Counters c;
  {
    ds::LineReader reader(fd, "input");
    ds::OutputWriter out(null_fd);
    ds::RecordInput input("ds-aggregate", reader, out, ds::want_user | ds::want_post, false);
    CHECK(ds::aggregate::run(input, out, c, &progress) == 0);
  }
  ::close(fd);
  ::close(null_fd);
  CHECK(c.users == 2);
  CHECK(c.snapshots == 2);
  const auto shown = progress.counts();
  CHECK(shown.users == 2);
  CHECK(shown.posts == 2);
  CHECK(shown.users_total == -1);  // a stream: the total is not known
  CHECK(shown.requests == 0);
}
