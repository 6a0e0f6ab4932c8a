// Generation of the fake AppView's accounts, profiles and feeds (see dataset.hpp for the model).
// Every value derives from hashes of (seed, account, post, day), so nothing per day is stored.
#include "dataset.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <list>
#include <stdexcept>
#include <unordered_set>

namespace ds::fake {

std::uint64_t mix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

std::uint64_t Rng::next() {
  state_ += 0x9E3779B97F4A7C15ULL;
  std::uint64_t z = state_;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

double Rng::unit() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }

const char* to_string(CreatedAtKind k) {
  switch (k) {
    case CreatedAtKind::Normal: return "normal";
    case CreatedAtKind::Microseconds: return "microseconds";
    case CreatedAtKind::OffsetZero: return "offset+00:00";
    case CreatedAtKind::OffsetOther: return "offset-05:00";
    case CreatedAtKind::NoTimezone: return "no-timezone";
    case CreatedAtKind::NoFraction: return "no-fraction";
    case CreatedAtKind::Invalid: return "invalid";
    case CreatedAtKind::InvalidCalendar: return "invalid-calendar";
    case CreatedAtKind::FarPast: return "0001";
    case CreatedAtKind::Epoch: return "1970";
    case CreatedAtKind::Future: return "future";
    case CreatedAtKind::Skew: return "after-indexedAt";
    case CreatedAtKind::Missing: return "missing";
  }
  return "?";
}

namespace {

constexpr Micros kMs = 1000;
constexpr Micros kSecond = micros_per_second;
constexpr Micros kMinute = 60 * kSecond;
constexpr Micros kHour = 60 * kMinute;
constexpr Micros kDay = micros_per_day;
// Narrowest slot one post (or repost) may own: its creation time keeps 20 s from both edges and
// createdAt/indexedAt stay within 10 s after it, so sort keys of different slots never meet.
constexpr Micros kMinSlot = 80 * kSecond;

// Independent streams per purpose, so adding a draw to one never shifts another.
enum Tag : std::uint64_t {
  kTagDid = 1, kTagPlan, kTagPost, kTagDaily, kTagDailyReposts, kTagRepost, kTagTarget, kTagDelete,
  kTagCounts, kTagProfile, kTagPin, kTagText, kTagReply, kTagCid, kTagAvatar, kTagViews, kTagScale,
};

// One value per (purpose tag, up to three more keys): the source of every random choice.
struct Hasher {
  std::uint64_t seed;
  std::uint64_t operator()(std::uint64_t a, std::uint64_t b = 0, std::uint64_t c = 0, std::uint64_t d = 0) const {
    return mix64(mix64(mix64(mix64(mix64(seed) ^ a) ^ b) ^ c) ^ d);
  }
};

constexpr char kBase32[] = "abcdefghijklmnopqrstuvwxyz234567";
constexpr char kTidAlphabet[] = "234567abcdefghijklmnopqrstuvwxyz";

Micros floor_to(Micros t, Micros unit) {
  Micros q = t / unit;
  if (t % unit < 0) --q;
  return q * unit;
}

void append_base32(std::string& out, std::uint64_t v, int chars) {
  for (int i = 0; i < chars; ++i) {
    out += kBase32[v & 31];
    v >>= 5;
  }
}

// A TID record key like real post rkeys: creation microseconds and a 10-bit clock id.
std::string tid(Micros t, std::uint64_t clock_id) {
  const std::uint64_t v = ((static_cast<std::uint64_t>(t) & ((1ULL << 53) - 1)) << 10) | (clock_id & 1023);
  std::string s(13, '2');
  for (int i = 0; i < 13; ++i) s[static_cast<std::size_t>(i)] = kTidAlphabet[(v >> (60 - 5 * i)) & 31];
  return s;
}

std::string ms_text(Micros t) { return format_timestamp(floor_to(t, kMs)); }

std::string replace_z(std::string s, const char* with) {
  s.pop_back();
  return s + with;
}

std::int64_t scaled(double n, double scale, std::uint64_t h) {
  const double x = n * scale;
  const double whole = std::floor(x);
  const double frac = x - whole;
  return static_cast<std::int64_t>(whole) + (static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0) < frac ? 1 : 0);
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

// Compact own post: strings are derived again when an item is rendered.
struct OwnPost {
  Micros t;        // true creation instant (microseconds)
  Micros indexed;  // indexedAt (milliseconds)
  Micros created;  // parsed createdAt when the kind has one
  Micros sort;
  std::uint32_t k;
  std::uint16_t created_day;
  std::uint16_t deleted_day;
  CreatedAtKind kind;
  std::uint8_t flags;
};
enum : std::uint8_t { kQuoteAbsent = 1, kCountsAbsent = 2, kReply = 4, kSelfReply = 8 };

bool has_created(CreatedAtKind k) {
  return k != CreatedAtKind::Invalid && k != CreatedAtKind::InvalidCalendar && k != CreatedAtKind::Missing;
}

struct Dataset::OwnList {
  std::vector<OwnPost> posts;  // creation order (= time order)
  int pin = -1;
  std::int64_t visible = 0;  // not deleted on the list's day
};

struct Dataset::Plan {
  std::int64_t hist_posts = 0;
  Micros hist_start = 0;  // start of the history (posts and reposts)
  int daily_fixed = -1;   // own posts per day (before scaling) when >= 0
  bool daily_none = false;
  double repost_rate = 0;
  std::int64_t hist_reposts = 0;
  int daily_reposts_fixed = -1;
  bool forced_delete_day2 = false;
  bool random_deleter = false;
  CreatedAtKind far_past_kind = CreatedAtKind::Normal;
  bool has_far_past = false;
  bool has_pin = false;
  std::int64_t followers0 = 0, follows0 = 0, followers_growth = 1, follows_growth = 0;
  bool no_display_name = false, no_avatar = false, no_follows_count = false, no_counts = false;
  bool no_description = false, no_banner = false;
  Micros account_created = 0;
};

template <class V>
struct Dataset::Lru {
  explicit Lru(std::size_t budget) : budget_(budget) {}

  std::shared_ptr<const V> get(std::uint64_t key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second);
    return it->second->value;
  }

  void put(std::uint64_t key, std::shared_ptr<const V> value, std::size_t cost) {
    std::lock_guard<std::mutex> lock(mu_);
    if (map_.count(key)) return;  // another thread built the same thing first
    order_.push_front({key, std::move(value), cost});
    map_[key] = order_.begin();
    used_ += cost;
    while (used_ > budget_ && order_.size() > 1) {
      used_ -= order_.back().cost;
      map_.erase(order_.back().key);
      order_.pop_back();
    }
  }

 private:
  struct Node {
    std::uint64_t key;
    std::shared_ptr<const V> value;
    std::size_t cost;
  };
  std::mutex mu_;
  std::list<Node> order_;
  std::unordered_map<std::uint64_t, typename std::list<Node>::iterator> map_;
  std::size_t used_ = 0;
  std::size_t budget_;
};

namespace {
std::uint64_t cache_key(int user, int day) {
  return (static_cast<std::uint64_t>(user) << 16) | static_cast<std::uint64_t>(day);
}
}  // namespace

Dataset::~Dataset() = default;

Dataset::Dataset(DatasetParams params) : params_(params) {
  if (params_.users < 1 || params_.users > 1'000'000) throw std::invalid_argument("users must be 1..1000000");
  if (!(params_.posts_scale > 0) || params_.posts_scale > 1000)
    throw std::invalid_argument("posts_scale must be in (0, 1000]");
  far_past_ = *parse_timestamp("0001-01-01T00:00:00.000Z");
  own_cache_ = std::make_unique<Lru<OwnList>>(2'000'000);
  feed_cache_ = std::make_unique<Lru<FeedIndex>>(2'000'000);

  const int n = params_.users;
  const int api_only = 4 + n / 20;
  const std::uint64_t seed = params_.seed;
  const Hasher h{seed};
  const double scale = params_.posts_scale;
  const Micros day0 = params_.day0;

  users_.resize(static_cast<std::size_t>(n + api_only));
  plans_.resize(users_.size());
  for (int i = 0; i < static_cast<int>(users_.size()); ++i) {
    User& u = users_[static_cast<std::size_t>(i)];
    Plan& p = plans_[static_cast<std::size_t>(i)];
    u.index = i;
    u.registered = i < n;
    for (std::uint64_t attempt = 0;; ++attempt) {
      std::string did = "did:plc:";
      append_base32(did, h(kTagDid, static_cast<std::uint64_t>(i), attempt), 12);
      append_base32(did, h(kTagDid, static_cast<std::uint64_t>(i), attempt, 1), 12);
      if (by_did_.emplace(did, i).second) {
        u.did = did;
        break;
      }
    }
    char handle[48];
    std::snprintf(handle, sizeof handle, u.registered ? "user%04d.fake.test" : "other%04d.fake.test", i);
    u.handle = handle;

    Rng r(h(kTagPlan, static_cast<std::uint64_t>(i)));
    // Ordinary defaults, overridden by the fixed roles below.
    const bool zero = r.below(12) == 0;
    p.hist_posts = zero ? 0 : static_cast<std::int64_t>(std::exp(std::log(10.0) + r.unit() * (std::log(400.0) - std::log(10.0))));
    const Micros span = 30 * kDay + static_cast<Micros>(r.unit() * static_cast<double>(1065 * kDay));
    p.hist_start = day0 - span;
    p.daily_none = zero;
    static constexpr double kRates[] = {0.0, 0.05, 0.1, 0.2};
    p.repost_rate = kRates[r.below(4)];
    p.random_deleter = i >= 21;
    const auto v = r.below(100);
    u.views = v < 8 ? Views::Old : v < 15 ? Views::None : Views::Recent;
    u.seed_profile_null = r.below(7) == 0;
    p.has_pin = r.below(3) == 0;
    p.followers0 = static_cast<std::int64_t>(std::exp(r.unit() * std::log(50000.0)));
    p.follows0 = static_cast<std::int64_t>(r.below(2000));
    p.followers_growth = 1 + static_cast<std::int64_t>(r.below(40));
    p.follows_growth = static_cast<std::int64_t>(r.below(3));
    p.no_display_name = r.below(6) == 0;
    p.no_avatar = r.below(5) == 0;
    p.no_follows_count = r.below(20) == 0;
    p.no_description = r.below(3) == 0;
    p.no_banner = r.below(2) == 0;
    const auto fp = r.below(6);
    if (i >= 21 && (fp == 1 || fp == 2)) {
      p.has_far_past = true;
      p.far_past_kind = fp == 1 ? CreatedAtKind::FarPast : CreatedAtKind::Epoch;
    }
    u.role = u.registered ? "ordinary" : "api-only";
    if (!u.registered) u.views = Views::None;

    if (u.registered && i <= 22) {
      u.views = Views::Recent;
      u.seed_profile_null = false;
      p.no_display_name = p.no_avatar = p.no_follows_count = false;
      p.has_far_past = false;
      p.random_deleter = false;
      if (p.hist_posts == 0) {
        // Roles below test profile and feed handling; give each some posts to work with.
        p.hist_posts = 50 + static_cast<std::int64_t>(r.below(100));
        p.daily_none = false;
      }
    }
    switch (u.registered ? i : -1) {
      case 0:
        u.role = "10,600 posts";
        p.hist_posts = 10600;
        p.hist_start = day0 - 1095 * kDay;
        p.daily_fixed = 15;
        p.repost_rate = 0.1;
        p.has_pin = true;
        break;
      case 1:
        u.role = "1,200 posts";
        p.hist_posts = 1200;
        p.hist_start = day0 - 730 * kDay;
        p.daily_fixed = 4;
        p.repost_rate = 0.05;
        p.forced_delete_day2 = true;
        p.has_far_past = true;
        p.far_past_kind = CreatedAtKind::FarPast;
        break;
      case 2:
        u.role = "2,500 posts";
        p.hist_posts = 2500;
        p.hist_start = day0 - 1095 * kDay;
        p.daily_fixed = 6;
        p.repost_rate = 0.15;
        p.forced_delete_day2 = true;
        p.has_far_past = true;
        p.far_past_kind = CreatedAtKind::Epoch;
        p.has_pin = true;
        break;
      case 3:
        u.role = "no posts";
        p.hist_posts = 0;
        p.daily_none = true;
        p.repost_rate = 0;
        p.daily_reposts_fixed = 0;
        p.has_pin = false;
        break;
      case 4:
        u.role = "reposts only";
        p.hist_posts = 0;
        p.daily_none = true;
        p.hist_start = day0 - 365 * kDay;
        p.hist_reposts = scaled(40, scale, h(kTagScale, 4));
        p.daily_reposts_fixed = 3;
        p.has_pin = false;
        break;
      case 5: case 7: u.role = "skip_user"; u.skip_user = true; break;
      case 6: u.role = "skip_user, inactive"; u.skip_user = true; u.views = Views::Old; break;
      case 8: u.role = "never_existed"; u.never_existed = true; break;
      case 9: case 10: u.role = "gone from day 2"; u.gone_from_day = 2; break;
      case 11: u.role = "takes user 12's handle on day 2"; break;
      case 12: u.role = "handle taken by user 11 on day 2"; break;
      case 13: u.role = "new handle on day 2"; break;
      case 14: u.role = "unusual Unicode displayName"; break;
      case 15: u.role = "NUL in displayName from day 2"; break;
      case 16: u.role = "avatar changes on day 2"; break;
      case 17: u.role = "profile counts absent"; p.no_counts = true; break;
      case 18: u.role = "no displayName, no avatar"; p.no_display_name = p.no_avatar = true; break;
      case 19: u.role = "displayName changes on day 2"; break;
      case 20: u.role = "avatar removed on day 2"; break;
      case 21: u.role = "inactive (old views row)"; u.views = Views::Old; break;
      case 22: u.role = "inactive (no views row)"; u.views = Views::None; break;
      default: break;
    }
    u.active = u.registered && u.views == Views::Recent;

    if (i != 4) {
      p.hist_posts = scaled(static_cast<double>(p.hist_posts), scale, h(kTagScale, static_cast<std::uint64_t>(i)));
      // Keep every slot wide enough for distinct sort keys (see kMinSlot).
      p.hist_posts = std::min<std::int64_t>(p.hist_posts, (day0 - p.hist_start) / kMinSlot);
      p.hist_reposts = std::min<std::int64_t>(
          scaled(static_cast<double>(p.hist_posts) * p.repost_rate, 1.0, h(kTagScale, static_cast<std::uint64_t>(i), 1)),
          (day0 - p.hist_start) / kMinSlot);
    }
    // Accounts exist a little before their first post.
    p.account_created = p.hist_start - (1 + static_cast<Micros>(r.below(30))) * kDay - static_cast<Micros>(r.below(static_cast<std::uint64_t>(kDay)));
  }

  for (const User& u : users_)
    if (!u.never_existed && u.gone_from_day == 0) target_pool_.push_back(u.index);
}

bool Dataset::exists(int user, int day) const {
  if (user < 0 || user >= static_cast<int>(users_.size())) return false;
  const User& u = users_[static_cast<std::size_t>(user)];
  if (u.never_existed) return false;
  return u.gone_from_day == 0 || day < u.gone_from_day;
}

std::string Dataset::handle_at(int user, int day) const {
  const User& u = users_.at(static_cast<std::size_t>(user));
  if (u.registered && day >= 2) {
    if (user == 11 && params_.users > 12) return users_[12].handle;
    if (user == 12) return "user0012b.fake.test";
    if (user == 13) return "renamed0013.fake.test";
  }
  return u.handle;
}

std::optional<int> Dataset::find_actor(std::string_view actor, int day) const {
  if (actor.substr(0, 4) == "did:") {
    auto it = by_did_.find(std::string(actor));
    if (it == by_did_.end() || !exists(it->second, day)) return std::nullopt;
    return it->second;
  }
  std::string lower(actor);
  for (char& c : lower)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  std::shared_ptr<const std::unordered_map<std::string, int>> map;
  {
    std::lock_guard<std::mutex> lock(handles_mu_);
    auto it = handles_by_day_.find(day);
    if (it != handles_by_day_.end()) map = it->second;
  }
  if (!map) {
    auto built = std::make_shared<std::unordered_map<std::string, int>>();
    for (const User& u : users_)
      if (exists(u.index, day)) (*built)[handle_at(u.index, day)] = u.index;
    std::lock_guard<std::mutex> lock(handles_mu_);
    if (handles_by_day_.size() > 8) handles_by_day_.clear();
    map = handles_by_day_.emplace(day, std::move(built)).first->second;
  }
  auto it = map->find(lower);
  if (it == map->end()) return std::nullopt;
  return it->second;
}

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
    posts.push_back(o);
  };

  if (p.hist_posts > 0) {
    const Micros width = (params_.day0 - p.hist_start) / p.hist_posts;
    for (std::int64_t i = 0; i < p.hist_posts; ++i) make(p.hist_start + i * width, width, 0, -1);
  }
  const double scale = params_.posts_scale;
  for (int d = 1; d <= day; ++d) {
    std::int64_t m = 0;
    if (p.daily_fixed >= 0) {
      m = scaled(p.daily_fixed, scale, h(kTagDaily, uu, static_cast<std::uint64_t>(d), 1));
      if (user == 0 && d == 1) m = std::max<std::int64_t>(m, kShowcaseCount);
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
    if (old > 0) list->pin = static_cast<int>(h(kTagPin, uu) % old);
  }

  for (int e = 2; e <= day; ++e) {
    const auto dh = h(kTagDelete, uu, static_cast<std::uint64_t>(e));
    if (!((e == 2 && p.forced_delete_day2) || (p.random_deleter && dh % 8 == 0))) continue;
    const Micros lo = now_of_day(e) - 7 * kDay + kHour;
    const Micros hi = now_of_day(e - 1);
    std::vector<std::size_t> candidates;
    for (std::size_t i = posts.size(); i-- > 0;) {
      const OwnPost& o = posts[i];
      if (o.t < lo - kDay) break;
      if (o.created_day <= e - 1 && o.indexed <= hi && o.sort >= lo && o.deleted_day == 0 &&
          static_cast<int>(i) != list->pin)
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
    if (o.deleted_day == 0) ++list->visible;
  return list;
}

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
    if (o.deleted_day == 0) entries.push_back({o.sort, user, i, false});
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
    auto target = pick_other_post(user, h(kTagTarget, uu, serial), t, day);
    // A post can be reposted once; a second pick of the same post is dropped.
    if (!target || !reposted.insert((static_cast<std::uint64_t>(target->user) << 32) | target->index).second) return;
    auto tl = own_list(target->user, day);
    const OwnPost& o = tl->posts[target->index];
    if (o.deleted_day != 0 && o.deleted_day <= day) return;  // reposts vanish with their post
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
  out.uri = "at://" + u.did + "/app.bsky.feed.post/" + tid(o.t, h(kTagCid, uu, o.k, 7));
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
        likes += static_cast<std::int64_t>(inc.below(6));
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
      // A thread's root is its parent's root; depth stays small because only self-replies chain.
      if (pp.reply) {
        reply.root_uri = pp.reply->root_uri;
        reply.root_cid = pp.reply->root_cid;
        reply.root = pp.reply->root;
      } else {
        reply.root_uri = pp.uri;
        reply.root_cid = pp.cid;
        if (pp.deleted_day == 0 || pp.deleted_day > day) reply.root = parent;
      }
      reply.parent_uri = pp.uri;
      reply.parent_cid = pp.cid;
      if (pp.deleted_day == 0 || pp.deleted_day > day) reply.parent = parent;
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

std::optional<Profile> Dataset::profile(int user, int day) const {
  if (!exists(user, day)) return std::nullopt;
  auto own = own_list(user, day);
  return profile_with(user, day, own.get());
}

std::optional<Profile> Dataset::profile_with(int user, int day, const OwnList* own) const {
  if (!exists(user, day)) return std::nullopt;
  const User& u = users_[static_cast<std::size_t>(user)];
  const Plan& p = plans_[static_cast<std::size_t>(user)];
  const std::uint64_t seed = params_.seed;
  const auto uu = static_cast<std::uint64_t>(user);
  const Hasher h{seed};
  const bool reg = u.registered;
  Profile pr;
  pr.did = u.did;
  pr.handle = handle_at(user, day);
  if (!p.no_display_name) {
    char name[64];
    std::snprintf(name, sizeof name, reg ? "User %d" : "Other %d", user);
    pr.display_name = name;
    if (reg && user == 14) pr.display_name = "Zo\xC3\xAB O'Brien \xF0\x9F\xA6\x8B \xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7 \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D \xF0\x9F\x91\xA9\xF0\x9F\x8F\xBD\xE2\x80\x8D\xF0\x9F\x92\xBB";
    if (reg && user == 15 && day >= 2) pr.display_name = std::string("Fifteen\0Nul", 11);
    if (reg && user == 19 && day >= 2) pr.display_name = "User 19 (new name)";
  }
  int avatar_version = 0;
  bool avatar = !p.no_avatar;
  if (reg && user == 16 && day >= 2) avatar_version = 1;
  if (reg && user == 20 && day >= 2) avatar = false;
  if (avatar) {
    std::string a = "https://cdn.bsky.app/img/avatar/plain/" + u.did + "/bafkrei";
    for (std::uint64_t part = 0; part < 4; ++part)
      append_base32(a, h(kTagAvatar, uu, static_cast<std::uint64_t>(avatar_version), part), 13);
    pr.avatar = a + "@jpeg";
  }
  if (!p.no_description) pr.description = "Fake account " + std::to_string(user) + " for testing.\nNothing real here.";
  if (!p.no_banner) {
    std::string b = "https://cdn.bsky.app/img/banner/plain/" + u.did + "/bafkrei";
    for (std::uint64_t part = 0; part < 4; ++part) append_base32(b, h(kTagAvatar, uu, 99, part), 13);
    pr.banner = b + "@jpeg";
  }
  if (!p.no_counts) {
    pr.followers = p.followers0 + p.followers_growth * day;
    if (!p.no_follows_count) pr.follows = p.follows0 + p.follows_growth * day;
    pr.posts = own->visible;
  }
  pr.created_at = ms_text(p.account_created);
  const bool changed = reg && day >= 2 && (user >= 11 && user <= 20 && user != 14 && user != 17 && user != 18);
  pr.indexed_at = ms_text(changed ? now_of_day(2) - 3 * kHour : p.account_created + kHour);
  return pr;
}

namespace {
// A SQL string literal that means the same under any standard_conforming_strings setting.
std::string sql_literal(std::string_view s) {
  const bool backslash = s.find('\\') != std::string_view::npos;
  std::string out = backslash ? "E'" : "'";
  for (char c : s) {
    if (c == '\'') out += "''";
    else if (c == '\\') out += "\\\\";
    else out += c;
  }
  return out + "'";
}
std::string sql_optional(const std::optional<std::string>& s) { return s ? sql_literal(*s) : "NULL"; }
}  // namespace

std::string Dataset::seed_sql(int day) const {
  const Micros now = now_of_day(day);
  std::string out;
  out += "-- ds-fake-appview seed: seed=" + std::to_string(params_.seed) + " users=" + std::to_string(params_.users) +
         " day=" + std::to_string(day) + " (" + format_timestamp(now) + ")\n";
  out += "-- Registered accounts as of day 0, and views rows that make the active ones active.\n";
  out += "BEGIN;\n";
  for (const User& u : users_) {
    if (!u.registered) continue;
    // Accounts the API never knew still sit in the database with what the website stored.
    std::optional<Profile> p0 = profile(u.index, 0);
    std::optional<std::string> name, avatar;
    if (!u.seed_profile_null) {
      if (p0) {
        name = p0->display_name;
        avatar = p0->avatar;
      } else {
        name = "User " + std::to_string(u.index);
      }
    }
    out += "INSERT INTO users (did, handle, \"displayName\", avatar, skip_user) VALUES (" + sql_literal(u.did) +
           ", " + sql_literal(u.handle) + ", " + sql_optional(name) + ", " + sql_optional(avatar) + ", " +
           (u.skip_user ? "true" : "false") + ") ON CONFLICT DO NOTHING;\n";
  }
  for (const User& u : users_) {
    if (!u.registered || u.views == Views::None) continue;
    std::vector<Micros> dates;
    if (u.views == Views::Recent) dates = {now - kDay, now - 2 * kDay};
    else dates = {now - 30 * kDay};
    for (Micros d : dates)
      out += "INSERT INTO views (did, date, view_count) VALUES (" + sql_literal(u.did) + ", '" + format_date(d) +
             "', " + std::to_string(1 + mix64(params_.seed ^ static_cast<std::uint64_t>(d) ^ mix64(static_cast<std::uint64_t>(u.index))) % 20) +
             ") ON CONFLICT DO NOTHING;\n";
  }
  out += "COMMIT;\n";
  return out;
}

}  // namespace ds::fake
