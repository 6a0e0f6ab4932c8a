// The fuzzed entry points, shared by the libFuzzer targets (fuzz/*_fuzz.cpp, clang) and the replay
// of fuzz/regressions/ in the unit tests (g++): each runs one input and checks what must always hold.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include <simdjson.h>
#include <spdlog/spdlog.h>

#include "ds/clock.hpp"
#include "ds/json_writer.hpp"
#include "ds/ndjson.hpp"
#include "ds/record_input.hpp"
#include "ds/records.hpp"
#include "ds/appview/get_author_feed.hpp"
#include "ds/appview/get_profiles.hpp"
#include "ds/appview/lexicon.hpp"

namespace ds::fuzz {

// A broken invariant: libFuzzer reports the uncaught exception as a crash with its input; the
// regression replay sees it as a failed check.
struct Violation : std::logic_error {
  using std::logic_error::logic_error;
};

inline void require(bool ok, const char* what) {
  if (!ok) throw Violation(what);
}

// The body of every libFuzzer target (fuzz/*_fuzz.cpp): runs one entry point on one input and
// turns a broken invariant into a crash, so that libFuzzer keeps the input.
inline int fuzz_one(void (*entry)(const std::uint8_t*, std::size_t), const std::uint8_t* data,
                    std::size_t size) {
  try {
    entry(data, size);
  } catch (const Violation& v) {
    std::fprintf(stderr, "invariant broken: %s\n", v.what());
    std::abort();
  }
  return 0;
}

// Bad lines are logged at error level; millions of them would only slow the fuzzer down.
inline void quiet_logs() {
  static const bool once = [] {
    spdlog::set_level(spdlog::level::off);
    return true;
  }();
  (void)once;
}

// What every stage writes must be read back unchanged by the next stage: encode, decode, compare.
template <typename Record>
inline void require_round_trip(const Record& r, unsigned mask, const char* what) {
  std::string line;
  encode(line, r);
  require(!line.empty() && line.back() == '\n', what);
  line.pop_back();
  require(is_valid_utf8(line) && line.find('\0') == std::string::npos, what);
  const simdjson::padded_string padded(line);
  static RecordDecoder decoder;  // reused: its parser's buffers are the costly part
  InputRecord back;
  EndRecord end;
  const std::string err = decoder.decode(std::string_view(padded.data(), padded.size()),
                                         padded.size() + simdjson::SIMDJSON_PADDING, mask, back, &end);
  if (!err.empty()) throw Violation(std::string(what) + ": " + err + ": " + line);
  if constexpr (std::is_same_v<Record, SelectionRecord>) require(back.selection == r, what);
  if constexpr (std::is_same_v<Record, UserRecord>) require(back.user == r, what);
  if constexpr (std::is_same_v<Record, PostRecord>) require(back.post == r, what);
  if constexpr (std::is_same_v<Record, SnapshotRecord>) require(back.snapshot == r, what);
}

// An in-memory file, so the real LineReader/OutputWriter (read(2)/write(2)) are what is fuzzed.
class MemFile {
 public:
  MemFile() : fd_(::memfd_create("ds-fuzz", MFD_CLOEXEC)) { require(fd_ >= 0, "memfd_create"); }
  ~MemFile() { ::close(fd_); }
  int fd() const { return fd_; }
  void put(const std::uint8_t* data, std::size_t size) {
    std::size_t off = 0;
    while (off < size) {
      const ssize_t n = ::write(fd_, data + off, size - off);
      require(n > 0, "writing the memfd");
      off += static_cast<std::size_t>(n);
    }
    ::lseek(fd_, 0, SEEK_SET);
  }
  std::string all() const {
    std::string s(static_cast<std::size_t>(::lseek(fd_, 0, SEEK_END)), '\0');
    require(::pread(fd_, s.data(), s.size(), 0) == static_cast<ssize_t>(s.size()), "reading the memfd");
    return s;
  }

 private:
  int fd_;
};

// NDJSON records through LineReader + RecordInput as a stage reads them (4 KiB line limit, so the
// over-long path is reachable with small inputs): consumed records must re-encode to lines that
// decode to the same record; every forwarded line must be whole JSON.
inline void record_input(const std::uint8_t* data, std::size_t size) {
  quiet_logs();
  for (const unsigned mask : {want_user | want_post, want_snapshot | want_selection}) {
    MemFile in, out;
    in.put(data, size);
    {
      LineReader reader(in.fd(), "fuzz", 4096);
      OutputWriter writer(out.fd());
      RecordInput input("fuzz", reader, writer, mask, false);
      InputRecord rec;
      std::uint64_t last_line = 0;
      while (input.next(rec)) {
        require(rec.line_number > last_line, "line numbers increase");
        last_line = rec.line_number;
        switch (rec.type) {
          case RecordType::selection: require_round_trip(rec.selection, mask, "selection round trip"); break;
          case RecordType::user: require_round_trip(rec.user, mask, "user round trip"); break;
          case RecordType::post: require_round_trip(rec.post, mask, "post round trip"); break;
          case RecordType::snapshot: require_round_trip(rec.snapshot, mask, "snapshot round trip"); break;
          default: require(false, "next() returned a type the mask does not want");
        }
      }
      input.write_upstream_ends();
      require(input.bad_lines() >= 0 && static_cast<std::uint64_t>(input.bad_lines()) <= input.lines_read(),
              "bad lines counted at most once each");
      writer.flush();
    }
    const std::string forwarded = out.all();
    require(forwarded.empty() || forwarded.back() == '\n', "output ends with a newline");
    simdjson::dom::parser parser;
    std::size_t start = 0;
    while (start < forwarded.size()) {
      const std::size_t nl = forwarded.find('\n', start);
      const std::string_view line(forwarded.data() + start, nl - start);
      simdjson::dom::element doc;
      if (parser.parse(line.data(), line.size()).get(doc) || !doc.is_object())
        throw Violation("a forwarded line is not a JSON object: " + std::string(line.substr(0, 200)));
      start = nl + 1;
    }
  }
}

// The account whose feed the fixtures hold (tests/fixtures/bsky), so seeds reach the own-post path.
inline constexpr std::string_view fuzz_actor = "did:plc:wpe35pganb6d4pg4ekmfy6u5";

inline void author_feed(const std::uint8_t* data, std::size_t size) {
  quiet_logs();
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  appview::FeedPage page;
  Micros previous = *parse_timestamp("2026-11-01T06:00:00Z");
  const std::string err = appview::parse_author_feed(body, fuzz_actor, previous, page);
  if (!err.empty()) {
    require(page.posts.empty(), "a failed page yields no posts");
    return;
  }
  require(page.items >= static_cast<std::int64_t>(page.posts.size()) + page.others + page.bad_items,
          "items account for posts, others and bad items");
  if (page.cursor) require(!page.cursor->empty() && is_valid_utf8(*page.cursor), "usable cursor");
  for (const PostRecord& p : page.posts) {
    require(p.did == fuzz_actor, "only the actor's posts");
    require(p.sort_at <= p.created_at, "sortAt = least(createdAt, indexedAt)");
    for (const std::int64_t n : {p.likes, p.replies, p.quotes, p.reposts})
      require(n >= 0 && n <= appview::max_count, "counts clamped to [0, 2^31-1]");
    require_round_trip(p, want_post, "fetched post round trip");
  }
}

inline void get_profiles(const std::uint8_t* data, std::size_t size) {
  quiet_logs();
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  appview::ProfilesPage page;
  const std::string err = appview::parse_get_profiles(body, page);
  if (!err.empty()) {
    require(page.profiles.empty(), "a failed answer yields no profiles");
    return;
  }
  for (const auto& f : page.profiles) {
    const Profile& p = f.profile;
    require(p.handle.size() <= appview::max_handle_bytes, "handle length");
    if (p.display_name) {
      require(p.display_name->size() <= appview::max_display_name_bytes, "displayName fits varchar(255)");
      require(is_valid_utf8(*p.display_name) && p.display_name->find('\0') == std::string::npos,
              "displayName valid UTF-8 without NUL");
    }
    if (p.avatar) require(is_valid_utf8(*p.avatar) && p.avatar->find('\0') == std::string::npos, "avatar sanitised");
    for (const std::int64_t n : {p.followers, p.following, p.posts})
      require(n >= 0 && n <= appview::max_count, "counts clamped to [0, 2^31-1]");
    // What ds-fetch-profiles writes for this account must be readable by ds-fetch-feeds.
    UserRecord u;
    u.did = f.did;
    u.handle = p.handle;
    u.as_of = *parse_timestamp("2026-11-01T06:00:00Z");
    u.profile_status = ProfileStatus::ok;
    u.profile = p;
    require_round_trip(u, want_user, "profile user round trip");
  }
}

// Every timestamp the parser accepts formats to a canonical form that parses to the same instant.
inline void timestamp(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto t = parse_timestamp(text);
  if (!t) return;
  require(*t >= min_timestamp && *t <= max_timestamp, "inside years 0001..9999");
  const std::string formatted = format_timestamp(*t);
  const auto again = parse_timestamp(formatted);
  require(again && *again == *t, "format_timestamp round trip");
  require(format_timestamp(*again) == formatted, "canonical form is stable");
  const std::string date = format_date(*t);
  require(date.size() == 10 && formatted.compare(0, 10, date) == 0, "format_date is the date part");
  const auto midnight = parse_timestamp(date + "T00:00:00Z");
  require(midnight && *midnight <= *t && *t - *midnight < micros_per_day, "date's midnight precedes it");
}

}  // namespace ds::fuzz
