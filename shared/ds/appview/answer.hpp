// What one AppView answer means for the request that got it: usable, the account is gone, ask
// again, or give up. One rule for every endpoint, so the stages only decide what to do next.
#pragma once
#include <functional>
#include <string>
#include <string_view>

#include "ds/http.hpp"

namespace ds::appview {

enum class Outcome {
  usable,  // 2xx and the body parsed
  gone,    // the account is unknown, deactivated, deleted or taken down
  retry,   // 2xx but the body did not parse (truncated, garbled) and attempts remain
  fail,    // any other error answer, or an unparsable body on the last attempt
};

// `parse_error` is what the endpoint's parser said of the body (empty when it parsed, or when
// the answer was not a 2xx and so was not parsed). The HTTP client has already retried what is
// worth retrying at its level (transport errors, 429, 5xx), so an error answer here is final.
Outcome classify(const HttpResult& r, std::string_view parse_error);

// The getAuthorFeed answer for an account that no longer exists: 400 "Profile not found"
// (DESIGN.md, API facts). getProfiles says the same by leaving the account out.
bool says_account_gone(const HttpResult& r);

// Why a `fail` failed, for logs and error fields: the parser's reason or the HTTP status with a
// body excerpt, then " (after N attempts)".
std::string failure_reason(const HttpResult& r, std::string_view parse_error);

// --health: one GET of `url` with `http`, its body read by `read` (a parser: empty = fine).
// Empty when the API answered as it should, else "API health check failed: <url> : <why>".
std::string probe(HttpClient& http, const std::string& url,
                  const std::function<std::string(std::string_view body)>& read);

}  // namespace ds::appview
