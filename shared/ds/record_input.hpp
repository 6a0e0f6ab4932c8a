// Reads records from a LineReader for a stage: decodes the types the stage consumes, forwards
// every other type unchanged, holds upstream `end` records back for the stage to re-emit at its
// end, and turns each bad line into one clear stderr line and a count (or an error with --strict).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <simdjson.h>

#include "ds/ndjson.hpp"
#include "ds/records.hpp"

namespace ds {

// Thrown for the first bad line under --strict, with the same one-line message.
struct BadInputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Bit mask of the types a stage consumes.
enum RecordMask : unsigned {
  want_user = 1u << 0,
  want_post = 1u << 1,
  want_snapshot = 1u << 2,
  want_selection = 1u << 3,
};

struct InputRecord {
  RecordType type = RecordType::other;
  std::uint64_t line_number = 0;
  std::string_view raw;  // the line as read, valid until the next call
  SelectionRecord selection;
  UserRecord user;
  PostRecord post;
  SnapshotRecord snapshot;
};

// Decoding a single line (exposed for tests and fuzzing). `line` must have >= SIMDJSON_PADDING
// readable bytes after its end. Returns an empty string on success, else what was wrong.
class RecordDecoder {
 public:
  std::string decode(std::string_view line, std::size_t capacity, unsigned mask, InputRecord& out,
                     EndRecord* end);

 private:
  simdjson::ondemand::parser parser_;
  simdjson::dom::parser validator_;  // full validation of the lines only forwarded
};

class RecordInput {
 public:
  RecordInput(std::string stage, LineReader& reader, OutputWriter& out, unsigned mask, bool strict);

  // The next record of a consumed type; false at end of input.
  bool next(InputRecord& rec);

  std::int64_t bad_lines() const { return bad_lines_; }
  std::uint64_t lines_read() const { return lines_; }
  bool saw_upstream_end() const { return !upstream_ends_.empty(); }
  const std::vector<EndRecord>& upstream_ends() const { return upstream_ends_; }
  // Writes the held upstream end records (in order) to the output.
  void write_upstream_ends();

 private:
  void bad_line(const Line& line, const std::string& what);
  std::string stage_;
  LineReader& reader_;
  OutputWriter& out_;
  unsigned mask_;
  bool strict_;
  RecordDecoder decoder_;
  std::vector<std::string> upstream_end_lines_;
  std::vector<EndRecord> upstream_ends_;
  std::int64_t bad_lines_ = 0;
  std::uint64_t lines_ = 0;
};

}  // namespace ds
