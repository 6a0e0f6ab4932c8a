// How the fake AppView renders its dataset as JSON (profiles, post views, feed items), shared by
// the endpoints so that one post looks the same byte for byte in getAuthorFeed and getPosts.
#pragma once
#include <string>
#include <string_view>
#include <unordered_map>

#include "dataset.hpp"
#include "ds/json_writer.hpp"
#include "server.hpp"

namespace ds::fake::view {

// JsonWriter has no arrays: the brackets go straight into the buffer, the elements through a
// fresh writer (so the first gets no comma), and raw("") tells the outer writer a value followed
// its key.
template <class F>
void write_array(JsonWriter& w, std::string& out, F&& elements) {
  out += '[';
  JsonWriter inner(out);
  elements(inner);
  out += ']';
  w.raw("");
}

// JsonWriter turns NUL into U+FFFD, which is right for records but hides the trap a real
// displayName can hold; the API sends it as \u0000.
void write_text(JsonWriter& w, std::string_view s);

// profileViewDetailed, as getProfiles answers.
void write_profile_detailed(JsonWriter& w, const Profile& p);

// Profiles of the authors on one page, each computed once.
class Authors {
 public:
  Authors(const Dataset& ds, int day) : ds_(ds), day_(day) {}
  const Profile& get(int user);

 private:
  const Dataset& ds_;
  int day_;
  std::unordered_map<int, Profile> cache_;
};

// A postView; `typed` adds the "$type" a view carries where a union holds it (reply refs).
void write_post_view(JsonWriter& w, std::string& out, const Post& p, Authors& authors, bool typed);

// A feedViewPost: the post, its reply context and the reason (repost or pin).
void write_feed_item(JsonWriter& w, std::string& out, const FeedItem& item, const Dataset& ds, int day,
                     Authors& authors);

Response json_response(std::string body);

}  // namespace ds::fake::view
