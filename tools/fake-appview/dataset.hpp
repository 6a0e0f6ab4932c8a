// The fake AppView's world: a deterministic, generated set of Bluesky accounts, profiles and feeds
// that changes day by day. The server serves it; the end-to-end checker reads the same truth here.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ds/clock.hpp"

namespace ds::fake {

// ---------------------------------------------------------------------------------------------
// Overview
//
// Everything is a pure function of (DatasetParams, account, post, day): two Dataset objects with
// the same params give byte-identical answers, and nothing is stored per day. Posts are generated
// lazily per account and cached (bounded), so 2000 accounts cost little until asked for.
//
// Days. Day d's clock is now_of_day(d) = day0 + d * 24h (day0 = 2026-11-01T06:00:00Z). Day 0 holds
// the history only; every day d >= 1 adds posts and reposts created in (now(d-1), now(d)), so all
// of them are indexed before now(d). Pipeline runs are meant to use DS_NOW = now_of_day(d).
//
// Accounts. users() lists params.users registered accounts (index 0..users-1, the ones seed_sql
// puts in the database), then a few API-only accounts (registered = false) that exist only as
// authors of reposted / replied-to posts and must never be written by the pipeline. Roles are
// fixed by index (they need users >= 24 to all exist; the default is 60):
//    0  10,600 posts (x posts_scale; 10,770 records, see "createdAt oddities"), 15 new a day; its
//       first day-1 posts show every createdAt oddity, served or (never indexed) a record only
//    1  1,200 posts; 2  2,500 posts (more than 10 pages of 100); both delete posts on day 2
//    3  no posts at all;  4  only reposts of others, no own posts
//    5, 7  skip_user (active);  6  skip_user (inactive)
//    8  never_existed: in the database, unknown to the API on every day (omitted by getProfiles,
//       400 "Profile not found" from getAuthorFeed)
//    9, 10  gone_from_day = 2: normal on day 1, unknown to the API from day 2 on
//   11, 12  handle swap on day 2: 11 takes 12's day-0 handle, 12 gets "user0012b.fake.test"
//   13  new handle on day 2 ("renamed0013.fake.test")
//   14  displayName with emoji, RTL text, a ZWJ sequence and an apostrophe (valid UTF-8)
//   15  displayName on day >= 2 contains U+0000 (sent as \u0000; the pipeline stores U+FFFD)
//   16  avatar changes on day 2, and echo (below);  19  displayName changes on day 2
//   20  avatar removed on day 2
//   17  followersCount, followsCount and postsCount all absent (0 to the client)
//   18  no displayName, no avatar
//   21, 22  inactive (21: views row 30 days old; 22: no views row)
//   23+ ordinary: post counts 0 (1 in 12) or 10..400, ~15% inactive, some without displayName
//       (1 in 6) or avatar (1 in 5) or followsCount (1 in 20), some deleting posts on days >= 2.
//
// Request-economy scenarios (DatasetParams::economy_cases, off by default; issue 13). With it on,
// accounts 23..27 (users >= 28) leave the ordinary pool: active, no pin, no reposts, never random
// deleters, their post counts not scaled by posts_scale, and the likes of their posts under a
// week old grow by at least 1 every day (counts always present). Their new posts per day are fixed
// (none on days not listed, nor after day 8), and each deletes at most one post, on a given day:
//   23 "+1 -1 inside" (economy::kPlusMinusInside): 40 history posts up to day 0, 2 new posts on
//      day 1 and 1 on day 2; on day 3 exactly one new post and the deletion of its oldest own post
//      with sort_at in [now(3) - 7 days + 1 hour, now(2)]: postsCount equals day 2's, and getPosts
//      of the stored window leaves the deleted post out.
//   24 "+1 -1 older" (kPlusMinusOlder): 40 history posts, 1 new post on day 1; on day 4 exactly
//      one new post and the deletion of its newest own post with sort_at < now(3) - 7 days (older
//      than the day-3 and the day-4 window): postsCount equals day 3's and getPosts of the window
//      misses nothing, the case no cheap signal reveals.
//   25 quiet with window posts (kQuietWithWindow): 40 history posts ending 10 days before day 0,
//      4 posts on day 1, nothing new or deleted afterwards: on days 2..7 its window holds exactly
//      the day-1 posts, whose likes grow every day (on day 8 they leave the window).
//   26 quiet without window posts (kQuietNoWindow): 30 history posts ending 10 days before day 0,
//      never a new post or a deletion.
//   27 plain deletion (kPlainDeletion): 40 history posts, 1 new post on each of days 1..4; on
//      day 5 no new post and the deletion of its oldest own post with sort_at in
//      [now(5) - 7 days + 1 hour, now(4)]: postsCount drops by one.
// Account 24's deletion is the one exception to the deletion rule below.
//
// Echo (account 16, ds::fake::echo; the cursor bug of docs/real-appview.md, every day): 400
// history posts over 200 days, 120 posts a day (not scaled), no reposts of others, no deletions.
// On each day d one self-repost sits between its 99th and 100th newest indexed post of day d: in
// day d's feed it is the 100th item, the last of a full first page, with the repost's time inside
// the 7-day window while its post is older than now(d) - 8 days; the next page opens with day d's
// posts. A refresh that took the page's last own post for the cursor's time would stop there.
//
// Sparse activity (DatasetParams::activity = sparse; bench/requests): the ordinary accounts, and
// only they, are recast from a stream of their own, so roles 0..22 and the economy cases stay as
// they are. 3 in 1000 have 120,000..180,000 history posts over three years and post about twice a
// day; 1 in 40 post 24..60 times a day (history 2,000..10,000 posts); the rest post on a day with a
// chance of their own, log-uniform in [0.02, 0.9] (mean about 0.23), one post (1 in 4 times two),
// and delete (as below) on 1 day in 32 instead of 1 in 8. The 1 in 12 without posts keep none.
//
// Profiles grow: followersCount/followsCount rise every day; postsCount is the number of the
// account's own posts visible that day (indexed, not deleted).
//
// Feeds. author_feed(u, d) is the whole feed as getAuthorFeed serves it on day d (filter
// posts_with_replies, no pin), newest first: the account's own posts (is_own_post()), reposts of
// other accounts' posts (is_repost_of_other(): reason Repost, post.author != u) and, as real feeds
// have them (docs/real-appview.md, findings 3 and 11), self-reposts (is_self_repost(): reason
// Repost, post.author == u == reason.by), in 1 in 4 ordinary accounts (a third of their repost
// slots) and echo's. A self-repost is the same post again: its own item is in the feed too, at
// the post's own sort time. A repost's sort_at is the repost time, an hour or more after its post.
// sort_at of an own post = least(parsed createdAt, indexedAt) when createdAt parses, else
// indexedAt. Within one feed sort_at values are distinct even at millisecond precision, so the
// server's millisecond cursor never splits or skips an item.
//
// createdAt oddities (CreatedAtKind): microseconds, "+00:00", "-05:00", no timezone, no fraction,
// "not a date", "YYYY-02-30T10:00:00Z", "0001-01-01T00:00:00.000Z", "1970-01-01T00:00:00.000Z",
// a year in the future, a few seconds after indexedAt (clock skew), and no createdAt at all.
// indexedAt is always a valid millisecond "...Z" timestamp a fraction of a second after creation.
// Bluesky's AppView does not index a record whose createdAt is no lexicon datetime (no timezone,
// "not a date", none at all; appview_indexes(), docs/real-appview.md): such a post is a record in
// the repository only (unindexed_posts()), in no feed, getPosts answer, postsCount or pin; a reply
// to it shows its parent (or root) as notFoundPost and a repost of it is left out. About 1.6% of
// the random posts, and 3 of account 0's showcase. The economy accounts' posts are all indexed.
//
// Counts: like/reply/repost/quote counts at day d never decrease with d; recent posts gain the
// most. ~10% of posts have no quoteCount, ~1% have no counts at all (absent = 0 to the client;
// Counts holds nullopt for an absent field).
//
// Deletions: on day e >= 2 some accounts delete 1-2 own posts (always accounts 1 and 2 on day 2).
// Only indexed posts that were visible on day e-1 (indexedAt <= now(e-1)) and whose sort_at lies
// within [now(e) - 7 days + 1 hour, now(e-1)] are deleted, so a 7-day refresh window on day e always
// covers them (the one exception: economy account 24, above). A deleted post vanishes from the
// feed (and its reposts with it) and from getPosts from day e on.
//
// Using it as the truth (the end-to-end checker), for pipeline runs on days 1, 2, ... with
// DS_NOW = now_of_day(d) against a database loaded with seed_sql(1):
//  - selected on day d: registered && active (every registered account with --simple-query);
//  - skip_user: no API call, no posts, no snapshot;
//  - profile(u, d) == nullopt (never_existed, gone): no snapshot that day, nothing new stored;
//  - otherwise the posts of u are the own items (is_own_post()) of author_feed(u, d), each once (a
//    self-repost item is the post again, decided by its own item; the stage writes a URI once):
//    on the first run (no backfill marker) all of them, with counts as of d; on later runs only
//    items with sort_at >= now_of_day(d) - 7 days are refreshed (counts as of d), older rows keep
//    the counts of the run that last saw them. posts."createdAt" = post.stored_created_at(),
//    absent counts are 0. A stored post with sort_at inside that window that is missing from
//    author_feed(u, d) was deleted (deleted_on(u, e) lists them) and must stop counting;
//  - nothing is ever stored for reposts of others' posts or for accounts with registered == false;
//  - snapshot (u, format_date(now_of_day(d))): followers/following/posts from profile(u, d)
//    (absent = 0), likes/replies/quotes/reposts = sums over u's live stored rows;
//  - the users row: handle, displayName, avatar of profile(u, d) (a U+0000 in a displayName is
//    stored as U+FFFD per docs/records.md); accounts 11 and 12 swap handles on day 2.
// ---------------------------------------------------------------------------------------------

// How the ordinary accounts (23+) post. `normal` keeps the end-to-end tests' busy world (60% of
// accounts post every day); `sparse` is closer to Bluesky's spread, for the request benchmark.
enum class Activity { normal, sparse };

struct DatasetParams {
  std::uint64_t seed = 1;
  int users = 60;            // registered accounts
  double posts_scale = 1.0;  // multiplies post and repost counts (0 < scale <= 1000)
  Micros day0 = 1793512800LL * micros_per_second;  // 2026-11-01T06:00:00Z
  bool economy_cases = false;  // accounts 23..27 play the request-economy scenarios (see Overview)
  Activity activity = Activity::normal;  // how the ordinary accounts post (see Overview)
};

// The request-economy accounts (DatasetParams::economy_cases) and their days.
namespace economy {
constexpr int kPlusMinusInside = 23, kPlusMinusInsideDay = 3;
constexpr int kPlusMinusOlder = 24, kPlusMinusOlderDay = 4;
constexpr int kQuietWithWindow = 25;
constexpr int kQuietNoWindow = 26;
constexpr int kPlainDeletion = 27, kPlainDeletionDay = 5;
constexpr int kFirst = 23, kLast = 27;
}  // namespace economy

// The echo account (Overview, role 16): the page shape of docs/real-appview.md's cursor bug, daily.
namespace echo {
constexpr int kAccount = 16;
constexpr int kDailyPosts = 120;     // own posts a day, not scaled by posts_scale
constexpr int kPageItem = 100;       // the self-repost's place in day d's feed (getAuthorFeed's limit)
constexpr int kSubjectAgeDays = 8;   // its post is older than now(d) - this many days
}  // namespace echo

// A registered account's presence in the `views` table as seed_sql writes it.
enum class Views { Recent, Old, None };

struct User {
  int index = 0;
  std::string did;     // did:plc: + 24 base32 characters
  std::string handle;  // handle on day 0 (the one seed_sql stores)
  bool registered = false;     // in the database (seed_sql)
  bool active = false;         // has a views row within 7 days of days 1..5 (default selection)
  bool skip_user = false;
  bool never_existed = false;  // unknown to the API on every day
  int gone_from_day = 0;       // > 0: unknown to the API from this day on
  Views views = Views::None;
  bool seed_profile_null = false;  // seed_sql stores NULL displayName and avatar
  std::string role;                // short description, for messages
};

enum class CreatedAtKind : std::uint8_t {
  Normal,          // "2025-05-05T01:30:17.912Z", before indexedAt
  Microseconds,    // "2025-05-05T01:30:17.912345Z"
  OffsetZero,      // "2025-05-05T01:30:17.912+00:00"
  OffsetOther,     // "2025-05-04T20:30:17.912-05:00" (same instant)
  NoTimezone,      // "2025-05-05T01:30:17.912": never indexed by the AppView
  NoFraction,      // "2025-05-05T01:30:17Z"
  Invalid,         // "not a date": never indexed by the AppView
  InvalidCalendar, // "2025-02-30T10:00:00Z" (indexed: JavaScript's Date reads it as March 2)
  FarPast,         // "0001-01-01T00:00:00.000Z" (sorts last in the feed)
  Epoch,           // "1970-01-01T00:00:00.000Z"
  Future,          // a year after the real creation time
  Skew,            // a few seconds after indexedAt
  Missing,         // record has no createdAt: never indexed by the AppView
};
constexpr int kCreatedAtKinds = 13;
const char* to_string(CreatedAtKind k);

// Whether Bluesky's AppView indexes a post record with this createdAt (docs/real-appview.md,
// finding 6): it validates the record against the lexicon, where createdAt is a required
// `datetime`, and drops a record that fails. A post it does not index exists for no endpoint.
constexpr bool appview_indexes(CreatedAtKind k) {
  return k != CreatedAtKind::NoTimezone && k != CreatedAtKind::Invalid && k != CreatedAtKind::Missing;
}

struct Counts {
  std::optional<std::int64_t> likes, replies, reposts, quotes;  // nullopt: absent in the API
};

struct Profile {
  std::string did, handle;
  std::optional<std::string> display_name, avatar, description, banner;
  std::optional<std::int64_t> followers, follows, posts;  // nullopt: absent (0 to the client)
  std::string created_at, indexed_at;
};

struct PostRef {
  int user = -1;
  std::uint32_t index = 0;  // position in that account's own-post list (creation order)
};

struct ReplyInfo {
  std::string root_uri, root_cid, parent_uri, parent_cid;
  // The posts behind them, when they still exist that day (else the API shows notFoundPost).
  std::optional<PostRef> root, parent;
};

struct Post {
  PostRef ref;
  std::string author_did;
  std::string uri;  // at://<did>/app.bsky.feed.post/<rkey>, unique in the dataset
  std::string cid;
  std::optional<std::string> created_at_raw;  // record.createdAt exactly as sent; nullopt: absent
  std::optional<Micros> created_at;  // created_at_raw as ds::parse_timestamp reads it; nullopt: absent/invalid
  CreatedAtKind kind = CreatedAtKind::Normal;
  Micros indexed_at = 0;
  std::string indexed_at_text;
  Micros sort_at = 0;  // least(created_at, indexed_at), or indexed_at
  Counts counts;       // as of the day asked for
  std::string text;
  std::optional<ReplyInfo> reply;
  int created_day = 0;  // 0: history before day0; d: created in (now(d-1), now(d))
  int deleted_day = 0;  // 0: never deleted (as far as the day asked for knows)

  // What the pipeline stores as posts."createdAt": the parsed createdAt, else indexedAt.
  Micros stored_created_at() const { return created_at.value_or(indexed_at); }
};

struct FeedItem {
  enum class Reason { None, Repost, Pin };
  Reason reason = Reason::None;
  Post post;
  Micros sort_at = 0;  // the feed's sort key: post.sort_at, or the repost time for reposts
  int by = -1;         // the feed's owner (reason.by for reposts)
  // An own post at its own sort time: the item the pipeline stores (once per post).
  bool is_own_post() const { return reason != Reason::Repost; }
  bool is_repost_of_other() const { return reason == Reason::Repost && post.ref.user != by; }
  // The owner's repost of its own post: the same post again, at the repost's time.
  bool is_self_repost() const { return reason == Reason::Repost && post.ref.user == by; }
};

// What the server needs to page a feed without building every item.
struct FeedEntry {
  Micros sort_at;
  std::int32_t user;   // author of the post (the owner for own posts)
  std::uint32_t post;  // index in that author's own-post list
  bool repost;
};
struct FeedIndex {
  std::vector<FeedEntry> entries;  // newest first
  std::optional<FeedEntry> pinned;
};

class Dataset {
 public:
  explicit Dataset(DatasetParams params);
  ~Dataset();
  Dataset(const Dataset&) = delete;
  Dataset& operator=(const Dataset&) = delete;

  const DatasetParams& params() const { return params_; }
  Micros now_of_day(int day) const { return params_.day0 + static_cast<Micros>(day) * micros_per_day; }
  static constexpr int kMaxDay = 3650;

  // Registered accounts first (index < params().users), then API-only accounts.
  const std::vector<User>& users() const { return users_; }
  int registered_count() const { return params_.users; }

  // Whether the API knows the account on that day (not never_existed, not gone yet).
  bool exists(int user, int day) const;
  std::string handle_at(int user, int day) const;
  // A DID or a handle (case-insensitive) as the API resolves it on that day.
  std::optional<int> find_actor(std::string_view did_or_handle, int day) const;

  std::optional<Profile> profile(int user, int day) const;

  // The whole feed of an existing account on that day, newest first (empty when it does not exist).
  std::vector<FeedItem> author_feed(int user, int day) const;
  // The post shown first with includePins=true, if the account has one.
  std::optional<FeedItem> pinned_item(int user, int day) const;
  // Own posts deleted exactly on `day`, as they were on day-1.
  std::vector<Post> deleted_on(int user, int day) const;
  // Own post records created by `day` that the AppView never indexed (!appview_indexes(kind)):
  // in the account's repository, in no answer of the API. For tests that prove their absence.
  std::vector<Post> unindexed_posts(int user, int day) const;
  // The post getPosts finds under this URI on that day: an own post of an account the API knows
  // that day, already created, indexed (appview_indexes) and not deleted. The URI must match exactly.
  std::optional<PostRef> find_post(std::string_view uri, int day) const;

  // For the server: the sorted index (cached) and one entry expanded.
  std::shared_ptr<const FeedIndex> feed_index(int user, int day) const;
  FeedItem expand(const FeedEntry& e, int owner, int day, FeedItem::Reason reason) const;
  Post post(PostRef ref, int day) const;

  // SQL registering the registered accounts as of day 0 and the views rows that make the active
  // ones active on `day` (rows dated day-1 and day-2, so they stay active through day+5). Plain
  // idempotent INSERT ... ON CONFLICT DO NOTHING statements in one transaction.
  std::string seed_sql(int day) const;

  struct OwnList;  // generated own posts of one account up to some day
 private:
  struct Plan;
  std::shared_ptr<const OwnList> own_list(int user, int day) const;
  std::shared_ptr<const OwnList> build_own_list(int user, int day) const;
  std::shared_ptr<const FeedIndex> build_feed_index(int user, int day) const;
  std::optional<PostRef> pick_other_post(int user, std::uint64_t key, Micros before, int day) const;
  std::optional<Profile> profile_with(int user, int day, const OwnList* own) const;
  void economy_role(User& u, Plan& p) const;
  void sparse_role(User& u, Plan& p) const;

  DatasetParams params_;
  std::vector<User> users_;
  std::vector<Plan> plans_;
  std::vector<int> target_pool_;  // accounts whose posts others repost and reply to
  std::unordered_map<std::string, int> by_did_;
  Micros far_past_ = 0;

  template <class V>
  struct Lru;
  std::unique_ptr<Lru<OwnList>> own_cache_;
  std::unique_ptr<Lru<FeedIndex>> feed_cache_;
  mutable std::mutex handles_mu_;
  mutable std::map<int, std::shared_ptr<const std::unordered_map<std::string, int>>> handles_by_day_;
};

// Deterministic 64-bit mixing (splitmix64 finaliser; a bijection) and a generator built on it.
std::uint64_t mix64(std::uint64_t x);
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next();
  std::uint64_t below(std::uint64_t n) { return n ? next() % n : 0; }  // bias is irrelevant here
  double unit();  // [0, 1)
  bool chance(double p) { return unit() < p; }

 private:
  std::uint64_t state_;
};

}  // namespace ds::fake
