// NDJSON transport: a line reader over big buffered reads with simdjson padding after every line,
// and one buffered writer per stage. No record semantics here (see records.hpp, record_input.hpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace ds {

struct Line {
  std::string_view text;         // without the newline; followed by >= 64 readable bytes
  std::uint64_t number = 0;      // 1-based
  bool too_long = false;         // longer than the limit: `text` holds only its first bytes
  bool unterminated = false;     // the last line of the stream had no newline
};

class LineReader {
 public:
  // `name` appears in error messages ("stdin", a file name). Throws std::system_error on read errors.
  explicit LineReader(int fd, std::string name = "stdin", std::size_t max_line = 1 << 20);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // The next line, valid until the next call. Returns false at end of stream.
  bool next(Line& line);
  const std::string& name() const { return name_; }
  // Called before each blocking read, so a writer can flush what a slow pipeline has produced.
  void set_before_read(void (*hook)(void*), void* arg) { hook_ = hook; hook_arg_ = arg; }

 private:
  bool fill();
  int fd_;
  std::string name_;
  std::size_t max_line_;
  std::size_t capacity_;
  std::unique_ptr<char[]> buf_;
  std::size_t begin_ = 0, end_ = 0;
  std::uint64_t line_no_ = 0;
  bool eof_ = false;
  bool skipping_ = false;  // inside an over-long line, discarding up to its newline
  void (*hook_)(void*) = nullptr;
  void* hook_arg_ = nullptr;
};

// Buffered writer for stdout. Lines are only ever written whole: a record is appended to the
// buffer complete with its newline, and the buffer is flushed in multiples of whole lines.
class OutputWriter {
 public:
  explicit OutputWriter(int fd = 1, std::size_t flush_at = 1 << 16);
  ~OutputWriter();  // flushes; errors at exit are ignored (EPIPE on a closed reader)
  std::string& buffer() { return buf_; }     // append whole lines, then call record_done()
  void write_line(std::string_view line);    // appends line + '\n'
  void record_done() { if (buf_.size() >= flush_at_) flush(); }
  void flush();  // throws std::system_error (EPIPE included)
  std::uint64_t bytes_written() const { return written_; }
  static void flush_hook(void* self) { static_cast<OutputWriter*>(self)->flush(); }

 private:
  int fd_;
  std::size_t flush_at_;
  std::string buf_;
  std::uint64_t written_ = 0;
};

}  // namespace ds
