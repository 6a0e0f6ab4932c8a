// ds-fetch-profiles: batching, de-duplication and in-order output over the shared HTTP client.
// Never drops a user: every input user comes out as ok, gone or failed (with the reason).
#include "profile_fetcher.hpp"

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "ds/clock.hpp"
#include "ds/exit_codes.hpp"
#include "ds/log.hpp"
#include "profiles_parser.hpp"

namespace ds::profiles {

namespace {
std::string trim_base(const std::string& base) {
  std::string b = base;
  while (!b.empty() && b.back() == '/') b.pop_back();
  return b;
}
}  // namespace

std::string get_profiles_url(const std::string& base_url, const std::vector<std::string>& actors) {
  std::string url = trim_base(base_url) + "/xrpc/app.bsky.actor.getProfiles";
  char sep = '?';
  for (const auto& a : actors) {
    url += sep;
    url += "actors=";
    url += url_encode(a);
    sep = '&';
  }
  return url;
}

ProfileFetcher::ProfileFetcher(FetcherOptions options, HttpClient& http, OutputWriter& out)
    : options_(std::move(options)), http_(http), out_(out) {
  options_.batch_size = std::clamp<std::size_t>(options_.batch_size, 1, 25);
  options_.max_buffered_users = std::max<std::size_t>(options_.max_buffered_users, options_.batch_size);
}

void ProfileFetcher::add_user(UserRecord&& user) {
  const std::uint64_t seq = next_seq_++;
  window_.push_back(Slot{std::move(user), false});
  Slot& slot = window_.back();
  auto [it, fresh] = answers_.try_emplace(slot.user.did);
  if (!fresh) {
    ++stats_.duplicates;
    if (it->second.done) apply(slot, it->second);
    else it->second.waiting.push_back(seq);
    return;
  }
  it->second.waiting.push_back(seq);
  batch_.push_back(slot.user.did);
  if (batch_.size() >= options_.batch_size) submit_batch();
}

void ProfileFetcher::submit_batch() {
  if (batch_.empty()) return;
  submit(std::move(batch_));
  batch_.clear();
  http_.poll(0);  // start it now rather than at the next wait
}

void ProfileFetcher::submit(std::vector<std::string> dids) {
  ++stats_.batches;
  const std::string url = get_profiles_url(options_.base_url, dids);
  http_.get(url, [this, dids = std::move(dids)](HttpResult& r) { return on_batch(dids, r); });
}

HttpVerdict ProfileFetcher::on_batch(const std::vector<std::string>& dids, HttpResult& r) {
  if (!r.ok()) {
    // A 400 names the whole batch; if one actor is malformed the rest still deserve an answer,
    // so split it and ask again (costs requests only when it happens).
    if (r.status == 400 && dids.size() > 1) {
      spdlog::warn("getProfiles answered {} for a batch of {}; asking again in halves",
                   r.describe(), dids.size());
      const auto mid = dids.begin() + static_cast<std::ptrdiff_t>(dids.size() / 2);
      submit(std::vector<std::string>(dids.begin(), mid));
      submit(std::vector<std::string>(mid, dids.end()));
      return HttpVerdict::done;
    }
    const std::string why = r.describe() + " (after " + std::to_string(r.attempt) + " attempts)";
    spdlog::warn("getProfiles failed for {} users: {}", dids.size(), why);
    for (const auto& d : dids) answer(d, ProfileStatus::failed, nullptr, why);
    return HttpVerdict::done;
  }
  ProfilesPage page;
  if (const std::string err = parse_get_profiles(r.body, page); !err.empty()) {
    if (!r.last_attempt) {
      spdlog::debug("getProfiles: {} (attempt {}); retrying", err, r.attempt);
      return HttpVerdict::retry;
    }
    const std::string why = err + " (after " + std::to_string(r.attempt) + " attempts)";
    spdlog::warn("getProfiles failed for {} users: {}", dids.size(), why);
    for (const auto& d : dids) answer(d, ProfileStatus::failed, nullptr, why);
    return HttpVerdict::done;
  }
  std::unordered_map<std::string_view, const Profile*> found;
  for (const auto& f : page.profiles) found.emplace(f.did, &f.profile);
  std::unordered_map<std::string_view, const std::string*> problems;
  for (const auto& p : page.problems) {
    ++stats_.bad_items;
    if (!p.did.empty()) problems.emplace(p.did, &p.reason);
  }
  for (const auto& d : dids) {
    if (auto f = found.find(d); f != found.end()) answer(d, ProfileStatus::ok, f->second, {});
    else if (auto p = problems.find(d); p != problems.end())
      answer(d, ProfileStatus::failed, nullptr, "unusable profile in response: " + *p->second);
    else answer(d, ProfileStatus::gone, nullptr, {});  // the API leaves out unknown/deleted/suspended
  }
  return HttpVerdict::done;
}

void ProfileFetcher::answer(const std::string& did, ProfileStatus status, const Profile* profile,
                            const std::string& error) {
  auto it = answers_.find(did);
  if (it == answers_.end() || it->second.done) return;
  Answer& a = it->second;
  a.done = true;
  a.status = status;
  if (profile) a.profile = *profile;
  a.error = error;
  for (const std::uint64_t seq : a.waiting) apply(window_[seq - head_seq_], a);
  a.waiting.clear();
  a.waiting.shrink_to_fit();
}

void ProfileFetcher::apply(Slot& slot, const Answer& a) {
  UserRecord& u = slot.user;
  u.profile_status = a.status;
  u.profile.reset();
  u.profile_error.reset();
  if (a.status == ProfileStatus::ok) u.profile = a.profile;
  if (a.status == ProfileStatus::failed) u.profile_error = a.error;
  slot.done = true;
}

void ProfileFetcher::emit_ready() {
  while (!window_.empty() && window_.front().done) {
    const UserRecord& u = window_.front().user;
    encode(out_.buffer(), u);
    out_.record_done();
    ++stats_.users;
    switch (u.profile_status) {
      case ProfileStatus::ok: ++stats_.ok; break;
      case ProfileStatus::gone: ++stats_.gone; break;
      default: ++stats_.failed; break;
    }
    window_.pop_front();
    ++head_seq_;
    if (options_.progress) options_.progress->add_users();
  }
}

void ProfileFetcher::before_read_hook(void* self) { static_cast<ProfileFetcher*>(self)->before_read(); }

// Called by the reader just before it would block on input: keep the pipeline moving instead.
void ProfileFetcher::before_read() {
  emit_ready();
  out_.flush();
  if (options_.input_fd < 0) return;
  // Input still flowing: keep filling the batch. Upstream quiet for a while: send what we have
  // rather than sit on a partial batch, then keep transfers and output going until input comes.
  if (http_.run_until_readable(options_.input_fd, 100)) return;
  submit_batch();
  while (!http_.run_until_readable(options_.input_fd, 500)) {
    emit_ready();
    out_.flush();
  }
}

int ProfileFetcher::run(LineReader& reader, RecordInput& input) {
  started_ = monotonic_seconds();
  reader.set_before_read(&ProfileFetcher::before_read_hook, this);
  InputRecord rec;
  bool input_done = false;
  for (;;) {
    emit_ready();
    if (!input_done && window_.size() < options_.max_buffered_users) {
      if (input.next(rec)) {
        add_user(std::move(rec.user));
      } else {
        input_done = true;
        submit_batch();
      }
      continue;
    }
    if (window_.empty()) break;
    submit_batch();  // window full or input over: nothing more will join a partial batch
    if (http_.pending() == 0)
      throw std::logic_error("ds-fetch-profiles: users waiting with no request outstanding");
    http_.poll(250);
  }
  reader.set_before_read(&OutputWriter::flush_hook, &out_);

  const double elapsed = monotonic_seconds() - started_;
  finish_end(input, elapsed);
  input.write_upstream_ends();
  if (input.saw_upstream_end()) {
    encode(out_.buffer(), end_);
  } else {
    spdlog::warn("input ended without the upstream stage's end record: not writing ours, so the "
                 "run cannot be recorded as complete");
  }
  out_.flush();

  if (options_.progress) options_.progress->finish();  // the summary must not share its line
  const auto& c = http_.counters();
  spdlog::info("done: {} users ({} ok, {} gone, {} failed, {} duplicates), {} requests ({} retries, "
               "{} rate-limited), {:.3f} requests/user, {} bad input lines, {:.1f} s",
               stats_.users, stats_.ok, stats_.gone, stats_.failed, stats_.duplicates, c.requests,
               c.retries, c.http_429, stats_.users ? double(c.requests) / double(stats_.users) : 0.0,
               input.bad_lines(), elapsed);
  return (stats_.failed > 0 || input.bad_lines() > 0) ? exit_code::partial : exit_code::ok;
}

void ProfileFetcher::finish_end(const RecordInput& input, double elapsed) {
  const auto& c = http_.counters();
  end_ = EndRecord{};
  end_.stage = "ds-fetch-profiles";
  end_.set("users", stats_.users);
  end_.set("ok", stats_.ok);
  end_.set("gone", stats_.gone);
  end_.set("failed", stats_.failed);
  end_.set("duplicates", stats_.duplicates);
  end_.set("requests", c.requests);
  end_.set("retries", c.retries);
  end_.set("http_429", c.http_429);
  end_.set("http_5xx", c.http_5xx);
  end_.set("transport_errors", c.transport_errors);
  end_.set("bytes", c.bytes);
  end_.set("connections", c.connections);
  end_.set("bad_items", stats_.bad_items);
  end_.set("bad_lines", input.bad_lines());
  // Integer, since counters are integers: requests per 1000 users.
  end_.set("requests_per_1000_users", stats_.users ? c.requests * 1000 / stats_.users : 0);
  end_.elapsed_s = elapsed;
}

std::string health_check(HttpClient& http, const std::string& base_url, const std::string& actor) {
  const std::string url = get_profiles_url(base_url, {actor});
  std::string problem = "no answer";
  http.get(url, [&](HttpResult& r) {
    if (!r.ok()) {
      problem = r.describe();
      return HttpVerdict::done;
    }
    ProfilesPage page;
    problem = parse_get_profiles(r.body, page);
    // A 200 without the account is no proof of health: the real AppView leaves out actors it
    // cannot resolve, and a proxy or a wrong base URL can answer with an empty list.
    const auto is_actor = [&](const FetchedProfile& f) {
      const std::string& h = f.profile.handle;  // handles compare case-insensitively
      return f.did == actor || std::equal(h.begin(), h.end(), actor.begin(), actor.end(), [](char a, char b) {
               return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
             });
    };
    if (problem.empty() && std::none_of(page.profiles.begin(), page.profiles.end(), is_actor))
      problem = "the answer has no profile for " + actor;
    return HttpVerdict::done;
  });
  http.run();
  if (problem.empty()) return {};
  return "API health check failed: " + url + " : " + problem;
}

}  // namespace ds::profiles
