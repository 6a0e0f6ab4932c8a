// getProfiles body -> profiles. The body is validated as a whole first, so a truncated response
// fails cleanly (and is retried) instead of being half-read.
#include "ds/appview/get_profiles.hpp"

#include <unordered_set>

#include "ds/appview/lexicon.hpp"
#include "ds/json_writer.hpp"

namespace ds::appview {

using simdjson::dom::element;
using simdjson::dom::object;

std::string parse_get_profiles(std::string_view body, ProfilesPage& out) {
  out = ProfilesPage{};
  object top;
  simdjson::dom::array list;
  if (std::string err = open_response(body, "getProfiles", "profiles", top, list); !err.empty()) return err;

  std::unordered_set<std::string> seen;
  for (element item : list) {
    object p;
    if (item.get_object().get(p)) {
      out.problems.push_back({"", "profile item is not an object"});
      continue;
    }
    const auto did = string_of(p, "did");
    if (!did || !usable_identifier(*did, 255)) {
      out.problems.push_back({"", "profile item without a usable did"});
      continue;
    }
    if (!seen.insert(std::string(*did)).second) continue;  // repeated: the first one stands
    const auto handle = string_of(p, "handle");
    if (!handle || !usable_identifier(*handle, max_handle_bytes)) {
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
    f.profile.posts_known = has_count(p, "postsCount");
    out.profiles.push_back(std::move(f));
  }
  return {};
}

}  // namespace ds::appview
