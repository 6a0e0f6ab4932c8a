// The fake AppView's accounts (roles fixed by index, see dataset.hpp), their profiles day by day and
// the SQL that registers them. Every value derives from hashes of (seed, account, post, day).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "dataset_internal.hpp"

namespace ds::fake {
using namespace detail;

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
    p.hist_end = day0;
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
    // Accounts 0-2: a long history of `posts` over `history_days`, `daily` new posts a day.
    const auto prolific = [&](const char* role, std::int64_t posts, int history_days, int daily, double reposts) {
      u.role = role;
      p.hist_posts = posts;
      p.hist_start = day0 - history_days * kDay;
      p.daily_fixed = daily;
      p.repost_rate = reposts;
    };
    // Accounts 1 and 2: delete posts on day 2, and one history post has a far-past createdAt.
    const auto deleter = [&](CreatedAtKind far_past) {
      p.forced_delete_day2 = true;
      p.has_far_past = true;
      p.far_past_kind = far_past;
    };
    // Accounts 3 and 4: no own posts, ever; `daily_reposts` reposts of others a day.
    const auto without_own_posts = [&](const char* role, int daily_reposts) {
      u.role = role;
      p.hist_posts = 0;
      p.daily_none = true;
      p.daily_reposts_fixed = daily_reposts;
      p.has_pin = false;
    };
    switch (u.registered ? i : -1) {
      // 10,770 records: the ~1.6% the AppView does not index leave about 10,600 posts for the API.
      case 0: prolific("10,600 posts", 10770, 1095, 15, 0.1); p.has_pin = true; break;
      case 1: prolific("1,200 posts", 1200, 730, 4, 0.05); deleter(CreatedAtKind::FarPast); break;
      case 2:
        prolific("2,500 posts", 2500, 1095, 6, 0.15);
        deleter(CreatedAtKind::Epoch);
        p.has_pin = true;
        break;
      case 3: without_own_posts("no posts", 0); p.repost_rate = 0; break;
      case 4:
        without_own_posts("reposts only", 3);
        p.hist_start = day0 - 365 * kDay;
        p.hist_reposts = scaled(40, scale, h(kTagScale, 4));
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
      case echo::kAccount:
        // Also the echo feed: no reposts of others, so day d's newest items are its own posts.
        u.role = "avatar changes on day 2; echo: a daily self-repost ends a page";
        p.echo = true;
        p.hist_posts = 400;
        p.hist_start = day0 - 200 * kDay;
        p.daily_fixed = echo::kDailyPosts;
        p.repost_rate = 0;
        p.daily_reposts_fixed = 0;
        break;
      case 17: u.role = "profile counts absent"; p.no_counts = true; break;
      case 18: u.role = "no displayName, no avatar"; p.no_display_name = p.no_avatar = true; break;
      case 19: u.role = "displayName changes on day 2"; break;
      case 20: u.role = "avatar removed on day 2"; break;
      case 21: u.role = "inactive (old views row)"; u.views = Views::Old; break;
      case 22: u.role = "inactive (no views row)"; u.views = Views::None; break;
      default: break;
    }
    const bool economy = params_.economy_cases && u.registered && i >= economy::kFirst && i <= economy::kLast;
    if (economy) economy_role(u, p);
    else if (params_.activity == Activity::sparse && u.registered && i > 22 && p.hist_posts > 0) sparse_role(u, p);
    u.active = u.registered && u.views == Views::Recent;
    // Some ordinary accounts repost their own posts now and then, as real ones do (a stream of
    // its own, so every other draw stays as it was).
    if (u.registered && i > 22 && !economy && h(kTagSelfRepost, static_cast<std::uint64_t>(i)) % 4 == 0)
      p.self_repost_one_in = 3;

    if (i != 4 && !economy && !p.echo) {
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

// The request-economy scenarios of dataset.hpp's overview: exact counts, so not scaled.
void Dataset::economy_role(User& u, Plan& p) const {
  const Micros day0 = params_.day0;
  u.views = Views::Recent;
  p.random_deleter = p.has_far_past = p.has_pin = false;
  p.repost_rate = 0;
  p.hist_reposts = 0;
  p.daily_reposts_fixed = 0;
  p.no_counts = false;
  p.scheduled = p.steady_counts = true;
  p.hist_posts = 40;
  p.hist_start = day0 - 120 * kDay;
  auto& s = p.schedule;
  switch (u.index) {
    case economy::kPlusMinusInside:
      u.role = "economy: +1 -1 inside the window on day 3";
      s[1] = 2;
      s[2] = s[3] = 1;
      p.delete_day = economy::kPlusMinusInsideDay;
      break;
    case economy::kPlusMinusOlder:
      u.role = "economy: +1 -1 older than the window on day 4";
      s[1] = s[4] = 1;
      p.delete_day = economy::kPlusMinusOlderDay;
      p.delete_older = true;
      break;
    case economy::kQuietWithWindow:
      u.role = "economy: quiet, window posts from day 1";
      p.hist_end = day0 - 10 * kDay;
      s[1] = 4;
      break;
    case economy::kQuietNoWindow:
      u.role = "economy: quiet, no window posts";
      p.hist_posts = 30;
      p.hist_start = day0 - 200 * kDay;
      p.hist_end = day0 - 10 * kDay;
      break;
    default:
      u.role = "economy: a deletion without a new post on day 5";
      s[1] = s[2] = s[3] = s[4] = 1;
      p.delete_day = economy::kPlainDeletionDay;
      break;
  }
}

// Sparse activity (dataset.hpp's overview): drawn from a stream of its own, so the plan's other
// draws, and every other account, are the same as in the normal world.
void Dataset::sparse_role(User& u, Plan& p) const {
  const Micros day0 = params_.day0;
  Rng r(Hasher{params_.seed}(kTagSparse, static_cast<std::uint64_t>(u.index)));
  const auto kind = r.below(1000);
  p.delete_one_in = 32;
  if (kind < 3) {
    u.role = "sparse: 120,000+ posts";
    p.hist_posts = 120'000 + static_cast<std::int64_t>(r.below(60'001));
    p.hist_start = day0 - 1095 * kDay;
    p.daily_fixed = 2;
  } else if (kind < 28) {
    u.role = "sparse: dozens of posts a day";
    p.hist_posts = 2'000 + static_cast<std::int64_t>(r.below(8'001));
    p.hist_start = day0 - 730 * kDay;
    p.daily_fixed = 24 + static_cast<int>(r.below(37));
  } else {
    u.role = "sparse: posts on some days";
    p.daily_chance = std::exp(std::log(0.02) + r.unit() * (std::log(0.9) - std::log(0.02)));
  }
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
