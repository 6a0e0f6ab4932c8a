// Line reading over large read(2) chunks and whole-line buffered writing.
// Each line handed out is followed by padding so simdjson can parse it in place, without a copy.
#include "ds/ndjson.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "ds/signals.hpp"

namespace ds {
namespace {
constexpr std::size_t padding = 64;  // >= SIMDJSON_PADDING
constexpr std::size_t chunk = 1 << 20;
std::size_t chunk_for(std::size_t max_line) { return std::clamp<std::size_t>(max_line, 4096, chunk); }
}  // namespace

// Reads are 1 MiB for the stages (max_line 1 MiB); a reader built with a small max_line (tests,
// fuzzing) reads in chunks of that size, so buffer refills and lines across them happen early.
LineReader::LineReader(int fd, std::string name, std::size_t max_line)
    : fd_(fd), name_(std::move(name)), max_line_(max_line),
      capacity_(std::max(max_line, chunk_for(max_line)) + chunk_for(max_line) + padding),
      buf_(new char[capacity_]) {
  std::memset(buf_.get(), 0, capacity_);
}

LineReader::~LineReader() = default;

// Moves the unread bytes to the front and reads more. Returns false when nothing more can come.
bool LineReader::fill() {
  if (eof_) return false;
  if (begin_ > 0) {
    std::memmove(buf_.get(), buf_.get() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  const std::size_t room = capacity_ - padding - end_;
  if (room == 0) return true;  // caller handles an over-long line
  if (hook_) hook_(hook_arg_);
  for (;;) {
    const ssize_t n = ::read(fd_, buf_.get() + end_, room);
    if (n > 0) {
      end_ += static_cast<std::size_t>(n);
      std::memset(buf_.get() + end_, 0, padding);
      return true;
    }
    if (n == 0) {
      eof_ = true;
      return false;
    }
    if (errno == EINTR) continue;
    throw std::system_error(errno, std::generic_category(), "reading " + name_);
  }
}

bool LineReader::next(Line& line) {
  line = Line{};
  std::size_t scanned = begin_;
  for (;;) {
    const char* start = buf_.get() + scanned;
    const void* nl = std::memchr(start, '\n', end_ - scanned);
    if (nl) {
      const std::size_t at = static_cast<std::size_t>(static_cast<const char*>(nl) - buf_.get());
      if (skipping_) {  // the rest of an over-long line: drop it and carry on
        skipping_ = false;
        begin_ = at + 1;
        scanned = begin_;
        continue;
      }
      line.number = ++line_no_;
      if (at - begin_ > max_line_) {
        // The whole over-long line fitted in the buffer (it holds max_line + one read): still
        // over the limit, whatever the read boundaries were.
        line.too_long = true;
        line.text = std::string_view(buf_.get() + begin_, std::min<std::size_t>(max_line_, 256));
        begin_ = at + 1;
        return true;
      }
      line.text = std::string_view(buf_.get() + begin_, at - begin_);
      // Keep padding readable after the line for simdjson: the bytes after it are the following
      // lines or the zeroed padding at the end of the buffer.
      begin_ = at + 1;
      return true;
    }
    if (!skipping_ && end_ - begin_ > max_line_) {
      // Hand out the head of the over-long line once, then skip to its newline.
      line.number = ++line_no_;
      line.too_long = true;
      line.text = std::string_view(buf_.get() + begin_, std::min<std::size_t>(max_line_, 256));
      skipping_ = true;
      begin_ = end_;
      return true;
    }
    if (skipping_) begin_ = end_;
    const std::size_t had = end_ - begin_;
    if (!fill()) {
      if (begin_ == end_ || skipping_) return false;
      line.number = ++line_no_;
      line.unterminated = true;
      line.text = std::string_view(buf_.get() + begin_, end_ - begin_);
      std::memset(buf_.get() + end_, 0, padding);
      begin_ = end_;
      return true;
    }
    scanned = begin_ + had;
  }
}

OutputWriter::OutputWriter(int fd, std::size_t flush_at) : fd_(fd), flush_at_(flush_at) {
  buf_.reserve(flush_at + 4096);
}

OutputWriter::~OutputWriter() {
  try {
    flush();
  } catch (...) {
  }
}

void OutputWriter::write_line(std::string_view line) {
  buf_.append(line);
  buf_ += '\n';
  record_done();
}

void OutputWriter::flush() {
  if (buf_.empty()) return;
  // A stop signal waits for this write, but only to the end of the line under way: the reader
  // never sees half a line, and a stalled reader holds the stop up by one line at most.
  const OutputSection section;
  std::size_t off = 0, limit = buf_.size();
  const auto finish_line_only = [&] {
    if (off == 0 || buf_[off - 1] == '\n') limit = off;
    else if (const auto nl = buf_.find('\n', off); nl != std::string::npos) limit = std::min(limit, nl + 1);
  };
  while (off < limit) {
    const ssize_t n = ::write(fd_, buf_.data() + off, limit - off);
    if (n < 0) {
      if (errno == EINTR) {
        if (stop_pending()) finish_line_only();
        continue;
      }
      const int e = errno;
      buf_.clear();
      throw std::system_error(e, std::generic_category(), "writing stdout");
    }
    off += static_cast<std::size_t>(n);
    if (stop_pending()) finish_line_only();
  }
  written_ += off;
  buf_.clear();
}

}  // namespace ds
