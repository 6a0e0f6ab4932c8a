// ds-fetch-profiles: batching, de-duplication and in-order output over the shared HTTP client.
// Never drops a user: every input user comes out as ok, gone or failed (with the reason).
#include "profile_fetcher.hpp"

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "ds/appview/answer.hpp"
#include "ds/appview/get_profiles.hpp"

namespace ds::profiles {

ProfileFetcher::ProfileFetcher(FetcherOptions options, HttpClient& http, OutputWriter& out)
    : FetchStage("ds-fetch-profiles", http, out, options.input_fd, options.progress),
      options_(std::move(options)) {
  // Input may pause between batches of selected users; wait a little before sending a partial
  // batch with nothing in flight, then look again at a slower pace while it stays quiet.
  first_quiet_ms_ = 100;
  quiet_poll_ms_ = 500;
  options_.batch_size = std::clamp<std::size_t>(options_.batch_size, 1, appview::max_profiles_per_request);
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

bool ProfileFetcher::head_in_partial_batch() const {
  if (batch_.empty() || window_.empty() || window_.front().done) return false;
  return std::find(batch_.begin(), batch_.end(), window_.front().user.did) != batch_.end();
}

void ProfileFetcher::submit_batch() {
  if (batch_.empty()) return;
  submit(std::move(batch_));
  batch_.clear();
  http_.poll(0);  // start it now rather than at the next wait
}

void ProfileFetcher::submit(std::vector<std::string> dids) {
  ++stats_.batches;
  const std::string url = appview::get_profiles_url(options_.base_url, dids);
  http_.get(url, [this, dids = std::move(dids)](HttpResult& r) { return on_batch(dids, r); });
}

HttpVerdict ProfileFetcher::on_batch(const std::vector<std::string>& dids, HttpResult& r) {
  appview::ProfilesPage page;
  std::string parse_error;
  if (r.ok()) parse_error = appview::parse_get_profiles(r.body, page);
  const appview::Outcome outcome = appview::classify(r, parse_error);
  if (outcome == appview::Outcome::retry) {
    spdlog::debug("getProfiles: {} (attempt {}); retrying", parse_error, r.attempt);
    return HttpVerdict::retry;
  }
  // getProfiles says an account is gone by leaving it out of a usable answer, so an error answer
  // is never about one account: `gone` cannot apply to a whole batch.
  if (outcome != appview::Outcome::usable) {
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
    const std::string why = appview::failure_reason(r, parse_error);
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

void ProfileFetcher::write_ready(bool) {
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
    if (progress_) progress_->add_users();
  }
}

std::string ProfileFetcher::summary() const {
  return fmt::format("{} users ({} ok, {} gone, {} failed, {} duplicates)", stats_.users, stats_.ok, stats_.gone,
                     stats_.failed, stats_.duplicates);
}

void ProfileFetcher::add_end_fields(EndRecord& end) const {
  end.set("users", stats_.users);
  end.set("ok", stats_.ok);
  end.set("gone", stats_.gone);
  end.set("failed", stats_.failed);
  end.set("duplicates", stats_.duplicates);
  end.set("bad_items", stats_.bad_items);
  end.set("requests_get_profiles", http_.counters().requests);  // this stage's one endpoint
}

std::string health_check(HttpClient& http, const std::string& base_url, const std::string& actor) {
  return appview::probe(http, appview::get_profiles_url(base_url, {actor}), [&](std::string_view body) {
    appview::ProfilesPage page;
    std::string problem = appview::parse_get_profiles(body, page);
    // A 200 without the account is no proof of health: the real AppView leaves out actors it
    // cannot resolve, and a proxy or a wrong base URL can answer with an empty list.
    const auto is_actor = [&](const appview::FetchedProfile& f) {
      const std::string& h = f.profile.handle;  // handles compare case-insensitively
      return f.did == actor || std::equal(h.begin(), h.end(), actor.begin(), actor.end(), [](char a, char b) {
               return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
             });
    };
    if (problem.empty() && std::none_of(page.profiles.begin(), page.profiles.end(), is_actor))
      problem = "the answer has no profile for " + actor;
    return problem;
  });
}

}  // namespace ds::profiles
