// Reading the stored windows of a batch's accounts on the second, read-only connection: requested
// at each user record, sent in groups while later records are parsed, matched by fingerprint.
#include <algorithm>
#include <cstdint>

#include "batch_internal.hpp"
#include "batch_loader.hpp"

namespace ds::load {
namespace {

// The stored posts of some accounts' refresh window ($1 DIDs, $2 the window start, '-infinity' for
// everything), in binary: each row's fingerprints (of its values, NULL for a row without one or
// marked deleted; of its URI) and its version (ctid), nothing else. A daily run reads every post
// of its windows; sending three fixed-size columns instead of the row's ten halved the server's
// time for it. A post whose values fingerprint is there is unchanged; one whose URI fingerprint is
// there changed, and is updated by that ctid; only the rows neither explains (gone, or without
// fingerprints) are read in full, by ctid (posts_by_tid_sql).
// - One index scan with `did = ANY($1)` reaches every account at once: in the server about 5x
//   cheaper than an index scan per account (a LATERAL join).
// - The accounts of one read share their window start (a run gives every account the same one,
//   or none for a backfill): joining each row to a per-account start cost a third of the read.
// - `sort_at >= $2` bounds that scan on (did, sort_at): a daily run reads each account's last
//   days, not its whole history, which an account with years of posts would otherwise cost daily.
// - Rows from before migration 002 have no sort_at: the second branch finds them by "createdAt"
//   (an index descent per account that finds nothing once they are gone).
constexpr const char* window_posts_sql = R"SQL(
SELECT CASE WHEN q.deleted_at IS NULL THEN q.load_fp END, q.load_uri_fp, q.ctid
  FROM posts q WHERE q.did = ANY ($1::text[]) AND q.sort_at >= $2::timestamptz
UNION ALL
SELECT CASE WHEN q.deleted_at IS NULL THEN q.load_fp END, q.load_uri_fp, q.ctid
  FROM posts q WHERE q.did = ANY ($1::text[]) AND q.sort_at IS NULL AND q."createdAt" >= $2::timestamptz
)SQL";

// A group of accounts per window read while parsing: fewer round trips, still early enough to
// overlap the parsing. Whatever is pending at the flush goes out then, however few.
constexpr std::size_t group_size = 64;

// The parameters of window_posts_sql: the accounts' DIDs and their window start.
std::vector<PgParam> window_params(const std::vector<std::uint32_t>& accounts, const std::vector<std::string>& dids,
                                   std::optional<Micros> since) {
  std::string d;
  for (const auto a : accounts) append_array_element(d, dids[a]);
  return {close_array(std::move(d)), since ? format_timestamp(*since) : std::string("-infinity")};
}

// Adds `rows[i]` under `key` to an open-addressing table of a power-of-two size.
void table_add(std::vector<std::uint32_t>& slots, std::int64_t key, std::size_t i) {
  const std::size_t mask = slots.size() - 1;
  std::size_t at = static_cast<std::uint64_t>(key) & mask;
  while (slots[at] != 0) at = (at + 1) & mask;
  slots[at] = static_cast<std::uint32_t>(i + 1);
}

// Hands `take` what connection `c` has answered so far for its query in flight, without waiting;
// `take` clears `inflight` at the end of the answers.
template <class Take>
void take_answered(PGconn* c, bool& inflight, const char* sql, Take take) {
  if (!inflight) return;
  if (!PQconsumeInput(c)) {
    inflight = false;
    throw_error(c, nullptr, sql);
  }
  while (inflight && !PQisBusy(c)) take(PgResult(PQgetResult(c)));
}

}  // namespace

BatchLoader::WindowRead BatchLoader::parse_window(const PgResult& r) {
  WindowRead out;
  const PGresult* res = r.get();
  const auto n = static_cast<std::size_t>(r.rows());
  out.rows.reserve(n);
  std::size_t size = 16;
  while (size < 2 * n) size *= 2;
  out.by_fp.assign(size, 0);
  out.by_uri_fp.assign(size, 0);
  for (int i = 0; i < r.rows(); ++i) {
    WindowRow row{0, 0, tid_at(PQgetvalue(res, i, 2)), !PQgetisnull(res, i, 0), !PQgetisnull(res, i, 1), false};
    if (row.has_fp) {
      row.fp = be64_at(PQgetvalue(res, i, 0));
      table_add(out.by_fp, row.fp, out.rows.size());
    }
    if (row.has_uri_fp) {
      row.uri_fp = be64_at(PQgetvalue(res, i, 1));
      table_add(out.by_uri_fp, row.uri_fp, out.rows.size());
    }
    out.rows.push_back(row);
  }
  return out;
}

// A row matched already is passed over: only a collision gets there, and the search goes on.
BatchLoader::WindowRow* BatchLoader::WindowRead::lookup(const std::vector<std::uint32_t>& slots, std::int64_t key,
                                                        bool WindowRow::*has, std::int64_t WindowRow::*value) {
  const std::size_t mask = slots.size() - 1;
  for (std::size_t at = static_cast<std::uint64_t>(key) & mask; slots[at] != 0; at = (at + 1) & mask) {
    WindowRow& r = rows[slots[at] - 1];
    if (r.*has && r.*value == key && !r.matched) return &r;
  }
  return nullptr;
}

BatchLoader::WindowRead BatchLoader::read_window(const std::vector<std::uint32_t>& accounts,
                                                 std::optional<Micros> since) {
  return parse_window(exec_binary(db_, window_posts_sql, window_params(accounts, accounts_, since)));
}

void BatchLoader::request_window(std::uint32_t account, std::optional<Micros> since) {
  // Read at the flush instead (flush_posts step 4), once the writes it must see have answered.
  if (written_open_.count(accounts_[account]) || written_sent_.count(accounts_[account])) return;
  auto& want = window_want_[account];
  const bool sent = window_asked_[account].requested;
  auto group = window_pending_.end();
  if (!sent)
    group = std::find_if(window_pending_.begin(), window_pending_.end(), [&](const WindowGroup& g) {
      return std::find(g.accounts.begin(), g.accounts.end(), account) != g.accounts.end();
    });
  const bool first = !sent && group == window_pending_.end();
  if (first) want = since;
  else if (want && (!since || *since < *want)) want = since;
  else return;
  if (!sent) {  // (re)filed with the accounts of the same window start; a widened sent one is read at the flush
    if (group != window_pending_.end()) {
      group->accounts.erase(std::find(group->accounts.begin(), group->accounts.end(), account));
      if (group->accounts.empty()) window_pending_.erase(group);
    }
    auto same = std::find_if(window_pending_.begin(), window_pending_.end(),
                             [&](const WindowGroup& g) { return g.since == want; });
    if (same == window_pending_.end()) same = window_pending_.insert(window_pending_.end(), WindowGroup{want, {}});
    same->accounts.push_back(account);
  }
  if (!window_inflight_) send_window(group_size);
  else if (++records_since_poll_ % 16 == 0) poll();
}

bool BatchLoader::send_window(std::size_t min_accounts) {
  const auto full = std::find_if(window_pending_.begin(), window_pending_.end(),
                                 [&](const WindowGroup& g) { return g.accounts.size() >= min_accounts; });
  if (full == window_pending_.end()) return false;
  const std::vector<PgParam> params = window_params(full->accounts, accounts_, full->since);
  const char* values[2] = {params[0]->c_str(), params[1]->c_str()};
  if (!PQsendQueryParams(reader_->get(), window_posts_sql, 2, nullptr, values, nullptr, nullptr, 1))
    throw_error(reader_->get(), nullptr, window_posts_sql);
  for (const auto a : full->accounts)
    window_asked_[a] = {true, full->since, static_cast<std::uint32_t>(window_reads_.size())};
  ++reads_ahead_;
  window_pending_.erase(full);
  window_inflight_ = true;
  return true;
}

void BatchLoader::poll() {
  take_answered(reader_->get(), window_inflight_, window_posts_sql,
                [this](PgResult r) { take_window_result(std::move(r)); });
  take_answered(db_.get(), commit_inflight_, "COMMIT", [this](PgResult r) { take_commit_result(std::move(r)); });
  if (!window_inflight_) send_window(group_size);
}

void BatchLoader::finish_window() {
  while (window_inflight_) take_window_result(PgResult(PQgetResult(reader_->get())));
}

void BatchLoader::take_window_result(PgResult r) {
  if (!r.get()) {  // the end of the query's answers
    window_inflight_ = false;
    return;
  }
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
    window_inflight_ = false;
    throw_error(reader_->get(), r.get(), window_posts_sql);  // rollback() drains what is left
  }
  window_reads_.push_back(parse_window(r));
}

void BatchLoader::clear_windows() {
  window_asked_.clear();
  window_want_.clear();
  window_reads_.clear();
  window_pending_.clear();
}

}  // namespace ds::load
