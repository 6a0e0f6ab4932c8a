// The classification of AppView answers (answer.hpp): which error answers mean an account is
// gone, which bodies are worth another attempt, and the one wording of a failure.
#include "ds/appview/answer.hpp"

namespace ds::appview {

bool says_account_gone(const HttpResult& r) {
  return r.status == 400 && r.body.find("Profile not found") != std::string::npos;
}

Outcome classify(const HttpResult& r, std::string_view parse_error) {
  if (!r.ok()) return says_account_gone(r) ? Outcome::gone : Outcome::fail;
  if (parse_error.empty()) return Outcome::usable;
  return r.last_attempt ? Outcome::fail : Outcome::retry;
}

std::string failure_reason(const HttpResult& r, std::string_view parse_error) {
  std::string why = r.ok() ? std::string(parse_error) : r.describe();
  return why + " (after " + std::to_string(r.attempt) + " attempts)";
}

std::string probe(HttpClient& http, const std::string& url,
                  const std::function<std::string(std::string_view body)>& read) {
  std::string problem = "no answer";
  http.get(url, [&](HttpResult& r) {
    problem = r.ok() ? read(r.body) : r.describe();
    return HttpVerdict::done;
  });
  http.run();
  if (problem.empty()) return {};
  return "API health check failed: " + url + " : " + problem;
}

}  // namespace ds::appview
