// The fake AppView's JSON views of its dataset: profiles, authors, post views and feed items, in the
// key order of the real captures in tests/fixtures/bsky. Every endpoint renders through these.
#include "views.hpp"

#include <optional>
#include <utility>

namespace ds::fake::view {

void write_text(JsonWriter& w, std::string_view s) {
  if (s.find('\0') == std::string_view::npos) {
    w.string(s);
    return;
  }
  std::string json = "\"";
  std::size_t start = 0;
  for (;;) {
    const std::size_t nul = s.find('\0', start);
    std::string part;
    JsonWriter pw(part);
    pw.string(s.substr(start, nul == std::string_view::npos ? std::string_view::npos : nul - start));
    json.append(part, 1, part.size() - 2);
    if (nul == std::string_view::npos) break;
    json += "\\u0000";
    start = nul + 1;
  }
  json += '"';
  w.raw(json);
}

namespace {

// The fields a post's author view and a full profile view open with.
void write_identity(JsonWriter& w, const Profile& p) {
  w.field("did", p.did).field("handle", p.handle);
  if (p.display_name) {
    w.key("displayName");
    write_text(w, *p.display_name);
  }
  if (p.avatar) w.field("avatar", *p.avatar);
}

void write_author(JsonWriter& w, std::string& out, const Profile& p) {
  w.begin_object();
  write_identity(w, p);
  w.key("associated").raw(R"({"chat":{"allowIncoming":"following"}})");
  w.key("viewer").raw(R"({"muted":false,"blockedBy":false})");
  w.key("labels");
  write_array(w, out, [](JsonWriter&) {});
  w.field("createdAt", p.created_at);
  w.end_object();
}

}  // namespace

void write_profile_detailed(JsonWriter& w, const Profile& p) {
  w.begin_object();
  write_identity(w, p);
  w.key("associated").raw(
      R"({"lists":0,"feedgens":0,"starterPacks":0,"labeler":false,"chat":{"allowIncoming":"following"}})");
  w.key("viewer").raw(R"({"muted":false,"blockedBy":false})");
  w.key("labels").raw("[]");
  w.field("createdAt", p.created_at);
  if (p.description) w.field("description", *p.description);
  w.field("indexedAt", p.indexed_at);
  if (p.banner) w.field("banner", *p.banner);
  if (p.followers) w.field("followersCount", *p.followers);
  if (p.follows) w.field("followsCount", *p.follows);
  if (p.posts) w.field("postsCount", *p.posts);
  w.end_object();
}

const Profile& Authors::get(int user) {
  auto it = cache_.find(user);
  if (it != cache_.end()) return it->second;
  std::optional<Profile> p = ds_.profile(user, day_);
  if (!p) {
    // Only reachable through a dataset bug; still answer with what the API does for
    // accounts whose handle it cannot verify.
    p = Profile{};
    p->did = ds_.users().at(static_cast<std::size_t>(user)).did;
    p->handle = "handle.invalid";
  }
  return cache_.emplace(user, std::move(*p)).first->second;
}

void write_post_view(JsonWriter& w, std::string& out, const Post& p, Authors& authors, bool typed) {
  w.begin_object();
  w.field("uri", p.uri).field("cid", p.cid);
  w.key("author");
  write_author(w, out, authors.get(p.ref.user));
  w.key("record").begin_object();
  w.field("$type", "app.bsky.feed.post");
  if (p.created_at_raw) w.field("createdAt", *p.created_at_raw);
  w.key("langs").raw(R"(["en"])");
  if (p.reply) {
    w.key("reply").begin_object();
    w.key("parent").begin_object().field("cid", p.reply->parent_cid).field("uri", p.reply->parent_uri).end_object();
    w.key("root").begin_object().field("cid", p.reply->root_cid).field("uri", p.reply->root_uri).end_object();
    w.end_object();
  }
  w.key("text");
  write_text(w, p.text);
  w.end_object();
  if (p.counts.replies) w.field("replyCount", *p.counts.replies);
  if (p.counts.reposts) w.field("repostCount", *p.counts.reposts);
  if (p.counts.likes) w.field("likeCount", *p.counts.likes);
  if (p.counts.quotes) w.field("quoteCount", *p.counts.quotes);
  w.field("indexedAt", p.indexed_at_text);
  w.key("viewer").raw(R"({"threadMuted":false,"embeddingDisabled":false})");
  w.key("labels").raw("[]");
  if (typed) w.field("$type", "app.bsky.feed.defs#postView");
  w.end_object();
}

namespace {

void write_reply_ref(JsonWriter& w, std::string& out, const std::optional<PostRef>& ref, const std::string& uri,
                     const Dataset& ds, int day, Authors& authors) {
  if (!ref) {
    w.begin_object()
        .field("$type", "app.bsky.feed.defs#notFoundPost")
        .field("uri", uri)
        .field("notFound", true)
        .end_object();
    return;
  }
  write_post_view(w, out, ds.post(*ref, day), authors, true);
}

}  // namespace

void write_feed_item(JsonWriter& w, std::string& out, const FeedItem& item, const Dataset& ds, int day,
                     Authors& authors) {
  w.begin_object();
  w.key("post");
  write_post_view(w, out, item.post, authors, false);
  if (item.post.reply) {
    w.key("reply").begin_object();
    w.key("root");
    write_reply_ref(w, out, item.post.reply->root, item.post.reply->root_uri, ds, day, authors);
    w.key("parent");
    write_reply_ref(w, out, item.post.reply->parent, item.post.reply->parent_uri, ds, day, authors);
    w.end_object();
  }
  if (item.reason == FeedItem::Reason::Repost) {
    w.key("reason").begin_object().field("$type", "app.bsky.feed.defs#reasonRepost");
    w.key("by");
    write_author(w, out, authors.get(item.by));
    w.field("indexedAt", format_timestamp(item.sort_at));
    w.end_object();
  } else if (item.reason == FeedItem::Reason::Pin) {
    w.key("reason").begin_object().field("$type", "app.bsky.feed.defs#reasonPin").end_object();
  }
  w.end_object();
}

Response json_response(std::string body) {
  Response r;
  r.body = std::move(body);
  return r;
}

}  // namespace ds::fake::view
