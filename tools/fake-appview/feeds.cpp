// The fake AppView's posts and feeds: each account's own posts day by day (with their createdAt
// oddities, deletions and pin), reposts of others and of its own, counts that grow, and the feed index.
#include <algorithm>
#include <cmath>
#include <iterator>
#include <optional>
#include <string_view>
#include <unordered_set>

#include "dataset_internal.hpp"

namespace ds::fake {
using namespace detail;

namespace {

std::string replace_z(std::string s, const char* with) {
  s.pop_back();
  return s + with;
}

constexpr CreatedAtKind kShowcase[] = {
    CreatedAtKind::Microseconds, CreatedAtKind::OffsetZero, CreatedAtKind::OffsetOther,
    CreatedAtKind::NoTimezone,   CreatedAtKind::NoFraction, CreatedAtKind::Invalid,
    CreatedAtKind::InvalidCalendar, CreatedAtKind::Future,  CreatedAtKind::Skew,
    CreatedAtKind::Missing,
};
constexpr int kShowcaseCount = sizeof kShowcase / sizeof kShowcase[0];

const char* const kWords[] = {
    "the", "a", "data", "bluesky", "post", "today", "chart", "model", "coffee", "reading", "paper",
    "release", "package", "thread", "thanks", "great", "new", "week", "our", "results", "café",
    "naïve", "日本語", "русский", "🦋", "#rstats", "@friend.fake.test", "\"quoted\"", "back\\slash",
    "emoji 🎉", "https://example.com/x?a=1&b=2", "tab\there", "line\nbreak", "مرحبا", "שלום", "—",
};
constexpr std::size_t kWordCount = sizeof kWords / sizeof kWords[0];

}  // namespace

std::shared_ptr<const Dataset::OwnList> Dataset::own_list(int user, int day) const {
  const auto key = cache_key(user, day);
  if (auto hit = own_cache_->get(key)) return hit;
  auto built = build_own_list(user, day);
  own_cache_->put(key, built, built->posts.size() + 1);
  return built;
}

std::shared_ptr<const Dataset::OwnList> Dataset::build_own_list(int user, int day) const {
  const Plan& p = plans_.at(static_cast<std::size_t>(user));
  const std::uint64_t seed = params_.seed;
  const auto uu = static_cast<std::uint64_t>(user);
  const Hasher h{seed};
  auto list = std::make_shared<OwnList>();
  auto& posts = list->posts;

  auto make = [&](Micros slot_start, Micros width, int created_day, int showcase) {
    const auto k = static_cast<std::uint32_t>(posts.size());
    Rng r(h(kTagPost, uu, k));
    const Micros margin = std::min<Micros>(width / 4, 20 * kSecond);
    OwnPost o{};
    o.k = k;
    o.created_day = static_cast<std::uint16_t>(created_day);
    o.t = slot_start + margin + static_cast<Micros>(r.below(static_cast<std::uint64_t>(width - 2 * margin - 10 * kSecond)));
    if (o.t % kMs == 0) o.t += 1;  // the microseconds shape needs sub-millisecond digits
    o.indexed = floor_to(o.t + 50 * kMs + static_cast<Micros>(r.below(850 * kMs)), kMs);
    const double x = r.unit();
    CreatedAtKind kind = CreatedAtKind::Normal;
    if (showcase >= 0) kind = kShowcase[showcase];
    else if (p.has_far_past && created_day == 0 && k == static_cast<std::uint32_t>(p.hist_posts / 2)) kind = p.far_past_kind;
    else if (x < 0.10) kind = CreatedAtKind::Skew;
    else if (x < 0.12) kind = CreatedAtKind::Microseconds;
    else if (x < 0.13) kind = CreatedAtKind::OffsetZero;
    else if (x < 0.135) kind = CreatedAtKind::OffsetOther;
    else if (x < 0.145) kind = CreatedAtKind::NoTimezone;
    else if (x < 0.155) kind = CreatedAtKind::NoFraction;
    else if (x < 0.158) kind = CreatedAtKind::Invalid;
    else if (x < 0.161) kind = CreatedAtKind::InvalidCalendar;
    else if (x < 0.164) kind = CreatedAtKind::Future;
    else if (x < 0.167) kind = CreatedAtKind::Missing;
    // The economy scenarios count posts exactly, so each of theirs is one the AppView indexes.
    if (p.scheduled && !appview_indexes(kind)) kind = CreatedAtKind::Normal;
    o.kind = kind;
    switch (kind) {
      case CreatedAtKind::Microseconds: o.created = o.t; break;
      case CreatedAtKind::NoFraction: o.created = floor_to(o.t, kSecond); break;
      case CreatedAtKind::FarPast: o.created = far_past_; break;
      case CreatedAtKind::Epoch: o.created = 0; break;
      case CreatedAtKind::Future: o.created = floor_to(o.t, kMs) + 365 * kDay; break;
      case CreatedAtKind::Skew: o.created = o.indexed + kSecond + static_cast<Micros>(r.below(7000)) * kMs; break;
      default: o.created = floor_to(o.t, kMs); break;
    }
    o.sort = has_created(kind) ? std::min(o.created, o.indexed) : o.indexed;
    if (r.chance(0.10)) o.flags |= kQuoteAbsent;
    if (r.chance(0.01)) o.flags |= kCountsAbsent;
    if (r.chance(0.25)) {
      o.flags |= kReply;
      if (k > 0 && r.chance(0.3)) o.flags |= kSelfReply;
    }
    if (p.steady_counts) o.flags &= static_cast<std::uint8_t>(~kCountsAbsent);  // after the draws: others unchanged
    posts.push_back(o);
  };

  if (p.hist_posts > 0) {
    const Micros width = (p.hist_end - p.hist_start) / p.hist_posts;
    for (std::int64_t i = 0; i < p.hist_posts; ++i) make(p.hist_start + i * width, width, 0, -1);
  }
  const double scale = params_.posts_scale;
  for (int d = 1; d <= day; ++d) {
    std::int64_t m = 0;
    if (p.scheduled) {
      m = d < static_cast<int>(std::size(p.schedule)) ? p.schedule[d] : 0;
    } else if (p.echo) {
      m = p.daily_fixed;  // the page shape needs a full page of the day's posts at any scale
    } else if (p.daily_fixed >= 0) {
      m = scaled(p.daily_fixed, scale, h(kTagDaily, uu, static_cast<std::uint64_t>(d), 1));
      if (user == 0 && d == 1) m = std::max<std::int64_t>(m, kShowcaseCount);
    } else if (p.daily_chance > 0) {
      Rng r(h(kTagDaily, uu, static_cast<std::uint64_t>(d), 2));
      if (r.unit() < p.daily_chance) m = r.below(4) == 0 ? 2 : 1;
    } else if (!p.daily_none) {
      const auto v = h(kTagDaily, uu, static_cast<std::uint64_t>(d)) % 100;
      const int base = v < 40 ? 0 : v < 70 ? 1 : v < 88 ? 2 : v < 96 ? 3 : 5;
      m = scaled(base, scale, h(kTagDaily, uu, static_cast<std::uint64_t>(d), 1));
    }
    m = std::min<std::int64_t>(m, kDay / kMinSlot);
    if (m == 0) continue;
    const Micros width = kDay / m;
    const Micros start = now_of_day(d - 1);
    for (std::int64_t i = 0; i < m; ++i)
      make(start + i * width, width, d, user == 0 && d == 1 && i < kShowcaseCount ? static_cast<int>(i) : -1);
  }

  // The pin is an old history post, so no deletion (which only takes recent posts) can hit it.
  if (p.has_pin && p.hist_posts >= 10) {
    const Micros limit = params_.day0 - 30 * kDay;
    std::size_t old = 0;
    while (old < posts.size() && posts[old].created_day == 0 && posts[old].t < limit) ++old;
    if (old > 0) {
      // A pinned post the AppView never indexed would be no feed item: pin an older indexed one.
      int pin = static_cast<int>(h(kTagPin, uu) % old);
      while (pin >= 0 && !appview_indexes(posts[static_cast<std::size_t>(pin)].kind)) --pin;
      list->pin = pin;
    }
  }

  for (int e = 2; e <= day; ++e) {
    if (p.scheduled) {
      // An economy role deletes one chosen post: its oldest inside the window, or its newest
      // older than the previous day's window (which no window refresh can notice).
      if (e != p.delete_day) continue;
      const Micros lo = now_of_day(e) - 7 * kDay + kHour, hi = now_of_day(e - 1);
      const Micros older = now_of_day(e - 1) - 7 * kDay;
      std::optional<std::size_t> chosen;
      for (std::size_t i = 0; i < posts.size(); ++i) {
        const OwnPost& o = posts[i];
        if (o.created_day > e - 1 || o.deleted_day != 0 || static_cast<int>(i) == list->pin || !appview_indexes(o.kind))
          continue;
        if (p.delete_older ? o.sort < older : o.sort >= lo && o.sort <= hi) {
          chosen = i;
          if (!p.delete_older) break;
        }
      }
      if (chosen) posts[*chosen].deleted_day = static_cast<std::uint16_t>(e);
      continue;
    }
    const auto dh = h(kTagDelete, uu, static_cast<std::uint64_t>(e));
    if (!((e == 2 && p.forced_delete_day2) || (p.random_deleter && dh % p.delete_one_in == 0))) continue;
    const Micros lo = now_of_day(e) - 7 * kDay + kHour;
    const Micros hi = now_of_day(e - 1);
    std::vector<std::size_t> candidates;
    for (std::size_t i = posts.size(); i-- > 0;) {
      const OwnPost& o = posts[i];
      if (o.t < lo - kDay) break;
      // Only posts the API showed can be seen to go: never one it did not index.
      if (o.created_day <= e - 1 && o.indexed <= hi && o.sort >= lo && o.deleted_day == 0 &&
          static_cast<int>(i) != list->pin && appview_indexes(o.kind))
        candidates.push_back(i);
    }
    Rng r(dh);
    const int count = 1 + static_cast<int>(r.below(2));
    for (int c = 0; c < count && !candidates.empty(); ++c) {
      const auto at = r.below(candidates.size());
      posts[candidates[at]].deleted_day = static_cast<std::uint16_t>(e);
      candidates.erase(candidates.begin() + static_cast<std::ptrdiff_t>(at));
    }
  }
  for (const OwnPost& o : posts)
    if (o.deleted_day == 0 && appview_indexes(o.kind)) ++list->visible;
  return list;
}

namespace {

// An own post indexed an hour or more before `before` for a self-repost: half the time one of the
// 40 latest, else any, so some reposted posts are older than every refresh window. Like
// pick_other_post, only posts that already existed then are looked at.
std::optional<PostRef> pick_own_post(const std::vector<OwnPost>& posts, int user, std::uint64_t key, Micros before) {
  const auto n = static_cast<std::size_t>(
      std::upper_bound(posts.begin(), posts.end(), before - kHour, [](Micros t, const OwnPost& o) { return t < o.indexed; }) -
      posts.begin());
  if (n == 0) return std::nullopt;
  Rng r(key);
  const std::size_t idx = r.chance(0.5) ? n - 1 - r.below(std::min<std::size_t>(n, 40)) : r.below(n);
  return PostRef{user, static_cast<std::uint32_t>(idx)};
}

// The echo account's self-repost of day d (dataset.hpp, ds::fake::echo). It sits between the
// (kPageItem-1)th and the kPageItem-th newest indexed post of day d, so that on day d it ends the
// first full page; its post is older than now(d) - kSubjectAgeDays, while the next page opens with
// day d's posts. Only posts of day d and before decide, so every later day has it at the same place.
std::optional<FeedEntry> echo_repost(const std::vector<OwnPost>& posts, int user, int d, Micros now_d, const Hasher& h,
                                     const std::unordered_set<std::uint64_t>& reposted) {
  std::vector<std::uint32_t> today;  // day d's indexed posts, newest first
  for (std::size_t i = posts.size(); i-- > 0 && posts[i].created_day >= d;)
    if (posts[i].created_day == d && appview_indexes(posts[i].kind)) today.push_back(static_cast<std::uint32_t>(i));
  if (today.size() < static_cast<std::size_t>(echo::kPageItem)) return std::nullopt;
  const Micros newer = posts[today[echo::kPageItem - 2]].sort, older = posts[today[echo::kPageItem - 1]].sort;
  const Micros t = floor_to(older + (newer - older) / 2, kMs);

  const Micros limit = now_d - echo::kSubjectAgeDays * kDay;
  auto n = static_cast<std::size_t>(
      std::upper_bound(posts.begin(), posts.end(), limit, [](Micros x, const OwnPost& o) { return x < o.t; }) -
      posts.begin());
  n -= std::min<std::size_t>(n, h(kTagSelfRepost, static_cast<std::uint64_t>(user), static_cast<std::uint64_t>(d), 1) % 20);
  // Earlier days' echoes took some posts (a post is reposted once): the next older one then.
  const auto taken = [&](std::size_t i) { return reposted.count((static_cast<std::uint64_t>(user) << 32) | i) > 0; };
  while (n > 0 && (!appview_indexes(posts[n - 1].kind) || posts[n - 1].sort >= limit || taken(n - 1))) --n;
  if (n == 0) return std::nullopt;
  return FeedEntry{t, user, static_cast<std::uint32_t>(n - 1), true};
}

}  // namespace

// Chooses a recent post of another account, created an hour or more before `before`. The
// choice only looks at posts that already existed then, so it is the same on every later day.
std::optional<PostRef> Dataset::pick_other_post(int user, std::uint64_t key, Micros before, int day) const {
  Rng r(key);
  for (int attempt = 0; attempt < 6 && !target_pool_.empty(); ++attempt) {
    const int j = target_pool_[r.below(target_pool_.size())];
    if (j == user) continue;
    auto list = own_list(j, day);
    const auto& posts = list->posts;
    const auto n = static_cast<std::size_t>(
        std::upper_bound(posts.begin(), posts.end(), before - kHour,
                         [](Micros t, const OwnPost& o) { return t < o.indexed; }) -
        posts.begin());
    if (n == 0) continue;
    const auto idx = n - 1 - r.below(std::min<std::size_t>(n, 40));
    return PostRef{j, static_cast<std::uint32_t>(idx)};
  }
  return std::nullopt;
}

std::shared_ptr<const FeedIndex> Dataset::feed_index(int user, int day) const {
  if (day < 0 || day > kMaxDay) throw std::out_of_range("day out of range");
  const auto key = cache_key(user, day);
  if (auto hit = feed_cache_->get(key)) return hit;
  auto built = build_feed_index(user, day);
  feed_cache_->put(key, built, built->entries.size() + 1);
  return built;
}

std::shared_ptr<const FeedIndex> Dataset::build_feed_index(int user, int day) const {
  auto index = std::make_shared<FeedIndex>();
  if (!exists(user, day)) return index;
  const Plan& p = plans_[static_cast<std::size_t>(user)];
  const std::uint64_t seed = params_.seed;
  const auto uu = static_cast<std::uint64_t>(user);
  const Hasher h{seed};
  auto own = own_list(user, day);
  auto& entries = index->entries;
  std::unordered_set<Micros> used;  // milliseconds taken by own posts, deleted ones included
  used.reserve(own->posts.size() * 2 + 16);
  for (std::uint32_t i = 0; i < own->posts.size(); ++i) {
    const OwnPost& o = own->posts[i];
    used.insert(floor_to(o.sort, kMs));
    if (o.deleted_day == 0 && appview_indexes(o.kind)) entries.push_back({o.sort, user, i, false});
  }
  if (own->pin >= 0)
    index->pinned = FeedEntry{own->posts[static_cast<std::size_t>(own->pin)].sort, user,
                              static_cast<std::uint32_t>(own->pin), false};

  // Reposts get their own slot grid; a repost landing on a taken millisecond moves later by 1 ms
  // (deterministic, and only posts of the same day can be hit, so every later day agrees).
  std::uint64_t serial = 0;
  std::unordered_set<std::uint64_t> reposted;
  auto add_repost = [&](Micros slot_start, Micros width) {
    const std::uint64_t rk = h(kTagRepost, uu, serial++);
    Rng r(rk);
    const Micros margin = std::min<Micros>(width / 4, 20 * kSecond);
    Micros t = floor_to(slot_start + margin + static_cast<Micros>(r.below(static_cast<std::uint64_t>(width - 2 * margin - 10 * kSecond))), kMs);
    while (!used.insert(t).second) t += kMs;
    const bool self = p.self_repost_one_in > 0 && h(kTagSelfRepost, uu, serial) % p.self_repost_one_in == 0;
    auto target = self ? pick_own_post(own->posts, user, h(kTagSelfRepost, uu, serial, 1), t)
                       : pick_other_post(user, h(kTagTarget, uu, serial), t, day);
    // A post can be reposted once; a second pick of the same post is dropped.
    if (!target || !reposted.insert((static_cast<std::uint64_t>(target->user) << 32) | target->index).second) return;
    auto tl = own_list(target->user, day);
    const OwnPost& o = tl->posts[target->index];
    // Reposts vanish with their post, and the AppView omits a repost of a post it never indexed.
    if ((o.deleted_day != 0 && o.deleted_day <= day) || !appview_indexes(o.kind)) return;
    entries.push_back({t, target->user, target->index, true});
  };
  if (p.hist_reposts > 0) {
    const Micros width = (params_.day0 - p.hist_start) / p.hist_reposts;
    for (std::int64_t i = 0; i < p.hist_reposts; ++i) add_repost(p.hist_start + i * width, width);
  }
  for (int d = 1; d <= day; ++d) {
    std::int64_t m;
    if (p.daily_reposts_fixed >= 0) {
      m = scaled(p.daily_reposts_fixed, params_.posts_scale, h(kTagDailyReposts, uu, static_cast<std::uint64_t>(d), 1));
    } else {
      const auto v = h(kTagDailyReposts, uu, static_cast<std::uint64_t>(d)) % 100;
      m = scaled(v < 75 ? 0 : v < 95 ? 1 : 2, params_.posts_scale, h(kTagDailyReposts, uu, static_cast<std::uint64_t>(d), 1));
    }
    m = std::min<std::int64_t>(m, kDay / kMinSlot);
    for (std::int64_t i = 0; i < m; ++i) add_repost(now_of_day(d - 1) + i * (kDay / m), kDay / m);
    if (p.echo) {
      if (auto e = echo_repost(own->posts, user, d, now_of_day(d), h, reposted)) {
        used.insert(e->sort_at);
        reposted.insert((uu << 32) | e->post);
        if (own->posts[e->post].deleted_day == 0) entries.push_back(*e);
      }
    }
  }
  std::sort(entries.begin(), entries.end(),
            [](const FeedEntry& a, const FeedEntry& b) { return a.sort_at > b.sort_at; });
  return index;
}

Post Dataset::post(PostRef ref, int day) const {
  auto list = own_list(ref.user, day);
  const OwnPost& o = list->posts.at(ref.index);
  const User& u = users_.at(static_cast<std::size_t>(ref.user));
  const std::uint64_t seed = params_.seed;
  const auto uu = static_cast<std::uint64_t>(ref.user);
  const Hasher h{seed};
  Post out;
  out.ref = ref;
  out.author_did = u.did;
  out.uri = post_uri(u.did, o, h, uu);
  out.cid = "bafyrei";
  for (std::uint64_t part = 0; part < 4; ++part) append_base32(out.cid, h(kTagCid, uu, o.k, part), 13);
  out.kind = o.kind;
  out.indexed_at = o.indexed;
  out.indexed_at_text = format_timestamp(o.indexed);
  out.sort_at = o.sort;
  out.created_day = o.created_day;
  out.deleted_day = o.deleted_day;
  if (has_created(o.kind)) out.created_at = o.created;
  switch (o.kind) {
    case CreatedAtKind::Normal: case CreatedAtKind::Future: case CreatedAtKind::Skew:
      out.created_at_raw = ms_text(o.created); break;
    case CreatedAtKind::Microseconds: out.created_at_raw = format_timestamp(o.created); break;
    case CreatedAtKind::OffsetZero: out.created_at_raw = replace_z(ms_text(o.created), "+00:00"); break;
    case CreatedAtKind::OffsetOther: out.created_at_raw = replace_z(ms_text(o.created - 5 * kHour), "-05:00"); break;
    case CreatedAtKind::NoTimezone: out.created_at_raw = replace_z(ms_text(o.created), ""); break;
    case CreatedAtKind::NoFraction: {
      std::string s = ms_text(o.created);  // "...:SS.000Z"
      out.created_at_raw = s.substr(0, s.size() - 5) + "Z";
      break;
    }
    case CreatedAtKind::Invalid: out.created_at_raw = "not a date"; break;
    case CreatedAtKind::InvalidCalendar: out.created_at_raw = format_date(o.t).substr(0, 4) + "-02-30T10:00:00Z"; break;
    case CreatedAtKind::FarPast: out.created_at_raw = "0001-01-01T00:00:00.000Z"; break;
    case CreatedAtKind::Epoch: out.created_at_raw = "1970-01-01T00:00:00.000Z"; break;
    case CreatedAtKind::Missing: break;
  }

  const bool steady = plans_.at(static_cast<std::size_t>(ref.user)).steady_counts;
  if (!(o.flags & kCountsAbsent) && day >= o.created_day) {
    Rng base(h(kTagCounts, uu, o.k));
    std::int64_t likes = 0, replies = 0, reposts = 0, quotes = 0;
    if (o.created_day == 0) {
      const double x = base.unit();
      likes = static_cast<std::int64_t>(std::pow(300.0, x * x)) - 1;
      replies = static_cast<std::int64_t>(base.below(static_cast<std::uint64_t>(likes / 4 + 1)));
      reposts = static_cast<std::int64_t>(base.below(static_cast<std::uint64_t>(likes / 6 + 1)));
      quotes = static_cast<std::int64_t>(base.below(static_cast<std::uint64_t>(likes / 20 + 1)));
    }
    // Daily growth: fast while the post is under a week old, a trickle afterwards.
    for (int e = std::max(1, static_cast<int>(o.created_day)); e <= day; ++e) {
      Rng inc(h(kTagCounts, uu, o.k, static_cast<std::uint64_t>(e)));
      if (now_of_day(e) - o.t < 7 * kDay) {
        // One draw either way, so steady accounts' other counts match what they would have been.
        likes += static_cast<std::int64_t>(steady ? 1 + inc.below(5) : inc.below(6));
        replies += static_cast<std::int64_t>(inc.below(2));
        reposts += static_cast<std::int64_t>(inc.below(3));
        quotes += inc.chance(0.2) ? 1 : 0;
      } else if (inc.chance(0.03)) {
        likes += 1;
        if (inc.chance(0.3)) reposts += 1;
      }
    }
    out.counts.likes = likes;
    out.counts.replies = replies;
    out.counts.reposts = reposts;
    if (!(o.flags & kQuoteAbsent)) out.counts.quotes = quotes;
  }

  Rng tr(h(kTagText, uu, o.k));
  const auto words = 3 + tr.below(25);
  for (std::uint64_t w = 0; w < words; ++w) {
    if (w) out.text += ' ';
    out.text += kWords[tr.below(tr.chance(0.8) ? 20 : kWordCount)];
  }

  if (o.flags & kReply) {
    ReplyInfo reply;
    std::optional<PostRef> parent;
    if (o.flags & kSelfReply) parent = PostRef{ref.user, o.k - 1};
    else if (h(kTagReply, uu, o.k, 1) % 10 != 0) parent = pick_other_post(ref.user, h(kTagReply, uu, o.k), o.t, day);
    if (parent) {
      Post pp = post(PostRef{parent->user, parent->index}, day);
      // The API shows a parent or root it does not hold (deleted, or never indexed) as notFoundPost.
      const bool shown = (pp.deleted_day == 0 || pp.deleted_day > day) && appview_indexes(pp.kind);
      // A thread's root is its parent's root; depth stays small because only self-replies chain.
      if (pp.reply) {
        reply.root_uri = pp.reply->root_uri;
        reply.root_cid = pp.reply->root_cid;
        reply.root = pp.reply->root;
      } else {
        reply.root_uri = pp.uri;
        reply.root_cid = pp.cid;
        if (shown) reply.root = parent;
      }
      reply.parent_uri = pp.uri;
      reply.parent_cid = pp.cid;
      if (shown) reply.parent = parent;
    } else {
      // A reply to a post that no longer exists anywhere: the API shows notFoundPost.
      std::string did = "did:plc:";
      append_base32(did, h(kTagReply, uu, o.k, 2), 12);
      append_base32(did, h(kTagReply, uu, o.k, 3), 12);
      reply.parent_uri = reply.root_uri = "at://" + did + "/app.bsky.feed.post/" + tid(o.t - kDay, h(kTagReply, uu, o.k, 4));
      reply.parent_cid = reply.root_cid = "bafyrei";
      for (std::uint64_t part = 0; part < 4; ++part) append_base32(reply.parent_cid, h(kTagReply, uu, o.k, 10 + part), 13);
      reply.root_cid = reply.parent_cid;
    }
    out.reply = std::move(reply);
  }
  return out;
}

FeedItem Dataset::expand(const FeedEntry& e, int owner, int day, FeedItem::Reason reason) const {
  FeedItem item;
  item.reason = reason;
  item.post = post(PostRef{e.user, e.post}, day);
  item.sort_at = e.sort_at;
  item.by = owner;
  return item;
}

std::vector<FeedItem> Dataset::author_feed(int user, int day) const {
  auto index = feed_index(user, day);
  std::vector<FeedItem> out;
  out.reserve(index->entries.size());
  for (const FeedEntry& e : index->entries)
    out.push_back(expand(e, user, day, e.repost ? FeedItem::Reason::Repost : FeedItem::Reason::None));
  return out;
}

std::optional<FeedItem> Dataset::pinned_item(int user, int day) const {
  auto index = feed_index(user, day);
  if (!index->pinned) return std::nullopt;
  return expand(*index->pinned, user, day, FeedItem::Reason::Pin);
}

std::optional<PostRef> Dataset::find_post(std::string_view uri, int day) const {
  constexpr std::string_view kScheme = "at://", kCollection = "/app.bsky.feed.post/";
  if (uri.substr(0, kScheme.size()) != kScheme) return std::nullopt;
  const std::size_t slash = uri.find('/', kScheme.size());
  if (slash == std::string_view::npos) return std::nullopt;
  const auto account = by_did_.find(std::string(uri.substr(kScheme.size(), slash - kScheme.size())));
  if (account == by_did_.end() || !exists(account->second, day)) return std::nullopt;
  const int user = account->second;
  if (uri.substr(slash, kCollection.size()) != kCollection) return std::nullopt;
  // The rkey is a TID of the creation instant (see tid()), so it says where the post sits in the
  // account's own posts, which are in creation order.
  const std::string_view rkey = uri.substr(slash + kCollection.size());
  if (rkey.size() != 13) return std::nullopt;
  std::uint64_t v = 0;
  for (const char c : rkey) {
    const std::string_view alphabet(kTidAlphabet);
    const std::size_t digit = alphabet.find(c);
    if (digit == std::string_view::npos) return std::nullopt;
    v = (v << 5) | digit;
  }
  const auto t = static_cast<Micros>(v >> 10);
  const auto list = own_list(user, day);  // holds only posts created by `day`
  const auto& posts = list->posts;
  const auto at = std::lower_bound(posts.begin(), posts.end(), t, [](const OwnPost& o, Micros x) { return o.t < x; });
  if (at == posts.end() || at->t != t || at->deleted_day != 0 || !appview_indexes(at->kind)) return std::nullopt;
  // The clock id in the TID must match too: only the exact URI names the post.
  if (post_uri(users_[static_cast<std::size_t>(user)].did, *at, Hasher{params_.seed}, static_cast<std::uint64_t>(user)) != uri)
    return std::nullopt;
  return PostRef{user, at->k};
}

std::vector<Post> Dataset::unindexed_posts(int user, int day) const {
  std::vector<Post> out;
  if (day < 0 || !exists(user, day)) return out;
  auto list = own_list(user, day);
  for (std::uint32_t i = 0; i < list->posts.size(); ++i)
    if (!appview_indexes(list->posts[i].kind)) out.push_back(post(PostRef{user, i}, day));
  return out;
}

std::vector<Post> Dataset::deleted_on(int user, int day) const {
  std::vector<Post> out;
  if (day < 1 || !exists(user, day)) return out;
  auto list = own_list(user, day);
  for (std::uint32_t i = 0; i < list->posts.size(); ++i)
    if (list->posts[i].deleted_day == day) {
      Post p = post(PostRef{user, i}, day - 1);
      p.deleted_day = day;
      out.push_back(std::move(p));
    }
  return out;
}

}  // namespace ds::fake
