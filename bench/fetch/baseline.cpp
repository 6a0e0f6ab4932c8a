// The fetch benchmark's baseline, fetching the way the original did: one request at a time, each on
// a new connection (a fresh libcurl easy handle, no shared connection cache), no retries.
//
//   fetch-baseline BASE_URL < users.ndjson      (user records as ds-fake-appview user-records writes)
//
// It sends the requests ds-fetch-profiles | ds-fetch-feeds would: getProfiles 25 users per call,
// then, for every user the API returned, getAuthorFeed pages of 100 until no cursor or a cursor at
// or before `since`. Each body is parsed (simdjson), as the stages do. It prints one line:
//   users=N requests=N failed=N elapsed_s=X
// Built by bench/fetch/run.sh with the system compiler; not part of the project's build.
//
// Standalone on purpose: it stands for the original program, so it must not borrow anything of
// ds_shared (our HttpClient's connection reuse, timeouts, headers, even its URL encoding). Were it
// linked against our code, a change there would move the baseline the pipeline is measured against.
// Plain libcurl and simdjson, as any straightforward client would use them.
#include <curl/curl.h>
#include <simdjson.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <optional>
#include <set>
#include <string>
#include <vector>

// The AppView's cursor is "<sort time in epoch ms>__<cid>" (docs/real-appview.md; the fake writes
// the same): the time it stands for, compared with `since` as the stages compare them.
static long long cursor_ms(std::string_view c) {
  return std::strtoll(std::string(c.substr(0, c.find("__"))).c_str(), nullptr, 10);
}
// `since` as the stages write it: "2026-11-22T06:00:00.000Z" (UTC, milliseconds or more).
static long long rfc3339_ms(const std::string& t) {
  std::tm tm{};
  int ms = 0;
  std::sscanf(t.c_str(), "%d-%d-%dT%d:%d:%d.%3d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
              &tm.tm_sec, &ms);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<long long>(timegm(&tm)) * 1000 + ms;
}

namespace {

struct User {
  std::string did;
  std::optional<std::string> since;  // RFC 3339, as written by the stages
};

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

// libcurl's own percent-encoding (only A-Z a-z 0-9 - . _ ~ left as they are).
std::string encode(const std::string& s) {
  char* escaped = curl_easy_escape(nullptr, s.c_str(), static_cast<int>(s.size()));
  std::string out(escaped);
  curl_free(escaped);
  return out;
}

long requests = 0, failures = 0;

// One GET on a connection of its own, as the original's per-call session did.
bool get(const std::string& url, std::string& body) {
  CURL* e = curl_easy_init();
  body.clear();
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
  const CURLcode rc = curl_easy_perform(e);
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(e);
  ++requests;
  if (rc != CURLE_OK || status != 200) {
    ++failures;
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fetch-baseline BASE_URL < users.ndjson\n");
    return 2;
  }
  const std::string base = argv[1];
  curl_global_init(CURL_GLOBAL_DEFAULT);
  simdjson::dom::parser parser;

  std::vector<User> users;
  for (std::string line; std::getline(std::cin, line);) {
    simdjson::dom::element rec;
    if (parser.parse(line).get(rec)) continue;
    std::string_view type;
    if (rec["type"].get_string().get(type) || type != "user") continue;
    User u;
    u.did = std::string(rec["did"].get_string().value());
    std::string_view since;
    if (!rec["since"].get_string().get(since)) u.since = std::string(since);
    users.push_back(std::move(u));
  }

  const auto start = std::chrono::steady_clock::now();
  std::string body;
  std::set<std::string> found;
  for (std::size_t i = 0; i < users.size(); i += 25) {
    std::string url = base + "/xrpc/app.bsky.actor.getProfiles";
    char sep = '?';
    for (std::size_t k = i; k < users.size() && k < i + 25; ++k) {
      url += sep;
      url += "actors=" + encode(users[k].did);
      sep = '&';
    }
    if (!get(url, body)) continue;
    simdjson::dom::element doc;
    if (parser.parse(body).get(doc)) continue;
    for (simdjson::dom::element p : doc["profiles"].get_array()) found.insert(std::string(p["did"].get_string().value()));
  }
  for (const User& u : users) {
    if (!found.count(u.did)) continue;
    std::optional<std::string> cursor;
    for (;;) {
      std::string url = base + "/xrpc/app.bsky.feed.getAuthorFeed?actor=" + encode(u.did) + "&limit=100";
      if (cursor) url += "&cursor=" + encode(*cursor);
      if (!get(url, body)) break;
      simdjson::dom::element doc;
      if (parser.parse(body).get(doc)) break;
      std::size_t items = 0;
      for ([[maybe_unused]] simdjson::dom::element item : doc["feed"].get_array()) ++items;
      std::string_view next;
      if (doc["cursor"].get_string().get(next)) break;  // no cursor: the end
      if (u.since && cursor_ms(next) <= rfc3339_ms(*u.since)) break;
      cursor = std::string(next);
    }
  }
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("users=%zu requests=%ld failed=%ld elapsed_s=%.3f\n", users.size(), requests, failures, elapsed);
  curl_global_cleanup();
  return failures ? 1 : 0;
}
