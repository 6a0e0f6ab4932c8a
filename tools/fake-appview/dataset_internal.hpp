// What the fake AppView's generator files (dataset.cpp, feeds.cpp) share and nobody else needs:
// the hashing, the time and identifier helpers, and the compact per-account structures behind Dataset.
#pragma once
#include <cmath>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "dataset.hpp"

namespace ds::fake {
namespace detail {

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
  kTagSparse, kTagSelfRepost,
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

inline Micros floor_to(Micros t, Micros unit) {
  Micros q = t / unit;
  if (t % unit < 0) --q;
  return q * unit;
}

inline void append_base32(std::string& out, std::uint64_t v, int chars) {
  for (int i = 0; i < chars; ++i) {
    out += kBase32[v & 31];
    v >>= 5;
  }
}

// A TID record key like real post rkeys: creation microseconds and a 10-bit clock id.
inline std::string tid(Micros t, std::uint64_t clock_id) {
  const std::uint64_t v = ((static_cast<std::uint64_t>(t) & ((1ULL << 53) - 1)) << 10) | (clock_id & 1023);
  std::string s(13, '2');
  for (int i = 0; i < 13; ++i) s[static_cast<std::size_t>(i)] = kTidAlphabet[(v >> (60 - 5 * i)) & 31];
  return s;
}

inline std::string ms_text(Micros t) { return format_timestamp(floor_to(t, kMs)); }

inline std::int64_t scaled(double n, double scale, std::uint64_t h) {
  const double x = n * scale;
  const double whole = std::floor(x);
  const double frac = x - whole;
  return static_cast<std::int64_t>(whole) + (static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0) < frac ? 1 : 0);
}

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

inline bool has_created(CreatedAtKind k) {
  return k != CreatedAtKind::Invalid && k != CreatedAtKind::InvalidCalendar && k != CreatedAtKind::Missing;
}

// The at:// URI of an own post: its rkey is a TID of the creation instant, as real rkeys are.
inline std::string post_uri(const std::string& did, const OwnPost& o, const Hasher& h, std::uint64_t user) {
  return "at://" + did + "/app.bsky.feed.post/" + tid(o.t, h(kTagCid, user, o.k, 7));
}

inline std::uint64_t cache_key(int user, int day) {
  return (static_cast<std::uint64_t>(user) << 16) | static_cast<std::uint64_t>(day);
}

}  // namespace detail

struct Dataset::OwnList {
  std::vector<detail::OwnPost> posts;  // creation order (= time order)
  int pin = -1;
  std::int64_t visible = 0;  // not deleted on the list's day
};

struct Dataset::Plan {
  std::int64_t hist_posts = 0;
  Micros hist_start = 0;  // start of the history (posts and reposts)
  Micros hist_end = 0;    // end of the history's own posts (day0 unless an economy role says otherwise)
  int daily_fixed = -1;   // own posts per day (before scaling) when >= 0
  bool daily_none = false;
  double daily_chance = 0;  // > 0: one post (or two) on a day with this chance (sparse activity)
  double repost_rate = 0;
  std::int64_t hist_reposts = 0;
  int daily_reposts_fixed = -1;
  std::uint64_t self_repost_one_in = 0;  // > 0: one repost slot in this many reposts an own post
  bool echo = false;  // the echo role (dataset.hpp, ds::fake::echo): a daily self-repost as the page's last item
  bool forced_delete_day2 = false;
  bool random_deleter = false;
  std::uint64_t delete_one_in = 8;  // a random deleter deletes on one day in this many
  // Economy roles (dataset.hpp): own posts per day fixed by `schedule` (index = day, none after
  // day 8), one deletion on `delete_day` (inside the window, or older than it), steady likes.
  bool scheduled = false;
  std::int8_t schedule[9] = {};
  int delete_day = 0;
  bool delete_older = false;
  bool steady_counts = false;
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

}  // namespace ds::fake
