// getProfiles body -> profiles. Uses simdjson's DOM parser: a body is small and is validated as a
// whole first, so a truncated response fails cleanly (and is retried) instead of being half-read.
#include "profiles_parser.hpp"

#include <limits>
#include <unordered_set>

#include <simdjson.h>

#include "ds/json_writer.hpp"
#include "ds/log.hpp"

namespace ds::profiles {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

std::int64_t clamp(std::int64_t n) { return n < 0 ? 0 : (n > max_count ? max_count : n); }

// "123", " 42 ", "+7" -> the number (saturating); "-5" -> 0; anything else -> 0.
std::int64_t count_from_text(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  bool negative = false;
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return 0;
  std::int64_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return 0;
    if (v < max_count) v = v * 10 + (c - '0');
  }
  return negative ? 0 : clamp(v);
}

std::int64_t count_of(const object& o, std::string_view key) {
  element v;
  if (o[key].get(v)) return 0;
  switch (v.type()) {
    case element_type::INT64: return clamp(v.get_int64().value_unsafe());
    case element_type::UINT64: return max_count;  // only used above INT64_MAX
    case element_type::DOUBLE: {
      const double d = v.get_double().value_unsafe();
      if (!(d > 0)) return 0;
      return d >= static_cast<double>(max_count) ? max_count : static_cast<std::int64_t>(d);
    }
    case element_type::STRING: return count_from_text(v.get_string().value_unsafe());
    default: return 0;
  }
}

std::optional<std::string_view> string_of(const object& o, std::string_view key) {
  std::string_view s;
  if (o[key].get_string().get(s)) return std::nullopt;
  return s;
}

bool has_control(std::string_view s) {
  for (const char c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
  return false;
}

}  // namespace

std::string truncate_utf8(std::string_view s, std::size_t max_bytes) {
  if (s.size() <= max_bytes) return std::string(s);
  std::size_t cut = max_bytes;
  // Back up over continuation bytes (10xxxxxx) so the cut falls before a lead byte.
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return std::string(s.substr(0, cut));
}

std::string parse_get_profiles(std::string_view body, ProfilesPage& out) {
  out = ProfilesPage{};
  thread_local simdjson::dom::parser parser;  // reused: its buffers are the costly part
  element doc;
  if (auto err = parser.parse(body.data(), body.size()).get(doc))
    return std::string("unparsable getProfiles response (") + simdjson::error_message(err) + ")";
  object top;
  if (doc.get_object().get(top)) return "getProfiles response is not a JSON object";
  simdjson::dom::array list;
  if (top["profiles"].get_array().get(list)) {
    if (auto e = string_of(top, "error")) {
      const auto m = string_of(top, "message");
      return "API error " + excerpt(*e) + (m ? ": " + excerpt(*m) : std::string());
    }
    return "getProfiles response has no \"profiles\" array";
  }

  std::unordered_set<std::string> seen;
  for (element item : list) {
    object p;
    if (item.get_object().get(p)) {
      out.problems.push_back({"", "profile item is not an object"});
      continue;
    }
    const auto did = string_of(p, "did");
    if (!did || did->empty() || did->size() > 255 || has_control(*did) || !is_valid_utf8(*did)) {
      out.problems.push_back({"", "profile item without a usable did"});
      continue;
    }
    if (!seen.insert(std::string(*did)).second) continue;  // repeated: the first one stands
    const auto handle = string_of(p, "handle");
    if (!handle || handle->empty() || handle->size() > max_handle_bytes || has_control(*handle) ||
        !is_valid_utf8(*handle)) {
      out.problems.push_back({std::string(*did), "profile without a usable handle"});
      continue;
    }
    FetchedProfile f;
    f.did = std::string(*did);
    f.profile.handle = std::string(*handle);
    if (const auto name = string_of(p, "displayName"))
      f.profile.display_name = truncate_utf8(sanitize_utf8(*name), max_display_name_bytes);
    if (const auto avatar = string_of(p, "avatar"); avatar && avatar->size() <= max_avatar_bytes)
      f.profile.avatar = sanitize_utf8(*avatar);
    f.profile.followers = count_of(p, "followersCount");
    f.profile.following = count_of(p, "followsCount");
    f.profile.posts = count_of(p, "postsCount");
    out.profiles.push_back(std::move(f));
  }
  return {};
}

}  // namespace ds::profiles
