// Tests for the record contract: encode -> decode round trips for every type, and one clear
// error per kind of bad line, through the same RecordInput every stage uses.
#include <catch2/catch.hpp>

#include <unistd.h>

#include "ds/record_input.hpp"

namespace {

// Runs `text` through a RecordInput; returns the consumed records and what was forwarded.
struct Run {
  std::vector<ds::InputRecord> records;
  std::string forwarded;
  std::int64_t bad_lines = 0;
  std::vector<ds::EndRecord> ends;
};

Run read_all(const std::string& text, unsigned mask, bool strict = false) {
  // Unlinked at once: a strict read throws out of here, and the files must not outlive the test.
  char in_path[] = "/tmp/ds-rec-in.XXXXXX";
  char out_path[] = "/tmp/ds-rec-out.XXXXXX";
  const int in_fd = mkstemp(in_path), out_fd = mkstemp(out_path);
  REQUIRE(in_fd >= 0);
  REQUIRE(out_fd >= 0);
  ::unlink(in_path);
  ::unlink(out_path);
  struct CloseFds {
    int a, b;
    ~CloseFds() {
      ::close(a);
      ::close(b);
    }
  } close_fds{in_fd, out_fd};
  REQUIRE(::write(in_fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  ::lseek(in_fd, 0, SEEK_SET);
  Run run;
  {
    ds::LineReader reader(in_fd, "input");
    ds::OutputWriter out(out_fd);
    ds::RecordInput input("test", reader, out, mask, strict);
    ds::InputRecord rec;
    while (input.next(rec)) run.records.push_back(rec);
    input.write_upstream_ends();
    run.bad_lines = input.bad_lines();
    run.ends = input.upstream_ends();
  }
  ::lseek(out_fd, 0, SEEK_SET);
  char buf[4096];
  for (ssize_t n; (n = ::read(out_fd, buf, sizeof buf)) > 0;) run.forwarded.append(buf, static_cast<std::size_t>(n));
  return run;
}

ds::UserRecord sample_user() {
  ds::UserRecord u;
  u.did = "did:plc:aaaa";
  u.handle = "alice.test";
  u.display_name = "Alice \"A\" ✨";
  u.as_of = *ds::parse_timestamp("2026-11-29T06:00:00Z");
  u.since = u.as_of - 7 * ds::micros_per_day;
  u.baseline = {120, 340, 41, 3, 17};
  u.profile_status = ds::ProfileStatus::ok;
  u.profile = ds::Profile{"alice.test", std::string("Alice"), std::nullopt, 210, 80, 131};
  u.feed = {.status = ds::FeedStatus::complete,
            .pages = 1,
            .posts = 11,
            .requests = 1,
            .error = std::nullopt,
            .path = "posts",
            .reason = "quiet",
            .cursor = std::nullopt};
  // The request economy's fields round-trip too, an empty window list included.
  u.last_snapshot = ds::LastSnapshot{"2026-11-28", 131};
  u.window_uris = std::vector<std::string>{"at://did:plc:aaaa/app.bsky.feed.post/1", "at://did:plc:aaaa/x/\"2\""};
  u.refresh_clock = "2026-11-25";
  return u;
}

}  // namespace

TEST_CASE("every record type round-trips through encode and decode") {
  ds::UserRecord u = sample_user();
  ds::UserRecord backfill = sample_user();
  backfill.did = "did:plc:bbbb";
  backfill.since.reset();
  backfill.profile_status = ds::ProfileStatus::failed;
  backfill.profile.reset();
  backfill.profile_error = "HTTP 503";
  backfill.feed = {};
  backfill.last_snapshot.reset();
  backfill.window_uris = std::vector<std::string>{};
  ds::PostRecord p{"at://did:plc:aaaa/app.bsky.feed.post/1", "did:plc:aaaa",
                   *ds::parse_timestamp("2026-11-28T10:00:00.123456Z"),
                   *ds::parse_timestamp("2026-11-28T09:59:00Z"), 4, 1, 0, 2};
  ds::SnapshotRecord s{"did:plc:aaaa", "2026-11-29", 210, 80, 131, 352, 43, 3, 19};
  std::string text;
  ds::encode(text, u);
  CHECK(text.find("postsKnown") == std::string::npos);  // written only when false
  ds::UserRecord unknown_count = sample_user();
  unknown_count.did = "did:plc:cccc";
  unknown_count.profile->posts = 0;
  unknown_count.profile->posts_known = false;
  std::string unknown_text;
  ds::encode(unknown_text, unknown_count);
  CHECK(unknown_text.find("\"posts\":0,\"postsKnown\":false") != std::string::npos);
  const Run unknown_run = read_all(unknown_text, ds::want_user);
  REQUIRE(unknown_run.records.size() == 1);
  CHECK(unknown_run.records[0].user == unknown_count);
  ds::encode(text, backfill);
  ds::encode(text, p);
  ds::encode(text, s);
  const Run run = read_all(text, ds::want_user | ds::want_post | ds::want_snapshot);
  REQUIRE(run.records.size() == 4);
  CHECK(run.records[0].user == u);
  CHECK(run.records[1].user == backfill);
  CHECK_FALSE(run.records[1].user.since.has_value());
  CHECK(run.records[2].post == p);
  CHECK(run.records[3].snapshot == s);
  CHECK(run.forwarded.empty());
  CHECK(run.records[2].line_number == 3);
}

TEST_CASE("types a stage does not consume pass through byte for byte; end records are held back") {
  const std::string other = R"({"zzz":1, "type":"future_thing","nested":{"a":[1,2]}})";
  ds::EndRecord e;
  e.stage = "ds-select-users";
  e.set("users", 3);
  std::string end_line;
  ds::encode(end_line, e);
  std::string post;
  ds::encode(post, ds::PostRecord{"at://x/p/1", "did:plc:x", 0, 0, 1, 2, 3, 4});
  const Run run = read_all(other + "\n" + end_line + post, ds::want_user);
  CHECK(run.records.empty());
  // The unknown line and the post come through unchanged, the end record last.
  CHECK(run.forwarded == other + "\n" + post + end_line);
  REQUIRE(run.ends.size() == 1);
  CHECK(run.ends[0].stage == "ds-select-users");
  CHECK(run.ends[0].counter("users") == 3);
}

TEST_CASE("bad lines are reported, counted and skipped; good lines around them survive") {
  std::string good;
  ds::encode(good, ds::PostRecord{"at://x/p/1", "did:plc:x", 0, 0, 1, 2, 3, 4});
  static constexpr char nul_literal[] = "{\"type\":\"post\",\"uri\":\"u\0\",\"did\":\"d\"}\n";
  const std::string nul_line(nul_literal, sizeof nul_literal - 1);
  const std::string long_line = "{\"type\":\"post\",\"pad\":\"" + std::string(1 << 21, 'x') + "\"}\n";
  const std::vector<std::string> bad = {
      "{not json\n",
      "[1,2,3]\n",
      "{\"uri\":\"at://x\"}\n",                                     // no type
      "{\"type\":7}\n",                                             // type not a string
      "{\"type\":\"post\",\"did\":\"did:plc:x\",\"createdAt\":\"2026-01-01T00:00:00Z\"}\n",  // no uri
      "{\"type\":\"post\",\"uri\":\"u\",\"did\":\"d\",\"createdAt\":\"2026-01-01T00:00:00Z\",\"likes\":\"3\"}\n",
      "{\"type\":\"post\",\"uri\":\"u\",\"did\":\"d\",\"createdAt\":\"2026-01-01T00:00:00Z\",\"likes\":-1}\n",
      "{\"type\":\"post\",\"uri\":\"u\",\"did\":\"d\",\"createdAt\":\"2026-01-01T00:00:00Z\",\"likes\":1e400}\n",
      "{\"type\":\"post\",\"uri\":\"u\",\"did\":\"d\",\"createdAt\":\"2026-01-01T00:00:00Z\",\"likes\":99999999999999999999}\n",
      "{\"type\":\"post\",\"uri\":\"u\",\"did\":\"d\",\"createdAt\":\"yesterday\"}\n",
      nul_line,
      "{\"type\":\"post\",\"uri\":\"\xff\xfe\",\"did\":\"d\",\"createdAt\":\"2026-01-01T00:00:00Z\"}\n",
      "{\"type\":\"end\",\"stage\":\"x\",\"contract\":99,\"counters\":{}}\n",
      long_line,
  };
  for (const auto& b : bad) {
    INFO(b.substr(0, 100));
    const Run run = read_all(good + b + good, ds::want_post);
    CHECK(run.bad_lines == 1);
    CHECK(run.records.size() == 2);
    CHECK_THROWS_AS(read_all(good + b + good, ds::want_post, /*strict=*/true), ds::BadInputError);
  }
}

TEST_CASE("the strict error names the input, the line and the problem") {
  std::string good;
  ds::encode(good, ds::PostRecord{"at://x/p/1", "did:plc:x", 0, 0, 1, 2, 3, 4});
  try {
    read_all(good + good + "{\"type\":\"post\",\"uri\":\"u\"}\n", ds::want_post, true);
    FAIL("no error");
  } catch (const ds::BadInputError& e) {
    const std::string msg = e.what();
    CHECK(msg.find("input:3:") == 0);
    CHECK(msg.find("missing field \"did\"") != std::string::npos);
  }
}

TEST_CASE("the request economy's dates and the feed's reason are checked, naming the field") {
  std::string good;
  ds::encode(good, sample_user());
  const std::string head =
      R"({"type":"user","did":"did:plc:z","handle":"z.test","asOf":"2026-11-29T06:00:00Z","since":"2026-11-22T06:00:00Z",)";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"("refreshClock":"2026-02-30"})", "field \"refreshClock\" must be a YYYY-MM-DD date"},
      {R"("refreshClock":"2026-11-25T00:00:00Z"})", "field \"refreshClock\" must be a YYYY-MM-DD date"},
      {R"("lastSnapshot":{"date":"26-11-28","posts":1}})", "field \"lastSnapshot.date\" must be a YYYY-MM-DD date"},
      {R"("lastSnapshot":{"posts":1}})", "field \"lastSnapshot.date\" must be a YYYY-MM-DD date"},
      {R"("feed":{"status":"complete","reason":""}})", "field \"feed.reason\" is empty"},
  };
  for (const auto& [tail, why] : bad) {
    const std::string line = head + tail + "\n";
    INFO(line);
    const Run run = read_all(good + line + good, ds::want_user);
    CHECK(run.bad_lines == 1);
    CHECK(run.records.size() == 2);
    try {
      read_all(good + line, ds::want_user, /*strict=*/true);
      FAIL("no error");
    } catch (const ds::BadInputError& e) {
      CHECK_THAT(e.what(), Catch::Contains("input:2:") && Catch::Contains(why));
    }
  }
  // null is none, as for the other optional fields.
  const Run run = read_all(head + R"("refreshClock":null})" + "\n", ds::want_user);
  REQUIRE(run.records.size() == 1);
  CHECK_FALSE(run.records[0].user.refresh_clock);
}

TEST_CASE("a truncated last line is still read when it is complete JSON; empty input is empty") {
  std::string good;
  ds::encode(good, ds::PostRecord{"at://x/p/1", "did:plc:x", 0, 0, 1, 2, 3, 4});
  good.pop_back();  // no final newline
  CHECK(read_all(good, ds::want_post).records.size() == 1);
  const Run truncated = read_all(good.substr(0, good.size() - 5), ds::want_post);
  CHECK(truncated.records.empty());
  CHECK(truncated.bad_lines == 1);
  const Run empty = read_all("", ds::want_post);
  CHECK(empty.records.empty());
  CHECK(empty.forwarded.empty());
}

TEST_CASE("a selection record round-trips for ds-load and passes other stages byte for byte") {
  std::string text;
  ds::encode(text, ds::SelectionRecord{std::string("2/4")});
  ds::encode(text, ds::SelectionRecord{});
  CHECK(text == "{\"type\":\"selection\",\"shard\":\"2/4\"}\n{\"type\":\"selection\",\"shard\":null}\n");
  const Run consumed = read_all(text, ds::want_selection);
  REQUIRE(consumed.records.size() == 2);
  CHECK(consumed.records[0].type == ds::RecordType::selection);
  CHECK(consumed.records[0].selection.shard == "2/4");
  CHECK_FALSE(consumed.records[1].selection.shard.has_value());
  CHECK(consumed.forwarded.empty());
  const Run forwarded = read_all(text, ds::want_user | ds::want_post);
  CHECK(forwarded.records.empty());
  CHECK(forwarded.forwarded == text);
  // ds-load takes its lock by the shard: one it could misread is a bad line, not another shard.
  for (const char* bad : {R"({"type":"selection","shard":"4/4"})", R"({"type":"selection","shard":"1/x"})",
                          R"({"type":"selection","shard":3})", R"({"type":"selection"})"}) {
    INFO(bad);
    const Run run = read_all(std::string(bad) + "\n", ds::want_selection);
    CHECK(run.bad_lines == 1);
    CHECK(run.records.empty());
  }
}

TEST_CASE("end records of contract 1 (saved before selection records) to 3 are read, others refused") {
  for (const int contract : {0, 1, 2, 3, 4}) {
    INFO("contract " << contract);
    const std::string line = "{\"type\":\"end\",\"stage\":\"x\",\"contract\":" + std::to_string(contract) +
                             ",\"counters\":{}}\n";
    const Run run = read_all(line, ds::want_post);
    const bool readable = contract >= 1 && contract <= 3;
    CHECK(run.ends.size() == (readable ? 1u : 0u));
    CHECK(run.bad_lines == (readable ? 0 : 1));
  }
  ds::EndRecord e;
  e.stage = "x";
  std::string written;
  ds::encode(written, e);
  CHECK(written.find("\"contract\":3,") != std::string::npos);
}
