// app.bsky.actor.getProfiles: a response body read into profiles, as a pure function, so every
// odd thing the API (or something posing as it) can send is handled in one tested place.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "ds/records.hpp"

namespace ds::appview {

// users."displayName" is varchar(255): longer names are cut to 255 bytes at a UTF-8 boundary
// (bytes, not characters, so the limit holds under any reading of the column width).
constexpr std::size_t max_display_name_bytes = 255;
// An atproto handle is at most 253 characters; a longer one is not a handle.
constexpr std::size_t max_handle_bytes = 253;
// An avatar is a CDN URL; anything this long is not one and is dropped rather than cut.
constexpr std::size_t max_avatar_bytes = 4096;

struct FetchedProfile {
  std::string did;
  Profile profile;
};

// An item of `profiles` that could not be used; `did` is empty when even that was unreadable.
struct ProfileProblem {
  std::string did;
  std::string reason;
};

struct ProfilesPage {
  std::vector<FetchedProfile> profiles;  // in response order, first occurrence of each did
  std::vector<ProfileProblem> problems;
};

// Parses a getProfiles body. Returns an empty string on success, else why the body as a whole is
// not a getProfiles answer (malformed or truncated JSON, an {"error":...} object, no `profiles`
// array). Bad items do not fail the page; they are listed in `problems`. Counts as the lexicon
// readers say (lexicon.hpp).
std::string parse_get_profiles(std::string_view body, ProfilesPage& out);

}  // namespace ds::appview
