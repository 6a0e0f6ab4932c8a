// ds-e2e-check: computes what the database must hold after a sequence of daily runs, from the fake
// AppView's dataset and the rules of docs/design.md alone, and compares every row of users, posts and
// snapshots (plus the run log) with what the pipeline stored. Exit 0 when they match.
//
// Independence from the pipeline: nothing here calls stage code. The expected createdAt/sortAt are
// computed by PostgreSQL's own timestamp parser from the raw API strings (an oracle the pipeline's
// parser must agree with), windows and deletions are simulated here from the dataset's truth.
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "dataset.hpp"
#include "ds/clock.hpp"
#include "ds/config.hpp"
#include "ds/pg.hpp"

namespace {

using ds::Micros;
namespace fake = ds::fake;

struct ExpUser {
  std::string did, handle;
  std::optional<std::string> display_name, avatar;
  bool skip_user = false;
};
struct ExpPost {
  std::string uri, did;
  std::int64_t likes = 0, replies = 0, quotes = 0, reposts = 0;
  std::optional<std::string> created_raw;
  Micros indexed_at = 0, sort_at = 0;
  bool deleted = false;
};
struct ExpSnapshot {
  std::string did, date;
  std::int64_t followers = 0, following = 0, posts = 0, likes = 0, replies = 0, quotes = 0, reposts = 0;
};

std::string nul_to_replacement(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\0') out += "\xEF\xBF\xBD";
    else out += c;
  }
  return out;
}

void field(std::string& row, const std::optional<std::string>& v) {
  if (v) ds::PgConnection::append_copy_field(row, *v);
  else ds::PgConnection::append_copy_null(row);
  row += '\t';
}
void field(std::string& row, std::int64_t v) { row += std::to_string(v) + '\t'; }
void flag(std::string& row, bool v) { field(row, std::optional<std::string>(v ? "t" : "f")); }
void end_row(std::string& row) { row.back() = '\n'; }

// COPYs one row per element of `rows` into `table`; `fields(buf, element)` appends its fields.
template <class Rows, class Fields>
void copy_rows(ds::PgConnection& db, const std::string& table, const Rows& rows, Fields fields) {
  std::string buf;
  db.copy_begin("COPY " + table + " FROM STDIN");
  for (const auto& row : rows) {
    buf.clear();
    fields(buf, row);
    end_row(buf);
    db.copy_send(buf);
  }
  db.copy_end();
}

int report(ds::PgConnection& db, const std::string& what, const std::string& sql) {
  auto r = db.exec(sql);
  if (r.rows() == 0) {
    std::printf("ok   %s\n", what.c_str());
    return 0;
  }
  std::printf("FAIL %s: %d rows differ; first ones:\n", what.c_str(), r.rows());
  for (int i = 0; i < r.rows() && i < 12; ++i) {
    std::string line = "     ";
    for (int c = 0; c < r.columns(); ++c) {
      line += std::string(PQfname(r.get(), c)) + "=" + (r.is_null(i, c) ? "NULL" : std::string(r.text(i, c))) + " ";
    }
    std::printf("%s\n", line.c_str());
  }
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ds-e2e-check: compares the database with what the dataset says it must hold", "ds-e2e-check"};
  std::string db_url, days_arg;
  fake::DatasetParams params;
  int runs = -1;
  bool all_users = false;
  app.add_option("--db", db_url, "Database URL")->required();
  app.add_option("--days", days_arg, "Comma-separated days that were run, in order (e.g. 1,2)")->required();
  app.add_option("--seed", params.seed, "Dataset seed (as given to ds-fake-appview)");
  app.add_option("--users", params.users, "Dataset users (as given to ds-fake-appview)");
  app.add_flag("--economy-cases", params.economy_cases, "The dataset's request-economy scenarios were on");
  app.add_option("--runs", runs, "Expected number of completed snapshot_logs rows");
  app.add_flag("--all", all_users, "The runs used --all (every non-skip user, active or not)");
  CLI11_PARSE(app, argc, argv);

  std::vector<int> days;
  {
    std::stringstream ss(days_arg);
    for (std::string d; std::getline(ss, d, ',');) days.push_back(std::stoi(d));
  }
  fake::Dataset data(params);
  ds::PgConnection db(ds::database_params(db_url));

  // The starting point: the users table as seeded (the e2e script copies it before any run).
  std::map<std::string, ExpUser> users;
  {
    auto r = db.exec(R"(SELECT did, handle, "displayName", avatar, coalesce(skip_user,false) FROM e2e_seed_users)");
    for (int i = 0; i < r.rows(); ++i)
      users[std::string(r.text(i, 0))] = {std::string(r.text(i, 0)), std::string(r.text(i, 1)), r.optional_text(i, 2),
                                          r.optional_text(i, 3), r.text(i, 4) == "t"};
  }

  std::map<std::string, ExpPost> posts;
  std::map<std::string, std::set<std::string>> posts_of;  // did -> uris
  std::set<std::string> backfilled;
  std::vector<ExpSnapshot> snapshots;
  std::map<std::string, int> snapshots_per_date;

  for (const int day : days) {
    const Micros now = data.now_of_day(day);
    const Micros since = now - 7 * ds::micros_per_day;
    const std::string date = ds::format_date(now);
    std::set<std::string> updated_today;
    for (int u = 0; u < data.registered_count(); ++u) {
      const fake::User& user = data.users()[u];
      if (user.skip_user || !(user.active || all_users)) continue;
      const auto prof = data.profile(u, day);
      if (!prof) continue;  // gone: no request succeeds, nothing changes, no snapshot
      ExpUser& row = users[user.did];
      row.handle = prof->handle;
      row.display_name = prof->display_name ? std::optional(nul_to_replacement(*prof->display_name)) : std::nullopt;
      row.avatar = prof->avatar;
      updated_today.insert(user.did);

      const bool backfill = !backfilled.count(user.did);
      std::set<std::string> seen;
      for (const fake::FeedItem& item : data.author_feed(u, day)) {
        // A self-repost is the same post again (stored once, counted once): its own item, at the
        // post's own sort time, decides whether the window holds it.
        if (!item.is_own_post() || item.post.author_did != user.did) continue;
        if (!backfill && item.sort_at < since) continue;
        const fake::Post& p = item.post;
        ExpPost& e = posts[p.uri];
        e = ExpPost{p.uri, user.did, p.counts.likes.value_or(0), p.counts.replies.value_or(0),
                    p.counts.quotes.value_or(0), p.counts.reposts.value_or(0), p.created_at_raw, p.indexed_at,
                    item.sort_at, false};
        posts_of[user.did].insert(p.uri);
        seen.insert(p.uri);
      }
      for (const auto& uri : posts_of[user.did]) {
        ExpPost& e = posts[uri];
        if ((backfill || e.sort_at >= since) && !seen.count(uri)) e.deleted = true;
      }
      backfilled.insert(user.did);
      ExpSnapshot s{user.did, date, prof->followers.value_or(0), prof->follows.value_or(0), prof->posts.value_or(0)};
      for (const auto& uri : posts_of[user.did]) {
        const ExpPost& e = posts[uri];
        if (e.deleted) continue;
        s.likes += e.likes;
        s.replies += e.replies;
        s.quotes += e.quotes;
        s.reposts += e.reposts;
      }
      // A rerun of the same day replaces that day's snapshot.
      std::erase_if(snapshots, [&](const ExpSnapshot& x) { return x.did == s.did && x.date == s.date; });
      snapshots.push_back(s);
    }
    // A handle taken by an account updated today is released by any other row holding it: that
    // row keeps its DID as handle until its own next profile fetch (docs/design.md, Database).
    std::map<std::string, std::string> holder;
    for (const auto& did : updated_today) holder[users[did].handle] = did;
    for (auto& [did, row] : users)
      if (!updated_today.count(did) && holder.count(row.handle)) row.handle = did;
    snapshots_per_date[date] = 0;
    for (const auto& s : snapshots)
      if (s.date == date) ++snapshots_per_date[date];
  }

  db.exec("DROP TABLE IF EXISTS pg_temp.exp_users, pg_temp.exp_posts, pg_temp.exp_snapshots");
  db.exec(R"(CREATE TEMP TABLE exp_users (did text, handle text, "displayName" text, avatar text, skip_user bool))");
  db.exec("CREATE TEMP TABLE exp_posts (uri text, did text, likes bigint, replies bigint, quotes bigint, reposts bigint,"
          " created_raw text, indexed_at timestamptz, sort_at timestamptz, deleted bool)");
  db.exec("CREATE TEMP TABLE exp_snapshots (did text, date date, followers bigint, following bigint, posts bigint,"
          " likes bigint, replies bigint, quotes bigint, reposts bigint)");
  copy_rows(db, "exp_users", users, [](std::string& buf, const auto& entry) {
    const ExpUser& u = entry.second;
    field(buf, u.did);
    field(buf, u.handle);
    field(buf, u.display_name);
    field(buf, u.avatar);
    flag(buf, u.skip_user);
  });
  copy_rows(db, "exp_posts", posts, [](std::string& buf, const auto& entry) {
    const ExpPost& p = entry.second;
    field(buf, p.uri);
    field(buf, p.did);
    for (auto v : {p.likes, p.replies, p.quotes, p.reposts}) field(buf, v);
    field(buf, p.created_raw);
    field(buf, std::optional<std::string>(ds::format_timestamp(p.indexed_at)));
    field(buf, std::optional<std::string>(ds::format_timestamp(p.sort_at)));
    flag(buf, p.deleted);
  });
  copy_rows(db, "exp_snapshots", snapshots, [](std::string& buf, const ExpSnapshot& s) {
    field(buf, s.did);
    field(buf, s.date);
    for (auto v : {s.followers, s.following, s.posts, s.likes, s.replies, s.quotes, s.reposts}) field(buf, v);
  });
  // PostgreSQL parses the raw createdAt: the oracle for "store what parses, else indexedAt".
  db.exec(R"(CREATE OR REPLACE FUNCTION pg_temp.try_ts(t text) RETURNS timestamptz LANGUAGE plpgsql AS
             $$ BEGIN RETURN t::timestamptz; EXCEPTION WHEN others THEN RETURN NULL; END $$)");
  db.exec("SET TIME ZONE 'UTC'");

  int failures = 0;
  std::printf("expected: %zu users, %zu posts (%zu deleted), %zu snapshots over days %s\n", users.size(), posts.size(),
              static_cast<std::size_t>(std::count_if(posts.begin(), posts.end(), [](auto& p) { return p.second.deleted; })),
              snapshots.size(), days_arg.c_str());
  failures += report(db, "oracle: dataset sortAt = least(PostgreSQL-parsed createdAt, indexedAt)",
                     "SELECT uri, created_raw, indexed_at, sort_at FROM exp_posts WHERE sort_at <> CASE WHEN "
                     "pg_temp.try_ts(created_raw) IS NULL THEN indexed_at ELSE least(pg_temp.try_ts(created_raw), indexed_at) END");
  const std::string users_cols = R"(did::text, handle::text, "displayName"::text, avatar, coalesce(skip_user,false) AS skip_user)";
  failures += report(db, "users: stored rows that should not be there or differ",
                     "SELECT " + users_cols + " FROM users EXCEPT SELECT * FROM exp_users");
  failures += report(db, "users: expected rows missing or different",
                     "SELECT * FROM exp_users EXCEPT SELECT " + users_cols + " FROM users");
  const std::string post_cols =
      R"(uri::text, did::text, likes::bigint, replies::bigint, quotes::bigint, reposts::bigint, "createdAt", sort_at, deleted_at IS NOT NULL AS deleted)";
  const std::string exp_post_cols =
      "uri, did, likes, replies, quotes, reposts, coalesce(pg_temp.try_ts(created_raw), indexed_at), "
      "CASE WHEN pg_temp.try_ts(created_raw) IS NULL THEN indexed_at ELSE least(pg_temp.try_ts(created_raw), indexed_at) END, deleted";
  failures += report(db, "posts: stored rows that should not be there or differ (reposts of others included)",
                     "SELECT " + post_cols + " FROM posts EXCEPT SELECT " + exp_post_cols + " FROM exp_posts");
  failures += report(db, "posts: expected rows missing or different",
                     "SELECT " + exp_post_cols + " FROM exp_posts EXCEPT SELECT " + post_cols + " FROM posts");
  const std::string snap_cols = "did::text, date, followers::bigint, following::bigint, posts::bigint, likes::bigint, "
                                "replies::bigint, quotes::bigint, reposts::bigint";
  failures += report(db, "snapshots: stored rows that should not be there or differ",
                     "SELECT " + snap_cols + " FROM snapshots EXCEPT SELECT * FROM exp_snapshots");
  failures += report(db, "snapshots: expected rows missing or different",
                     "SELECT * FROM exp_snapshots EXCEPT SELECT " + snap_cols + " FROM snapshots");
  // The invariant, on the database alone: the latest snapshot totals = sums over live posts.
  failures += report(db, "invariant: latest snapshots equal the sums over live posts",
                     "SELECT s.did, s.likes, p.likes AS live_likes, s.replies, p.replies AS live_replies, s.quotes, "
                     "p.quotes AS live_quotes, s.reposts, p.reposts AS live_reposts FROM snapshots s LEFT JOIN "
                     "(SELECT did, sum(likes) likes, sum(replies) replies, sum(quotes) quotes, sum(reposts) reposts "
                     "FROM posts WHERE deleted_at IS NULL GROUP BY did) p ON p.did = s.did WHERE s.date = '" +
                         ds::format_date(data.now_of_day(days.back())) +
                         "' AND (s.likes, s.replies, s.quotes, s.reposts) IS DISTINCT FROM "
                         "(coalesce(p.likes,0), coalesce(p.replies,0), coalesce(p.quotes,0), coalesce(p.reposts,0))");
  failures += report(db, "backfill markers: exactly the users whose full history was fetched",
                     "(SELECT did::text FROM ds_user_state WHERE backfilled_at IS NOT NULL EXCEPT SELECT DISTINCT did FROM "
                     "exp_snapshots) UNION ALL (SELECT DISTINCT did FROM exp_snapshots EXCEPT SELECT did::text FROM "
                     "ds_user_state WHERE backfilled_at IS NOT NULL)");
  if (runs >= 0) {
    failures += report(db, "run log: every run completed with its snapshot count",
                       "SELECT id, status, total_users, error FROM snapshot_logs WHERE status <> 'completed' OR "
                       "time_completed IS NULL OR duration IS NULL OR total_users IS NULL");
    auto r = db.exec("SELECT count(*) FROM snapshot_logs");
    if (r.int64(0, 0) != runs) {
      std::printf("FAIL run log: %lld rows, want %d\n", static_cast<long long>(r.int64(0, 0)), runs);
      ++failures;
    } else {
      std::printf("ok   run log: %d rows\n", runs);
    }
    auto last = db.exec("SELECT total_users FROM snapshot_logs ORDER BY id DESC LIMIT 1");
    const int want = snapshots_per_date[ds::format_date(data.now_of_day(days.back()))];
    if (last.rows() != 1 || last.int64(0, 0) != want) {
      std::printf("FAIL run log: last run total_users=%s, want %d\n", last.rows() ? std::string(last.text(0, 0)).c_str() : "none", want);
      ++failures;
    } else {
      std::printf("ok   run log: last run snapshotted %d users\n", want);
    }
  }
  std::printf("%s\n", failures ? "e2e check FAILED" : "e2e check passed");
  return failures ? 1 : 0;
}
