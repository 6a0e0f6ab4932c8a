// How a flush's posts reach the tables: matched by fingerprint with the stored rows of their accounts'
// windows; only the difference is written (new posts by COPY straight into posts, changed ones by ctid).
#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "batch_internal.hpp"
#include "batch_loader.hpp"

namespace ds::load {
namespace {

// Which of the flush's accounts are in users ($1: their DIDs; answers their 0-based positions).
constexpr const char* known_accounts_sql = R"SQL(
SELECT f.i - 1 FROM unnest($1::text[]) WITH ORDINALITY AS f(did, i)
 WHERE EXISTS (SELECT 1 FROM users u WHERE u.did = f.did)
)SQL";

// Stored rows in full, for comparison by value. By version: the window rows no fingerprint
// matched (changed, deleted, or never fingerprinted), a TID scan. By URI: the few posts of a batch
// that lie outside their account's window (or whose account's user record is not in the flush).
#define DS_STORED_POST_COLUMNS                                                                      \
  "SELECT q.did, q.uri, q.likes, q.replies, q.quotes, q.reposts, q.\"createdAt\", q.sort_at,\n" \
  "       q.deleted_at IS NOT NULL, q.ctid, q.load_fp, q.load_uri_fp\n"
constexpr const char* posts_by_tid_sql = DS_STORED_POST_COLUMNS "  FROM posts q WHERE q.ctid = ANY ($1::tid[])";
constexpr const char* posts_by_uri_sql = DS_STORED_POST_COLUMNS "  FROM posts q WHERE q.uri = ANY ($1::text[])";
#undef DS_STORED_POST_COLUMNS

constexpr const char* copy_changed_sql =
    "COPY ds_load_changed (uri, likes, replies, quotes, reposts, created_at, sort_at, fp, uri_fp, values_changed, tid) "
    "FROM STDIN";

// Posts whose values (or only fingerprint) differ from the stored row, written from
// ds_load_changed; answers how many rows it wrote and how many of them had other values. The WHERE
// repeats the comparison so that a row another writer changed (or the first update below already
// updated) is not rewritten; a post marked deleted that the API returns again comes back to life.
// Both statements always run, so that a commit can send them without waiting for the first.
#define DS_UPDATE_CHANGED_POSTS(REACH, THEN)                                                              \
  "WITH u AS (\n"                                                                                         \
  "UPDATE posts p SET likes = t.likes, replies = t.replies, quotes = t.quotes, reposts = t.reposts,\n"   \
  "       \"createdAt\" = t.created_at, sort_at = t.sort_at, deleted_at = NULL, load_fp = t.fp,\n"     \
  "       load_uri_fp = t.uri_fp, \"updatedAt\" = now()\n"                                             \
  "  FROM ds_load_changed t\n"                                                                           \
  " WHERE (p.likes, p.replies, p.quotes, p.reposts, p.\"createdAt\", p.sort_at, p.deleted_at IS NOT NULL,\n" \
  "        p.load_fp, p.load_uri_fp)\n"                                                                   \
  "       IS DISTINCT FROM (t.likes, t.replies, t.quotes, t.reposts, t.created_at, t.sort_at, false, t.fp,\n" \
  "                         t.uri_fp)\n"                                                                 \
  REACH                                                                                                   \
  " RETURNING t.uri, t.values_changed)" THEN "\n"                                                         \
  "SELECT count(*), count(*) FILTER (WHERE values_changed) FROM u"

// First by the row version (ctid) the comparison read moments before: a TID scan instead of a
// primary-key descent per row, which made this update a fifth of a daily run's server time.
// p.uri = t.uri guards against a version that is no longer that post. The rows it wrote leave the
// staging table, so the second statement sees only the rest.
constexpr const char* update_changed_by_tid_sql = DS_UPDATE_CHANGED_POSTS(
    "   AND p.ctid = t.tid AND p.uri = t.uri AND p.ctid = ANY (ARRAY(SELECT tid FROM ds_load_changed))\n",
    ", done AS (DELETE FROM ds_load_changed c USING u WHERE c.uri = u.uri)");

// Then by URI: a row another writer updated meanwhile has moved (usually none are left).
// = ANY(ARRAY(...)) reaches posts through its primary key whatever the planner believes about the
// temp table.
constexpr const char* update_changed_sql = DS_UPDATE_CHANGED_POSTS(
    "   AND p.uri = t.uri AND p.uri = ANY (ARRAY(SELECT uri FROM ds_load_changed))\n", "");
#undef DS_UPDATE_CHANGED_POSTS

// Stored live posts of a complete feed's window that the feed no longer returned. A fingerprint
// describes a live row: a deleted one has none (migration 005's trigger would drop it too).
constexpr const char* mark_deleted_sql = R"SQL(
UPDATE posts SET deleted_at = now(), load_fp = NULL, "updatedAt" = now()
 WHERE uri = ANY ($1::text[]) AND deleted_at IS NULL
)SQL";

// The marker that makes the account's next run incremental: set only by a complete backfill, with
// the number of posts the backfill returned (NULL for one completed over several runs: its stored
// live posts are counted, the posts of all its runs being stored by then). It ends a progressive
// backfill's state.
constexpr const char* mark_backfilled_sql = R"SQL(
INSERT INTO ds_user_state AS s (did, backfilled_at, backfill_posts)
SELECT v.did, now(),
       COALESCE(v.n, (SELECT count(*) FROM posts p WHERE p.did = v.did AND p.deleted_at IS NULL))
  FROM unnest($1::text[], $2::integer[]) AS v(did, n)
 WHERE EXISTS (SELECT 1 FROM users u WHERE u.did = v.did)
ON CONFLICT (did) DO UPDATE SET backfilled_at = EXCLUDED.backfilled_at, backfill_posts = EXCLUDED.backfill_posts,
                                backfill_cursor = NULL, backfill_covered_to = NULL
)SQL";

// A backfill stopped at the run's limit (`partial`): where the next run continues ($2, the
// cursor), and up to when its runs have fetched everything ($3, this run's asOf). backfill_posts
// counts the stored live posts (written before this statement). No marker, so the next run
// resumes; an account that already has its marker (a replayed older stream) is left alone.
constexpr const char* save_backfill_sql = R"SQL(
INSERT INTO ds_user_state AS s (did, backfill_cursor, backfill_started_at, backfill_covered_to, backfill_posts)
SELECT v.did, v.cursor, v.as_of, v.as_of, (SELECT count(*) FROM posts p WHERE p.did = v.did AND p.deleted_at IS NULL)
  FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS v(did, cursor, as_of)
 WHERE EXISTS (SELECT 1 FROM users u WHERE u.did = v.did)
ON CONFLICT (did) DO UPDATE SET backfill_cursor = EXCLUDED.backfill_cursor,
       backfill_started_at = COALESCE(s.backfill_started_at, EXCLUDED.backfill_started_at),
       backfill_covered_to = EXCLUDED.backfill_covered_to, backfill_posts = EXCLUDED.backfill_posts
 WHERE s.backfilled_at IS NULL
)SQL";

// Full-refresh clocks restarted by this flush's feeds ($2: the UTC dates of their asOf). The newest
// date wins, so a replay of an older day never moves a clock back.
constexpr const char* restart_refresh_clocks_sql = R"SQL(
INSERT INTO ds_user_state AS s (did, refresh_clock_date)
SELECT v.did, v.d FROM unnest($1::text[], $2::date[]) AS v(did, d)
 WHERE EXISTS (SELECT 1 FROM users u WHERE u.did = v.did)
ON CONFLICT (did) DO UPDATE SET refresh_clock_date = EXCLUDED.refresh_clock_date
 WHERE s.refresh_clock_date IS NULL OR s.refresh_clock_date < EXCLUDED.refresh_clock_date
)SQL";

// A binary timestamptz counts microseconds from 2000-01-01.
constexpr Micros pg_epoch = 946'684'800'000'000;  // 2000-01-01T00:00:00Z in Unix microseconds
Micros pg_timestamp_at(const char* p) {
  const std::int64_t v = be64_at(p);
  if (v == INT64_MAX || v == INT64_MIN) return v;  // +-infinity stay beyond every real time
  return v + pg_epoch;
}

// A stored post, as read back for comparison.
struct StoredPost {
  std::string_view uri;  // points into the query result
  std::uint32_t account;  // the flush's account
  std::int32_t likes, replies, quotes, reposts;  // -1 for NULL
  Micros created_at;
  std::optional<Micros> sort_at;
  bool deleted;
  std::uint64_t tid;  // the row version read (ctid), as tid_at gives it
  std::optional<std::int64_t> fp, uri_fp;  // load_fp, load_uri_fp
  bool matched = false;  // the flush returned this post
};

// A row version's text form, (block,line), for COPY rows and array literals.
void append_tid(std::string& out, std::uint64_t tid) {
  out += '(';
  append_int(out, static_cast<std::int64_t>(tid >> 16));
  out += ',';
  append_int(out, static_cast<std::int64_t>(tid & 0xffff));
  out += ')';
}

// The rows of a posts_by_tid_sql / posts_by_uri_sql result. `account_of(did)` gives a row's
// account in the flush (rows come grouped by did, so it is asked once per run of rows); a row
// for which `keep(post)` is false is dropped.
template <class AccountOf, class Keep>
void read_stored(const PgResult& r, AccountOf account_of, Keep keep, std::vector<StoredPost>& out) {
  const PGresult* res = r.get();
  out.reserve(out.size() + static_cast<std::size_t>(r.rows()));
  std::string_view last_did;
  std::uint32_t account = 0;
  for (int i = 0; i < r.rows(); ++i) {
    const auto field = [&](int c) { return PQgetvalue(res, i, c); };
    const auto count = [&](int c) { return PQgetisnull(res, i, c) ? -1 : be32_at(field(c)); };
    const std::string_view did(field(0), static_cast<std::size_t>(PQgetlength(res, i, 0)));
    if (i == 0 || did != last_did) {
      account = account_of(did);
      last_did = did;
    }
    StoredPost s;
    s.account = account;
    s.uri = std::string_view(field(1), static_cast<std::size_t>(PQgetlength(res, i, 1)));
    s.likes = count(2);
    s.replies = count(3);
    s.quotes = count(4);
    s.reposts = count(5);
    s.created_at = pg_timestamp_at(field(6));
    if (!PQgetisnull(res, i, 7)) s.sort_at = pg_timestamp_at(field(7));
    s.deleted = *field(8) != 0;
    s.tid = tid_at(field(9));
    if (!PQgetisnull(res, i, 10)) s.fp = be64_at(field(10));
    if (!PQgetisnull(res, i, 11)) s.uri_fp = be64_at(field(11));
    if (keep(s)) out.push_back(s);
  }
}

// Indices 0..n-1 grouped by key(i) < groups, keeping their order inside a group (a counting
// sort); `start` gets each group's first position, plus the end.
template <class Key>
std::vector<std::uint32_t> group_by(std::size_t n, std::size_t groups, Key key, std::vector<std::uint32_t>& start) {
  start.assign(groups + 1, 0);
  for (std::size_t i = 0; i < n; ++i) ++start[key(i) + 1];
  for (std::size_t g = 0; g < groups; ++g) start[g + 1] += start[g];
  std::vector<std::uint32_t> next(start.begin(), start.end() - 1), out(n);
  for (std::size_t i = 0; i < n; ++i) out[next[key(i)]++] = static_cast<std::uint32_t>(i);
  return out;
}

}  // namespace

void BatchLoader::flush_posts(bool defer_updates) {
  if (posts_.empty() && feeds_.empty()) return;
  finish_window();
  // The accounts still waiting are read while the writing connection finishes the last commit,
  // begins this batch and answers which accounts are tracked.
  send_window(1);
  ensure_transaction();
  const std::size_t n_accounts = accounts_.size();
  // Everything below works account by account on sorted runs (a counting sort by account, then
  // URIs sorted inside each account), not through hash tables keyed by strings: with a million
  // posts in a daily run, random lookups into big tables were half of ds-load's own CPU time. (The
  // fingerprint tables of step 4a are small arrays of integers, one per read.)

  // 1. Which accounts are tracked: posts of any other are skipped (they could not be stored).
  std::vector<char> known(n_accounts, 0);
  {
    std::string dids;
    for (const auto& a : accounts_) append_array_element(dids, a);
    const PgResult r = exec_binary(db_, known_accounts_sql, {close_array(std::move(dids))});
    for (int i = 0; i < r.rows(); ++i) known[static_cast<std::size_t>(be64_at(PQgetvalue(r.get(), i, 0)))] = 1;
  }

  // 2. The flush's posts by account and URI; of lines with the same URI the last one wins.
  std::vector<std::uint32_t> post_start;
  std::vector<std::uint32_t> by_account =
      group_by(posts_.size(), n_accounts, [&](std::size_t i) { return posts_[i].account; }, post_start);
  std::vector<std::uint32_t> uniq;  // per account: its distinct posts, sorted by URI
  std::vector<std::uint32_t> uniq_start(n_accounts + 1, 0);
  uniq.reserve(posts_.size());
  std::vector<std::uint32_t> orphans;
  for (std::uint32_t a = 0; a < n_accounts; ++a) {
    uniq_start[a] = static_cast<std::uint32_t>(uniq.size());
    const auto first = by_account.begin() + post_start[a], last = by_account.begin() + post_start[a + 1];
    if (first == last) continue;
    if (!known[a]) {
      orphans.push_back(a);
      continue;
    }
    // Feeds come newest first and rkeys are time-ordered, so an account's URIs usually arrive in
    // descending order: reversing them is enough then (not with duplicates, whose order matters).
    const auto uri_less = [&](auto x, auto y) { return uri_of(posts_[x]) < uri_of(posts_[y]); };
    if (std::is_sorted(first, last, [&](auto x, auto y) { return uri_of(posts_[x]) >= uri_of(posts_[y]); }))
      std::reverse(first, last);
    else if (!std::is_sorted(first, last, uri_less))
      std::stable_sort(first, last, uri_less);
    for (auto it = first; it != last; ++it) {
      if (it + 1 != last && uri_of(posts_[*it]) == uri_of(posts_[*(it + 1)])) continue;  // a later line wins
      uniq.push_back(*it);
    }
  }
  uniq_start[n_accounts] = static_cast<std::uint32_t>(uniq.size());
  std::sort(orphans.begin(), orphans.end(), [&](auto x, auto y) { return accounts_[x] < accounts_[y]; });
  for (const auto a : orphans) {
    const std::int64_t n = post_start[a + 1] - post_start[a];
    stats_.posts_skipped += n;
    spdlog::warn("{} post(s) of {} skipped: the account is not in users", n, accounts_[a]);
  }

  // 3. Each tracked account with a user record in the flush: its widest window (no `since`: all
  // its posts), and its feed rows.
  std::vector<char> has_feed(n_accounts, 0);
  std::vector<std::optional<Micros>> window(n_accounts);
  for (const auto& f : feeds_) {
    if (!known[f.account]) continue;
    auto& w = window[f.account];
    if (!has_feed[f.account]) w = f.since;
    else if (w && (!f.since || *f.since < *w)) w = f.since;
    has_feed[f.account] = 1;
  }

  finish_window();
  while (send_window(1)) finish_window();  // other window starts (rare)

  // 4. The stored rows: every stored post of those windows (a deletion check needs them anyway),
  // then, by URI, the few posts found in no window. An account without a `since` has all its
  // posts in its window, so a post of it not found there is new. Most windows were read while
  // the batch's later records were being parsed (request_window); an account whose window was
  // not read, or was read narrower than it now needs (a second user record), is read here.
  {
    std::vector<std::uint32_t> missing;
    for (std::uint32_t a = 0; a < n_accounts; ++a) {
      if (!has_feed[a]) continue;
      const auto& asked = window_asked_[a];
      if (!asked.requested || (asked.since && (!window[a] || *window[a] < *asked.since))) {
        missing.push_back(a);
        window_asked_[a] = {true, window[a], 0};  // its read is numbered below
      }
    }
    // One read per window start (usually one: the run's).
    std::sort(missing.begin(), missing.end(), [&](auto x, auto y) { return window[x] < window[y]; });
    for (auto first = missing.begin(); first != missing.end();) {
      const auto last = std::find_if(first, missing.end(), [&](auto a) { return window[a] != window[*first]; });
      const std::vector<std::uint32_t> same(first, last);
      for (const auto a : same) window_asked_[a].read = static_cast<std::uint32_t>(window_reads_.size());
      window_reads_.push_back(read_window(same, window[*first]));
      first = last;
    }
  }

  // 4a. A post whose values fingerprint is among its window's rows is stored exactly so: unchanged,
  // and that row is accounted for. One whose URI fingerprint is there changed: it is updated by
  // that row's version. Only the rest (new posts, rows without fingerprints, posts found in no
  // window), usually none in a daily run, are compared by value below. Fingerprints cover the URI,
  // so they cannot match another account's row of the same read.
  std::vector<std::uint32_t> fresh, unknown;  // unknown: not in a window, to look up by URI
  struct Changed {
    std::uint32_t post;
    std::uint64_t tid;    // its stored row's version
    bool values_changed;  // false when only its fingerprints are missing or stale
  };
  std::vector<Changed> changed;
  std::vector<char> settled(posts_.size(), 0);
  for (std::uint32_t a = 0; a < n_accounts; ++a) {
    if (!has_feed[a] || uniq_start[a] == uniq_start[a + 1]) continue;
    auto& read = window_reads_[window_asked_[a].read];
    for (std::uint32_t u = uniq_start[a]; u < uniq_start[a + 1]; ++u) {
      const StagedPost& p = posts_[uniq[u]];
      WindowRow* row = read.find(p.fp);
      if (row) {
        ++stats_.posts_unchanged;
      } else {
        // A row without a values fingerprint (or marked deleted) is compared by value below.
        row = read.find_uri(p.uri_fp);
        if (!row || !row->has_fp) continue;
        changed.push_back({uniq[u], row->tid, true});
      }
      row->matched = true;
      settled[uniq[u]] = 1;
    }
  }

  // 4b. The window rows left over (gone, or without fingerprints), read in full by
  // version. An account read twice (its window widened) keeps the rows of its latest read only:
  // `unsettled` remembers which read listed each version.
  std::vector<StoredPost> stored;
  PgResult tid_rows, uri_rows;
  {
    std::vector<std::pair<std::uint64_t, std::uint32_t>> unsettled;  // (tid, read)
    for (std::uint32_t k = 0; k < window_reads_.size(); ++k) {
      for (const auto& r : window_reads_[k].rows)
        if (!r.matched) unsettled.emplace_back(r.tid, k);
    }
    if (!unsettled.empty()) {
      std::sort(unsettled.begin(), unsettled.end());
      std::string tids;
      for (std::size_t i = 0; i < unsettled.size(); ++i) {
        if (i > 0 && unsettled[i].first == unsettled[i - 1].first) continue;
        tids += tids.empty() ? "{\"" : ",\"";
        append_tid(tids, unsettled[i].first);
        tids += '"';
      }
      tid_rows = exec_binary(db_, posts_by_tid_sql, {close_array(std::move(tids))});
      const auto account_by_did = [this](std::string_view did) {
        const auto it = account_ids_.find(std::string(did));
        return it == account_ids_.end() ? std::uint32_t{UINT32_MAX} : it->second;
      };
      read_stored(
          tid_rows, account_by_did,
          [&](const StoredPost& p) {
            const auto a = p.account;
            return a != UINT32_MAX && has_feed[a] &&
                   std::binary_search(unsettled.begin(), unsettled.end(),
                                      std::pair{p.tid, window_asked_[a].read});
          },
          stored);
    }
  }
  std::vector<std::uint32_t> stored_start;
  std::vector<std::uint32_t> stored_by_account =
      group_by(stored.size(), n_accounts, [&](std::size_t i) { return stored[i].account; }, stored_start);
  for (std::uint32_t a = 0; a < n_accounts; ++a) {
    // Read in (did, sort_at) order, which for time-ordered rkeys is usually URI order already.
    const auto first = stored_by_account.begin() + stored_start[a], last = stored_by_account.begin() + stored_start[a + 1];
    const auto less = [&](auto x, auto y) { return stored[x].uri < stored[y].uri; };
    if (!std::is_sorted(first, last, less)) std::sort(first, last, less);
  }

  // 5. Merge each account's remaining posts with those stored rows: new, changed or unchanged.
  const auto classify = [&](std::uint32_t i, const StoredPost& s) {
    const StagedPost& p = posts_[i];
    const bool same = s.likes == p.likes && s.replies == p.replies && s.quotes == p.quotes &&
                      s.reposts == p.reposts && s.created_at == p.created_at && s.sort_at &&
                      *s.sort_at == p.sort_at && !s.deleted;
    if (same && s.fp == p.fp && s.uri_fp == p.uri_fp) {
      ++stats_.posts_unchanged;
    } else {
      changed.push_back({i, s.tid, !same});
    }
  };
  for (std::uint32_t a = 0; a < n_accounts; ++a) {
    std::uint32_t k = stored_start[a];
    const std::uint32_t k_end = stored_start[a + 1];
    for (std::uint32_t u = uniq_start[a]; u < uniq_start[a + 1]; ++u) {
      if (settled[uniq[u]]) continue;
      const std::string_view uri = uri_of(posts_[uniq[u]]);
      while (k < k_end && stored[stored_by_account[k]].uri < uri) ++k;
      if (k < k_end && stored[stored_by_account[k]].uri == uri) {
        StoredPost& s = stored[stored_by_account[k]];
        s.matched = true;
        classify(uniq[u], s);
      } else if (has_feed[a] && !window[a]) {
        fresh.push_back(uniq[u]);
      } else {
        unknown.push_back(uniq[u]);
      }
    }
  }
  if (!unknown.empty()) {
    std::string uris;
    for (const auto i : unknown) append_array_element(uris, uri_of(posts_[i]));
    uri_rows = exec_binary(db_, posts_by_uri_sql, {close_array(std::move(uris))});
    std::vector<StoredPost> found;
    read_stored(
        uri_rows, [](std::string_view) { return std::uint32_t{0}; }, [](const StoredPost&) { return true; }, found);
    std::unordered_map<std::string_view, const StoredPost*> by_uri;
    for (const auto& f : found) by_uri.emplace(f.uri, &f);
    for (const auto i : unknown) {
      const auto it = by_uri.find(uri_of(posts_[i]));
      if (it == by_uri.end()) fresh.push_back(i);
      else classify(i, *it->second);
    }
  }
  if (!fresh.empty()) insert_new_posts(fresh);
  if (!changed.empty()) {
    if (changed_staged_) db_.exec("TRUNCATE ds_load_changed");  // an earlier flush of the batch used it
    changed_staged_ = true;
    copy_streamed(db_, copy_changed_sql, changed.size(), [&](std::string& row, std::size_t c) {
      const StagedPost& p = posts_[changed[c].post];
      append_field(row, uri_of(p));
      row += '\t';
      append_post_values(row, p);
      row += changed[c].values_changed ? "\tt\t" : "\tf\t";
      append_tid(row, changed[c].tid);
      row += '\n';
    });
    if (defer_updates) {
      deferred_changed_ = static_cast<std::int64_t>(changed.size());
    } else {
      const PgResult by_tid = db_.exec(update_changed_by_tid_sql);
      const PgResult by_uri = db_.exec(update_changed_sql);
      count_changed(static_cast<std::int64_t>(changed.size()), by_tid, by_uri);
    }
  }

  // 6. Feed outcomes. A complete feed returned every live post of its window (all posts for a
  // backfill): stored live posts of the window it did not return were deleted on Bluesky.
  // Incomplete feeds prove nothing. Returned posts include those carried from an earlier flush.
  const auto carried_of = [&](std::uint32_t a) -> const std::vector<std::string>* {
    const auto it = carried_.find(accounts_[a]);
    return it == carried_.end() ? nullptr : &it->second;
  };
  const auto in_flush = [&](std::uint32_t a, std::string_view uri) {
    return std::binary_search(uniq.begin() + uniq_start[a], uniq.begin() + uniq_start[a + 1], uri,
                              [&](const auto& x, const auto& y) {
                                if constexpr (std::is_same_v<std::decay_t<decltype(x)>, std::string_view>)
                                  return x < uri_of(posts_[y]);
                                else
                                  return uri_of(posts_[x]) < y;
                              });
  };
  std::string gone;
  for (const auto& f : feeds_) {
    if (!f.complete || !known[f.account]) continue;
    const auto* carried = carried_of(f.account);
    for (std::uint32_t k = stored_start[f.account]; k < stored_start[f.account + 1]; ++k) {
      StoredPost& s = stored[stored_by_account[k]];
      if (s.matched || s.deleted) continue;  // returned, or already marked (also by another record)
      const Micros key = s.sort_at ? *s.sort_at : s.created_at;
      if (f.since && key < *f.since) continue;
      if (carried && std::binary_search(carried->begin(), carried->end(), s.uri)) continue;
      // Returned, though another row took its place in the matching: a URI fingerprint collision.
      if (in_flush(f.account, s.uri)) continue;
      append_array_element(gone, s.uri);
      s.deleted = true;
    }
  }
  if (!gone.empty()) stats_.posts_deleted += affected_rows(db_.exec(mark_deleted_sql, {close_array(std::move(gone))}));

  // The backfill marker, with the number of distinct posts the backfill returned. A backfill
  // resumed from an earlier run's cursor completes like a fresh one; its deletion marking above
  // covered only its window (`since`), since this run saw only that and the history's rest.
  {
    std::string dids, counts;
    std::vector<char> marked(n_accounts, 0);
    for (const auto& f : feeds_) {
      if (!f.complete || (f.since && !f.resumed) || !known[f.account] || marked[f.account]) continue;
      marked[f.account] = 1;
      append_array_element(dids, accounts_[f.account]);
      counts += counts.empty() ? "{" : ",";
      if (f.resumed) {
        counts += "NULL";
        continue;
      }
      std::int64_t n = uniq_start[f.account + 1] - uniq_start[f.account];
      if (const auto* carried = carried_of(f.account))
        for (const auto& u : *carried)
          if (!in_flush(f.account, u)) ++n;
      append_int(counts, std::min<std::int64_t>(n, INT_MAX));
    }
    if (!dids.empty())
      stats_.backfills_marked += affected_rows(db_.exec(mark_backfilled_sql, {close_array(std::move(dids)), counts + "}"}));
  }

  // Backfills to continue: their cursor and how far they got. Nothing was marked deleted for them.
  {
    std::string dids, cursors, times;
    for (const auto& f : feeds_) {
      if (!f.cursor || !known[f.account]) continue;
      append_array_element(dids, accounts_[f.account]);
      append_array_element(cursors, *f.cursor);
      append_array_element(times, format_timestamp(f.as_of));
    }
    if (!dids.empty())
      stats_.backfills_saved += affected_rows(db_.exec(
          save_backfill_sql, {close_array(std::move(dids)), close_array(std::move(cursors)), close_array(std::move(times))}));
  }

  {
    std::string dids, dates;
    for (const auto& f : feeds_) {
      if (!f.restarts_clock || !known[f.account]) continue;
      append_array_element(dids, accounts_[f.account]);
      append_array_element(dates, format_date(f.as_of));
    }
    if (!dids.empty())
      stats_.refresh_clocks += affected_rows(
          db_.exec(restart_refresh_clocks_sql, {close_array(std::move(dids)), close_array(std::move(dates))}));
  }

  // Later window reads of these accounts must see what this flush wrote (request_window).
  for (std::uint32_t a = 0; a < n_accounts; ++a)
    if (known[a]) written_open_.insert(accounts_[a]);

  // Carry the URIs of accounts whose user record has not come yet; forget those of accounts whose has.
  for (std::uint32_t a = 0; a < n_accounts; ++a) {
    if (has_feed[a]) {
      carried_.erase(accounts_[a]);
    } else if (known[a] && uniq_start[a] < uniq_start[a + 1]) {
      auto& c = carried_[accounts_[a]];  // kept sorted, for the binary searches above
      for (std::uint32_t u = uniq_start[a]; u < uniq_start[a + 1]; ++u) c.emplace_back(uri_of(posts_[uniq[u]]));
      std::sort(c.begin(), c.end());
      c.erase(std::unique(c.begin(), c.end()), c.end());
    }
  }

  clear_flush();
}

void BatchLoader::clear_flush() {
  posts_.clear();
  feeds_.clear();
  uris_.clear();
  accounts_.clear();
  last_account_ = 0;
  account_ids_.clear();
  clear_windows();
}

void BatchLoader::count_changed(std::int64_t staged, const PgResult& by_tid, const PgResult& by_uri) {
  // Rows written, and of those, rows whose values changed (the rest only got their fingerprint).
  const std::int64_t written = by_tid.int64(0, 0) + by_uri.int64(0, 0);
  const std::int64_t updated = by_tid.int64(0, 1) + by_uri.int64(0, 1);
  stats_.posts_updated += updated;
  // Same values with only a new fingerprint, or changed meanwhile by another writer.
  stats_.posts_unchanged += staged - updated;
  spdlog::debug("{} changed posts written ({} with new values, {} fingerprints only)", written, updated,
                written - updated);
}

void BatchLoader::defer_changed_updates(std::string& sql) {
  if (deferred_changed_ < 0) return;
  sent_.changed = deferred_changed_;
  append_statement(sql, update_changed_by_tid_sql);
  append_statement(sql, update_changed_sql);
}

}  // namespace ds::load
