// Tests for the fake AppView's generated dataset: determinism, the feed invariants the pipeline
// relies on (sort order, unique sort keys, window-only deletions), that every oddity exists, and that
// posts the real AppView would not index are in no answer while self-reposts are.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <regex>
#include <set>
#include <string>

#include "dataset.hpp"
#include "ds/clock.hpp"

using ds::Micros;
using ds::fake::CreatedAtKind;
using ds::fake::Dataset;
using ds::fake::DatasetParams;
using ds::fake::FeedItem;

namespace {

constexpr Micros kDay = ds::micros_per_day;

const Dataset& shared_dataset() {
  static const Dataset ds{DatasetParams{}};
  return ds;
}

// Feeds are expensive to expand (the 10,600-post account), so each (user, day) is built once.
const std::vector<FeedItem>& feed(int user, int day) {
  static std::map<std::pair<int, int>, std::vector<FeedItem>> cache;
  auto key = std::make_pair(user, day);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, shared_dataset().author_feed(user, day)).first;
  return it->second;
}

std::int64_t own_posts(const std::vector<FeedItem>& items) {
  return std::count_if(items.begin(), items.end(), [](const FeedItem& i) { return i.is_own_post(); });
}

Micros floor_ms(Micros t) { return (t / 1000 - (t % 1000 < 0 ? 1 : 0)) * 1000; }

}  // namespace

TEST_CASE("same params give the same dataset, another seed another one", "[fake]") {
  const Dataset a{DatasetParams{}};
  const Dataset b{DatasetParams{}};
  DatasetParams other;
  other.seed = 2;
  const Dataset c{other};
  REQUIRE(a.users().size() == b.users().size());
  for (std::size_t i = 0; i < a.users().size(); ++i) {
    CHECK(a.users()[i].did == b.users()[i].did);
    CHECK(a.users()[i].did != c.users()[i].did);
  }
  CHECK(a.seed_sql(1) == b.seed_sql(1));
  for (int user : {1, 14, 30, static_cast<int>(a.users().size()) - 1}) {
    for (int day : {1, 2}) {
      const auto fa = a.author_feed(user, day);
      const auto fb = b.author_feed(user, day);
      REQUIRE(fa.size() == fb.size());
      for (std::size_t i = 0; i < fa.size(); ++i) {
        CHECK(fa[i].post.uri == fb[i].post.uri);
        CHECK(fa[i].sort_at == fb[i].sort_at);
        CHECK(fa[i].post.created_at_raw == fb[i].post.created_at_raw);
        CHECK(fa[i].post.text == fb[i].post.text);
        CHECK(fa[i].post.counts.likes == fb[i].post.counts.likes);
      }
      const auto pa = a.profile(user, day);
      const auto pb = b.profile(user, day);
      REQUIRE(pa.has_value() == pb.has_value());
      if (pa) {
        CHECK(pa->handle == pb->handle);
        CHECK(pa->display_name == pb->display_name);
        CHECK(pa->followers == pb->followers);
      }
    }
  }
}

TEST_CASE("feeds are newest first with distinct millisecond sort keys and consistent timestamps", "[fake]") {
  const Dataset& ds = shared_dataset();
  std::size_t checked = 0, self_reposts = 0;
  for (const auto& u : ds.users()) {
    for (int day : {1, 2}) {
      const auto& items = feed(u.index, day);
      std::set<std::string> uris;  // own posts, and (marked) reposts: a self-repost is the post again
      for (std::size_t i = 0; i < items.size(); ++i) {
        const FeedItem& it = items[i];
        if (i > 0) REQUIRE(floor_ms(it.sort_at) < floor_ms(items[i - 1].sort_at));
        REQUIRE(uris.insert((it.is_own_post() ? "" : "repost of ") + it.post.uri).second);
        REQUIRE(ds::fake::appview_indexes(it.post.kind));
        REQUIRE(it.post.indexed_at <= ds.now_of_day(day));
        REQUIRE(ds::parse_timestamp(it.post.indexed_at_text) == it.post.indexed_at);
        REQUIRE(it.post.uri.rfind("at://" + it.post.author_did + "/app.bsky.feed.post/", 0) == 0);
        // The documented truth agrees with the project's own parser on every raw createdAt.
        const auto parsed = it.post.created_at_raw ? ds::parse_timestamp(*it.post.created_at_raw) : std::nullopt;
        REQUIRE(parsed == it.post.created_at);
        if (it.is_repost_of_other()) {
          REQUIRE(it.post.author_did != u.did);
          REQUIRE(it.sort_at <= ds.now_of_day(day));
        } else if (it.is_self_repost()) {
          // Reposted an hour or more after it was indexed; the own item is in the same feed.
          REQUIRE(it.post.author_did == u.did);
          REQUIRE(it.by == u.index);
          REQUIRE(it.sort_at >= it.post.indexed_at + 3600 * ds::micros_per_second);
          REQUIRE(it.sort_at <= ds.now_of_day(day));
          REQUIRE(std::any_of(items.begin(), items.end(), [&](const FeedItem& x) {
            return x.is_own_post() && x.post.uri == it.post.uri && x.sort_at == it.post.sort_at;
          }));
          ++self_reposts;
        } else {
          REQUIRE(it.post.author_did == u.did);
          const Micros expect = parsed ? std::min(*parsed, it.post.indexed_at) : it.post.indexed_at;
          REQUIRE(it.sort_at == expect);
          REQUIRE(it.post.sort_at == expect);
        }
        ++checked;
      }
    }
  }
  CHECK(checked > 20000);
  CHECK(self_reposts >= 20);
}

TEST_CASE("counts and followers never decrease from day 1 to day 2, and some grow", "[fake]") {
  const Dataset& ds = shared_dataset();
  std::size_t grew = 0, compared = 0;
  for (const auto& u : ds.users()) {
    if (!ds.exists(u.index, 2)) continue;
    std::map<std::string, ds::fake::Counts> before;
    for (const auto& it : feed(u.index, 1)) before[it.post.uri] = it.post.counts;
    for (const auto& it : feed(u.index, 2)) {
      auto b = before.find(it.post.uri);
      if (b == before.end()) continue;
      const auto& c1 = b->second;
      const auto& c2 = it.post.counts;
      REQUIRE(c2.likes.value_or(0) >= c1.likes.value_or(0));
      REQUIRE(c2.replies.value_or(0) >= c1.replies.value_or(0));
      REQUIRE(c2.reposts.value_or(0) >= c1.reposts.value_or(0));
      REQUIRE(c2.quotes.value_or(0) >= c1.quotes.value_or(0));
      REQUIRE(c1.quotes.has_value() == c2.quotes.has_value());
      if (c2.likes.value_or(0) > c1.likes.value_or(0)) ++grew;
      ++compared;
    }
    const auto p1 = ds.profile(u.index, 1);
    const auto p2 = ds.profile(u.index, 2);
    REQUIRE(p1);
    REQUIRE(p2);
    if (p1->followers) CHECK(*p2->followers > *p1->followers);
    CHECK(p2->follows.value_or(0) >= p1->follows.value_or(0));
    if (p2->posts) CHECK(*p2->posts == own_posts(feed(u.index, 2)));
  }
  CHECK(compared > 10000);
  CHECK(grew > 100);
}

// The kinds Bluesky's AppView indexes are served, some inside the day-1 and day-2 windows; the
// kinds it does not (no time zone, not a date, no createdAt) exist only as repository records.
TEST_CASE("every createdAt oddity exists: the indexed ones in feeds, the others as records only", "[fake]") {
  const Dataset& ds = shared_dataset();
  std::map<CreatedAtKind, int> served, recent, records, recent_records;
  const std::regex kMicros(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)");
  const std::regex kNoTz(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})");
  const std::regex kNoFraction(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)");
  const std::regex kMillis(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");
  const Micros window = ds.now_of_day(1) - 7 * kDay;
  // Check each shape from the raw text itself, not from the label the generator gave it.
  const auto check_shape = [&](const ds::fake::Post& p, Micros sort_at) {
    const std::string raw = p.created_at_raw.value_or("");
    switch (p.kind) {
      case CreatedAtKind::Microseconds: REQUIRE(std::regex_match(raw, kMicros)); break;
      case CreatedAtKind::OffsetZero: REQUIRE(raw.size() > 6); REQUIRE(raw.substr(raw.size() - 6) == "+00:00"); break;
      case CreatedAtKind::OffsetOther: REQUIRE(raw.substr(raw.size() - 6) == "-05:00"); break;
      case CreatedAtKind::NoTimezone: REQUIRE(std::regex_match(raw, kNoTz)); break;
      case CreatedAtKind::NoFraction: REQUIRE(std::regex_match(raw, kNoFraction)); break;
      case CreatedAtKind::Invalid:
      case CreatedAtKind::InvalidCalendar:
        REQUIRE(!raw.empty());
        REQUIRE_FALSE(ds::parse_timestamp(raw));
        REQUIRE(sort_at == p.indexed_at);
        break;
      case CreatedAtKind::FarPast: REQUIRE(raw == "0001-01-01T00:00:00.000Z"); REQUIRE(sort_at < 0); break;
      case CreatedAtKind::Epoch: REQUIRE(raw == "1970-01-01T00:00:00.000Z"); REQUIRE(sort_at == 0); break;
      case CreatedAtKind::Future:
        REQUIRE(*ds::parse_timestamp(raw) > p.indexed_at + 300 * kDay);
        REQUIRE(sort_at == p.indexed_at);
        break;
      case CreatedAtKind::Skew: {
        const Micros ahead = *ds::parse_timestamp(raw) - p.indexed_at;
        REQUIRE(ahead > 0);
        REQUIRE(ahead < 10 * ds::micros_per_second);
        REQUIRE(sort_at == p.indexed_at);
        break;
      }
      case CreatedAtKind::Missing: REQUIRE_FALSE(p.created_at_raw); break;
      case CreatedAtKind::Normal:
        // Most posts are normal; matching every one costs seconds in a Debug build.
        if (served[p.kind] % 50 == 1) REQUIRE(std::regex_match(raw, kMillis));
        break;
    }
  };
  for (const auto& u : ds.users()) {
    if (!u.registered) continue;
    for (const auto& it : feed(u.index, 2)) {
      if (!it.is_own_post()) continue;
      ++served[it.post.kind];
      if (it.sort_at >= window) ++recent[it.post.kind];
      check_shape(it.post, it.sort_at);
    }
    for (const auto& p : ds.unindexed_posts(u.index, 2)) {
      ++records[p.kind];
      if (p.indexed_at >= window) ++recent_records[p.kind];
      check_shape(p, p.sort_at);
    }
  }
  for (int k = 0; k < ds::fake::kCreatedAtKinds; ++k) {
    const auto kind = static_cast<CreatedAtKind>(k);
    INFO("kind " << ds::fake::to_string(kind));
    if (ds::fake::appview_indexes(kind)) {
      CHECK(served[kind] >= 2);
      CHECK(records[kind] == 0);
      // Far-past createdAt sorts at the very end, so only the others can fall inside a window.
      if (kind != CreatedAtKind::FarPast && kind != CreatedAtKind::Epoch) CHECK(recent[kind] >= 1);
    } else {
      CHECK(served[kind] == 0);
      CHECK(records[kind] >= 2);
      CHECK(recent_records[kind] >= 1);
    }
  }
  // Exactly the three shapes the lexicon's datetime rejects, or a record without one, go unindexed.
  CHECK_FALSE(ds::fake::appview_indexes(CreatedAtKind::NoTimezone));
  CHECK_FALSE(ds::fake::appview_indexes(CreatedAtKind::Invalid));
  CHECK_FALSE(ds::fake::appview_indexes(CreatedAtKind::Missing));
  CHECK(ds::fake::appview_indexes(CreatedAtKind::InvalidCalendar));
  CHECK(ds::fake::appview_indexes(CreatedAtKind::FarPast));
  CHECK(ds::fake::appview_indexes(CreatedAtKind::Epoch));

  // Account 0's first day-1 posts show the oddities side by side: served, or a record only.
  std::set<CreatedAtKind> showcase_served, showcase_records;
  for (const auto& it : feed(0, 1))
    if (it.is_own_post() && it.post.created_day == 1 && it.post.kind != CreatedAtKind::Normal)
      showcase_served.insert(it.post.kind);
  for (const auto& p : ds.unindexed_posts(0, 1))
    if (p.created_day == 1) showcase_records.insert(p.kind);
  CHECK(showcase_served == std::set<CreatedAtKind>{CreatedAtKind::Microseconds, CreatedAtKind::OffsetZero,
                                                   CreatedAtKind::OffsetOther, CreatedAtKind::NoFraction,
                                                   CreatedAtKind::InvalidCalendar, CreatedAtKind::Future,
                                                   CreatedAtKind::Skew});
  CHECK(showcase_records ==
        std::set<CreatedAtKind>{CreatedAtKind::NoTimezone, CreatedAtKind::Invalid, CreatedAtKind::Missing});
}

// What the real AppView does with a post it never indexed: no feed item (own or repost), no
// getPosts answer, not in postsCount, notFoundPost as a reply's parent or root. Each check fails
// if the dataset served one.
TEST_CASE("posts the AppView never indexed are in no feed, getPosts, postsCount, reply or repost", "[fake]") {
  const Dataset& ds = shared_dataset();
  for (int day : {1, 2}) {
    INFO("day " << day);
    std::set<std::string> unindexed;
    for (const auto& u : ds.users())
      for (const auto& p : ds.unindexed_posts(u.index, day)) {
        REQUIRE_FALSE(ds::fake::appview_indexes(p.kind));
        REQUIRE_FALSE(ds.find_post(p.uri, day));  // getPosts leaves it out
        unindexed.insert(p.uri);
      }
    REQUIRE(unindexed.size() >= 20);
    int parents_not_found = 0;
    for (const auto& u : ds.users()) {
      if (!ds.exists(u.index, day)) continue;
      const auto& items = feed(u.index, day);
      std::int64_t own = 0;
      for (const FeedItem& it : items) {
        REQUIRE(unindexed.count(it.post.uri) == 0);
        own += it.is_own_post();
        if (!it.post.reply) continue;
        if (unindexed.count(it.post.reply->parent_uri)) {
          CHECK_FALSE(it.post.reply->parent);
          ++parents_not_found;
        }
        if (unindexed.count(it.post.reply->root_uri)) CHECK_FALSE(it.post.reply->root);
      }
      const auto prof = ds.profile(u.index, day);
      if (prof && prof->posts) CHECK(*prof->posts == own);
      if (const auto pin = ds.pinned_item(u.index, day)) CHECK(unindexed.count(pin->post.uri) == 0);
    }
    // Threads do run through such posts: their replies show the parent as not found.
    CHECK(parents_not_found >= 1);
  }
}

// Real feeds hold self-reposts (docs/real-appview.md, findings 3 and 11): the same post again, at
// the repost's time. The echo account has the page shape of the cursor bug on every day.
TEST_CASE("self-reposts: some accounts have them; the echo account's ends day d's first page", "[fake]") {
  const Dataset& ds = shared_dataset();
  int accounts = 0, ordinary = 0;
  for (const auto& u : ds.users()) {
    if (!u.registered || !ds.exists(u.index, 2)) continue;
    const auto& items = feed(u.index, 2);
    const auto n = std::count_if(items.begin(), items.end(), [](const FeedItem& i) { return i.is_self_repost(); });
    if (n == 0) continue;
    ++accounts;
    ordinary += u.index > 22;
    // Counted once: postsCount is the own posts, not the items.
    CHECK(ds.profile(u.index, 2)->posts.value_or(own_posts(items)) == own_posts(items));
  }
  CHECK(ordinary >= 3);
  CHECK(accounts <= ds.registered_count() / 2);  // a modest share, as in real feeds

  namespace echo = ds::fake::echo;
  CHECK(ds.users()[echo::kAccount].active);
  for (int day = 1; day <= 4; ++day) {
    INFO("day " << day);
    const auto items = ds.author_feed(echo::kAccount, day);
    const Micros since = ds.now_of_day(day) - 7 * kDay;
    REQUIRE(items.size() > static_cast<std::size_t>(echo::kPageItem));
    for (int i = 0; i < echo::kPageItem - 1; ++i) {
      CHECK(items[static_cast<std::size_t>(i)].is_own_post());
      CHECK(items[static_cast<std::size_t>(i)].post.created_day == day);
    }
    // The full page's last item: a self-repost inside the window of a post older than it...
    const FeedItem& last = items[echo::kPageItem - 1];
    CHECK(last.is_self_repost());
    CHECK(last.sort_at > since);
    CHECK(last.post.sort_at < since);
    // ...and the next page opens with that day's own posts, inside the window.
    const FeedItem& next = items[echo::kPageItem];
    CHECK(next.is_own_post());
    CHECK(next.post.created_day == day);
    CHECK(next.sort_at > since);
  }
  // The same self-repost stays where it was on later days.
  const auto day1 = ds.author_feed(echo::kAccount, 1), day3 = ds.author_feed(echo::kAccount, 3);
  const FeedItem& first = day1[echo::kPageItem - 1];
  CHECK(std::any_of(day3.begin(), day3.end(), [&](const FeedItem& i) {
    return i.is_self_repost() && i.post.uri == first.post.uri && i.sort_at == first.sort_at;
  }));
}

TEST_CASE("post volumes: one account over 10,500 posts, others over 1,000, some with none", "[fake]") {
  const Dataset& ds = shared_dataset();
  int over_10500 = 0, over_1000 = 0, empty = 0, reposts_only = 0;
  for (const auto& u : ds.users()) {
    if (!u.registered || !ds.exists(u.index, 1)) continue;
    const auto& items = feed(u.index, 1);
    const auto own = own_posts(items);
    if (own > 10500) ++over_10500;
    if (own > 1000) ++over_1000;
    if (items.empty()) ++empty;
    if (own == 0 && !items.empty()) ++reposts_only;
  }
  CHECK(over_10500 == 1);
  CHECK(over_1000 >= 3);
  CHECK(empty >= 1);
  CHECK(reposts_only >= 1);

  DatasetParams half;
  half.posts_scale = 0.5;
  const Dataset small{half};
  const auto scaled = own_posts(small.author_feed(0, 1));
  const auto full = own_posts(feed(0, 1));
  CHECK(scaled > full * 4 / 10);
  CHECK(scaled < full * 6 / 10);
}

TEST_CASE("handles move on day 2, including a swap between two registered active accounts", "[fake]") {
  const Dataset& ds = shared_dataset();
  bool swap = false;
  for (const auto& a : ds.users())
    for (const auto& b : ds.users()) {
      if (a.index == b.index || !a.registered || !b.registered || !a.active || !b.active) continue;
      if (!ds.exists(a.index, 2) || !ds.exists(b.index, 2)) continue;
      if (ds.handle_at(a.index, 2) == ds.handle_at(b.index, 1) && ds.handle_at(b.index, 2) != ds.handle_at(b.index, 1)) {
        swap = true;
        CHECK(ds.profile(a.index, 2)->handle == b.handle);
        CHECK(ds.find_actor(b.handle, 1) == b.index);
        CHECK(ds.find_actor(b.handle, 2) == a.index);
        CHECK(ds.find_actor(ds.handle_at(b.index, 2), 2) == b.index);
      }
    }
  CHECK(swap);
  for (int day : {0, 1, 2, 3}) {
    std::set<std::string> handles;
    for (const auto& u : ds.users())
      if (ds.exists(u.index, day)) CHECK(handles.insert(ds.handle_at(u.index, day)).second);
  }
}

TEST_CASE("deletions happen on day 2 and only inside the 7-day window", "[fake]") {
  const Dataset& ds = shared_dataset();
  const Micros window = ds.now_of_day(2) - 7 * kDay;
  int deleted = 0, deleting_active = 0;
  for (const auto& u : ds.users()) {
    if (!ds.exists(u.index, 2)) continue;
    std::set<std::string> day2;
    for (const auto& it : feed(u.index, 2))
      if (it.is_own_post()) day2.insert(it.post.uri);
    std::set<std::string> vanished;
    for (const auto& it : feed(u.index, 1)) {
      if (!it.is_own_post() || day2.count(it.post.uri)) continue;
      vanished.insert(it.post.uri);
      CHECK(it.sort_at >= window);
      CHECK(it.post.indexed_at <= ds.now_of_day(1));
    }
    std::set<std::string> reported;
    for (const auto& p : ds.deleted_on(u.index, 2)) reported.insert(p.uri);
    CHECK(vanished == reported);
    deleted += static_cast<int>(vanished.size());
    if (!vanished.empty() && u.registered && u.active && !u.skip_user) ++deleting_active;
  }
  CHECK(deleted >= 3);
  CHECK(deleting_active >= 2);
}

TEST_CASE("accounts: flags, unknown and gone ones, unusual names", "[fake]") {
  const Dataset& ds = shared_dataset();
  int skip = 0, never = 0, gone = 0, inactive = 0, api_only = 0;
  bool unicode = false, nul = false;
  for (const auto& u : ds.users()) {
    REQUIRE(std::regex_match(u.did, std::regex("did:plc:[a-z2-7]{24}")));
    skip += u.skip_user;
    inactive += u.registered && !u.active;
    api_only += !u.registered;
    if (u.never_existed) {
      ++never;
      for (int day : {0, 1, 2}) {
        CHECK_FALSE(ds.profile(u.index, day));
        CHECK(ds.author_feed(u.index, day).empty());
        CHECK_FALSE(ds.find_actor(u.did, day));
      }
    }
    if (u.gone_from_day > 0) {
      ++gone;
      CHECK(ds.profile(u.index, u.gone_from_day - 1));
      CHECK_FALSE(ds.profile(u.index, u.gone_from_day));
      CHECK_FALSE(ds.find_actor(u.did, u.gone_from_day));
    }
    for (int day : {1, 2}) {
      const auto p = ds.profile(u.index, day);
      if (!p || !p->display_name) continue;
      const std::string& n = *p->display_name;
      if (n.find('\0') != std::string::npos) nul = true;
      // Four-byte UTF-8 (emoji) and Hebrew/Arabic letters in one name.
      if (n.find("\xF0\x9F") != std::string::npos && (n.find("\xD7") != std::string::npos || n.find("\xD9") != std::string::npos))
        unicode = true;
    }
  }
  CHECK(skip >= 2);
  CHECK(skip <= 3);
  CHECK(never == 1);
  CHECK(gone >= 2);
  CHECK(inactive >= 3);
  CHECK(api_only >= 3);
  CHECK(unicode);
  CHECK(nul);
}

TEST_CASE("seed SQL registers exactly the registered accounts and makes the active ones active", "[fake]") {
  const Dataset& ds = shared_dataset();
  for (int day : {1, 2}) {
    const std::string sql = ds.seed_sql(day);
    const std::string today = ds::format_date(ds.now_of_day(day));
    std::map<std::string, int> user_rows;
    std::map<std::string, std::vector<std::string>> views;
    std::regex users_re(R"(INSERT INTO users \(did, handle, "displayName", avatar, skip_user\) VALUES \('([^']+)', '([^']+)', .*, (true|false)\) ON CONFLICT DO NOTHING;)");
    std::regex views_re(R"(INSERT INTO views \(did, date, view_count\) VALUES \('([^']+)', '(\d{4}-\d\d-\d\d)', \d+\) ON CONFLICT DO NOTHING;)");
    std::size_t pos = 0;
    while (pos < sql.size()) {
      const std::size_t nl = sql.find('\n', pos);
      const std::string line = sql.substr(pos, nl - pos);
      pos = nl == std::string::npos ? sql.size() : nl + 1;
      std::smatch m;
      if (std::regex_match(line, m, users_re)) ++user_rows[m[1]];
      else if (std::regex_match(line, m, views_re)) views[m[1]].push_back(m[2]);
      else REQUIRE((line.empty() || line.rfind("--", 0) == 0 || line == "BEGIN;" || line == "COMMIT;"));
    }
    // Dates compare as text; "within 7 days" means on or after today-7 and before today.
    const std::string week_ago = ds::format_date(ds.now_of_day(day) - 7 * kDay);
    for (const auto& u : ds.users()) {
      INFO(u.handle << " " << u.role);
      CHECK(user_rows[u.did] == (u.registered ? 1 : 0));
      bool recent = false;
      for (const auto& d : views[u.did]) recent |= d >= week_ago && d < today;
      CHECK(recent == u.active);
    }
  }
  // Seeded once for day 1, the active accounts stay active for a day-2 run too.
  const std::string sql = ds.seed_sql(1);
  const std::string day2_week_ago = ds::format_date(ds.now_of_day(2) - 7 * kDay);
  for (const auto& u : ds.users()) {
    if (!u.active) continue;
    const std::string prefix = "INSERT INTO views (did, date, view_count) VALUES ('" + u.did + "', '";
    bool recent = false;
    for (std::size_t at = sql.find(prefix); at != std::string::npos; at = sql.find(prefix, at + 1))
      recent |= sql.substr(at + prefix.size(), 10) >= day2_week_ago;
    CHECK(recent);
  }
  CHECK(sql.find("O''Brien") != std::string::npos);  // the apostrophe in a displayName is escaped
  CHECK(sql.find('\0') == std::string::npos);
}

TEST_CASE("a large account list is cheap until feeds are asked for", "[fake]") {
  DatasetParams big;
  big.users = 2000;
  const Dataset ds{big};
  CHECK(ds.registered_count() == 2000);
  CHECK(ds.users().size() > 2000);
  const auto p = ds.profile(1999, 1);
  REQUIRE(p);
  CHECK(ds.find_actor(p->handle, 1) == 1999);
}

namespace {

namespace economy = ds::fake::economy;

const Dataset& economy_dataset() {
  static const Dataset ds{[] {
    DatasetParams p;
    p.economy_cases = true;
    return p;
  }()};
  return ds;
}

// One account's own posts on one day, and what changed since the day before.
struct Day {
  std::map<std::string, ds::fake::Post> own;  // visible own posts by URI
  std::int64_t posts_count = -1;              // profile postsCount
  std::vector<std::string> created, deleted;  // own posts new that day / deleted that day
};

Day day_of(const Dataset& ds, int user, int day) {
  Day d;
  for (const FeedItem& i : ds.author_feed(user, day))
    if (i.is_own_post()) d.own.emplace(i.post.uri, i.post);
  d.posts_count = ds.profile(user, day)->posts.value();
  for (const auto& [uri, p] : d.own)
    if (p.created_day == day) d.created.push_back(uri);
  for (const auto& p : ds.deleted_on(user, day)) d.deleted.push_back(p.uri);
  return d;
}

// The own posts a 7-day refresh window holds on `day`.
std::set<std::string> window_of(const Dataset& ds, const Day& d, int day) {
  std::set<std::string> out;
  for (const auto& [uri, p] : d.own)
    if (p.sort_at >= ds.now_of_day(day) - 7 * kDay) out.insert(uri);
  return out;
}

// Day e of a "+1 -1" account: exactly one new post and one deletion, so postsCount is the day
// before's. Returns the deleted post as it was on day e-1, and that day in `before`.
ds::fake::Post plus_minus(const Dataset& ds, int user, int e, Day& before) {
  before = day_of(ds, user, e - 1);
  const Day on = day_of(ds, user, e);
  CHECK(on.created.size() == 1);
  REQUIRE(on.deleted.size() == 1);
  CHECK(on.posts_count == before.posts_count);
  CHECK(on.own.count(on.deleted[0]) == 0);
  return before.own.at(on.deleted[0]);
}

}  // namespace

TEST_CASE("economy cases are off by default; on, they recast accounts 23..27 only", "[fake][economy]") {
  const Dataset& plain = shared_dataset();
  const Dataset& eco = economy_dataset();
  for (int u = economy::kFirst; u <= economy::kLast; ++u) {
    CHECK(plain.users()[static_cast<std::size_t>(u)].role.find("economy") == std::string::npos);
    CHECK(eco.users()[static_cast<std::size_t>(u)].role.find("economy") == 0);
    CHECK(eco.users()[static_cast<std::size_t>(u)].active);
  }
  // Accounts outside the range keep their own posts and profiles (reposts of others may differ).
  for (int u : {0, 1, 2, 14, 22, 28, 40}) {
    for (int day : {1, 3}) {
      const Day a = day_of(plain, u, day), b = day_of(eco, u, day);
      CHECK(a.posts_count == b.posts_count);
      REQUIRE(a.own.size() == b.own.size());
      for (const auto& [uri, p] : a.own) CHECK(b.own.at(uri).counts.likes == p.counts.likes);
    }
  }
  // The seed registers the economy accounts as active ones.
  const std::string sql = eco.seed_sql(1);
  for (int u = economy::kFirst; u <= economy::kLast; ++u)
    CHECK(sql.find("INSERT INTO views (did, date, view_count) VALUES ('" + eco.users()[static_cast<std::size_t>(u)].did) !=
          std::string::npos);
}

TEST_CASE("economy cases: +1 -1 inside the window on day 3, +1 -1 older than it on day 4", "[fake][economy]") {
  const Dataset& ds = economy_dataset();
  SECTION("+1 -1 inside") {
    const int e = economy::kPlusMinusInsideDay;
    Day before;
    const ds::fake::Post gone = plus_minus(ds, economy::kPlusMinusInside, e, before);
    // Inside the window of day e and of day e-1: the stored window holds it, getPosts omits it.
    CHECK(gone.sort_at >= ds.now_of_day(e) - 7 * kDay);
    CHECK(window_of(ds, before, e - 1).count(gone.uri) == 1);
    CHECK(ds.find_post(gone.uri, e - 1));
    CHECK_FALSE(ds.find_post(gone.uri, e));
  }
  SECTION("+1 -1 older") {
    const int e = economy::kPlusMinusOlderDay;
    Day before;
    const ds::fake::Post gone = plus_minus(ds, economy::kPlusMinusOlder, e, before);
    // Older than both windows: getPosts of the stored window finds every post.
    CHECK(gone.sort_at < ds.now_of_day(e - 1) - 7 * kDay);
    const auto stored_window = window_of(ds, before, e - 1);
    CHECK_FALSE(stored_window.empty());
    CHECK(stored_window.count(gone.uri) == 0);
    for (const auto& uri : stored_window) CHECK(ds.find_post(uri, e));
    CHECK_FALSE(ds.find_post(gone.uri, e));
  }
  // Both accounts are quiet on every other day from 2 to 8.
  for (int u : {economy::kPlusMinusInside, economy::kPlusMinusOlder}) {
    const int event = u == economy::kPlusMinusInside ? economy::kPlusMinusInsideDay : economy::kPlusMinusOlderDay;
    for (int day = 2; day <= 8; ++day) {
      if (day == event) continue;
      const Day d = day_of(ds, u, day);
      INFO("account " << u << " day " << day);
      CHECK(d.deleted.empty());
      if (day > event) CHECK(d.created.empty());
    }
  }
}

TEST_CASE("economy cases: quiet accounts and a deletion without a new post", "[fake][economy]") {
  const Dataset& ds = economy_dataset();
  // Quiet with window posts: the day-1 posts fill the window on days 2..7 and gain likes daily.
  std::map<std::string, std::int64_t> likes;
  std::set<std::string> day1_posts;
  for (int day = 1; day <= 8; ++day) {
    const Day d = day_of(ds, economy::kQuietWithWindow, day);
    INFO("day " << day);
    if (day == 1) {
      day1_posts.insert(d.created.begin(), d.created.end());
      CHECK(day1_posts.size() == 4);
    } else {
      CHECK(d.created.empty());
      CHECK(d.deleted.empty());
    }
    CHECK(d.posts_count == static_cast<std::int64_t>(d.own.size()));
    CHECK(window_of(ds, d, day) == (day <= 7 ? day1_posts : std::set<std::string>{}));
    for (const auto& uri : day1_posts) {
      const std::int64_t now = d.own.at(uri).counts.likes.value();
      if (day >= 2 && day <= 7) CHECK(now > likes[uri]);
      CHECK(now >= likes[uri]);
      likes[uri] = now;
    }
  }
  // Quiet without window posts: history only, all of it older than every window.
  const Day first = day_of(ds, economy::kQuietNoWindow, 1);
  CHECK(first.own.size() == 30);
  for (int day = 1; day <= 8; ++day) {
    const Day d = day_of(ds, economy::kQuietNoWindow, day);
    INFO("day " << day);
    CHECK(d.created.empty());
    CHECK(d.deleted.empty());
    CHECK(window_of(ds, d, day).empty());
    CHECK(d.posts_count == 30);
  }
  // A plain deletion inside the window: postsCount drops by one, nothing new that day.
  const int u = economy::kPlainDeletion, e = economy::kPlainDeletionDay;
  const Day before = day_of(ds, u, e - 1), on = day_of(ds, u, e);
  CHECK(on.created.empty());
  REQUIRE(on.deleted.size() == 1);
  CHECK(on.posts_count == before.posts_count - 1);
  CHECK(window_of(ds, before, e - 1).count(on.deleted[0]) == 1);
  CHECK(before.own.at(on.deleted[0]).sort_at >= ds.now_of_day(e) - 7 * kDay);
  for (int day = 2; day <= 8; ++day) {
    const Day d = day_of(ds, u, day);
    INFO("day " << day);
    CHECK(d.created.size() == (day <= 4 ? 1u : 0u));
    CHECK(d.deleted.size() == (day == e ? 1u : 0u));
  }
}

TEST_CASE("economy cases keep the invariants: postsCount is the visible own posts, counts never drop", "[fake][economy]") {
  const Dataset& ds = economy_dataset();
  for (int u = economy::kFirst; u <= economy::kLast; ++u) {
    std::map<std::string, ds::fake::Counts> last;
    for (int day = 1; day <= 9; ++day) {
      const Day d = day_of(ds, u, day);
      INFO("account " << u << " day " << day);
      CHECK(d.posts_count == static_cast<std::int64_t>(d.own.size()));
      for (const auto& [uri, p] : d.own) {
        REQUIRE(p.counts.likes.has_value());  // present on every economy post
        if (auto it = last.find(uri); it != last.end()) {
          CHECK(p.counts.likes >= it->second.likes);
          CHECK(p.counts.replies >= it->second.replies);
          CHECK(p.counts.reposts >= it->second.reposts);
          CHECK(p.counts.quotes.value_or(0) >= it->second.quotes.value_or(0));
        }
        last[uri] = p.counts;
      }
      // No reposts of others and no pin: the feed is the own posts.
      CHECK(ds.author_feed(u, day).size() == d.own.size());
      CHECK_FALSE(ds.pinned_item(u, day));
    }
  }
}

TEST_CASE("sparse activity: the spread bench/requests needs, and roles 0..22 as in the normal world", "[fake][sparse]") {
  constexpr int users = 1000;
  DatasetParams np;
  np.users = users;
  DatasetParams sp = np;
  sp.activity = ds::fake::Activity::sparse;
  const Dataset normal{np}, sparse{sp};

  for (int u = 0; u <= 22; ++u) {
    const auto a = normal.profile(u, 3), b = sparse.profile(u, 3);
    REQUIRE(a.has_value() == b.has_value());
    if (a) CHECK(a->posts == b->posts);
    CHECK(normal.users()[static_cast<std::size_t>(u)].role == sparse.users()[static_cast<std::size_t>(u)].role);
  }

  int huge = 0, busy = 0, ordinary = 0, posting = 0;
  for (int u = 23; u < users; ++u) {
    const auto day1 = sparse.profile(u, 1), day2 = sparse.profile(u, 2);
    if (!day1 || !day2 || day1->posts.value_or(0) == 0) continue;
    const std::int64_t created = *day2->posts - *day1->posts + static_cast<std::int64_t>(sparse.deleted_on(u, 2).size());
    if (*day1->posts >= 120'000) {
      ++huge;
    } else if (created >= 24) {
      ++busy;
      CHECK(created <= 60);
    } else {
      ++ordinary;
      CHECK(created <= 2);
      if (created > 0) ++posting;
    }
  }
  CHECK(huge >= 1);
  CHECK(huge <= 8);
  CHECK(busy >= 10);
  CHECK(busy <= 45);
  // Most accounts post less than once a day: on one day, about a quarter of them do.
  REQUIRE(ordinary > 500);
  CHECK(posting > ordinary / 8);
  CHECK(posting < ordinary * 2 / 5);
}
