// The host-wide rate gate: a double in a file, read and moved on under an exclusive flock, so
// starts from any number of processes are spaced 1/rps apart as if one client made them all.
#include "ds/rate_gate.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <optional>
#include <stdexcept>

#include "ds/shard.hpp"

namespace ds {

namespace {

std::runtime_error gate_error(const std::string& what, const std::string& path) {
  return std::runtime_error("rate gate " + path + ": " + what + ": " + std::strerror(errno));
}

// Holds an flock for a scope; flock(2) locks belong to the open file, so threads and processes
// that opened the file on their own exclude each other.
class FileLock {
 public:
  FileLock(int fd, int how) : fd_(fd) {
    while (::flock(fd_, how) != 0)
      if (errno != EINTR) throw std::runtime_error(std::string("rate gate flock: ") + std::strerror(errno));
  }
  ~FileLock() { ::flock(fd_, LOCK_UN); }

 private:
  int fd_;
};

// The stored slot, or 0 (free) when there is none yet (a new file reads short) or when it lies
// further ahead than any take can put it (now + one interval): a file left from before a reboot,
// when the monotonic clock started again from zero.
double read_slot(int fd, double now, double interval) {
  double slot = 0;
  if (::pread(fd, &slot, sizeof slot, 0) != static_cast<ssize_t>(sizeof slot)) return 0;
  return slot > now + interval ? 0 : slot;
}

}  // namespace

RateGate::RateGate(const std::string& path, double rps) : path_(path), interval_(1.0 / rps) {
  if (!(rps > 0)) throw std::invalid_argument("rate gate needs a positive rate");
  if (path.empty()) return;
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) throw gate_error("cannot open", path);
}

RateGate::~RateGate() {
  if (fd_ >= 0) ::close(fd_);
}

double RateGate::next_slot(double now) const {
  if (fd_ < 0) return slot_;
  FileLock lock(fd_, LOCK_SH);
  return read_slot(fd_, now, interval_);
}

bool RateGate::try_take(double now) {
  std::optional<FileLock> lock;
  if (fd_ >= 0) lock.emplace(fd_, LOCK_EX);
  const double slot = fd_ >= 0 ? read_slot(fd_, now, interval_) : slot_;
  if (slot > now) return false;
  // Count from the slot, not from when we woke up: a wake-up a millisecond late, every time, would
  // otherwise cost 10% of the rate at 100/s. A slot missed by a whole interval or more restarts
  // the cadence from now.
  const double next = (now - slot < interval_ ? slot : now) + interval_;
  if (fd_ < 0) {
    slot_ = next;
  } else if (::pwrite(fd_, &next, sizeof next, 0) != static_cast<ssize_t>(sizeof next)) {
    throw gate_error("cannot write", path_);
  }
  return true;
}

std::string default_rate_gate_path(const std::string& base_url) {
  const std::uint64_t h = fnv1a64(base_url);  // a short, stable name per API
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  const std::string dir = runtime && *runtime ? runtime : "/tmp";
  char name[96];
  std::snprintf(name, sizeof name, "/dopplersky-rate-%u-%016llx", static_cast<unsigned>(::getuid()),
                static_cast<unsigned long long>(h));
  return dir + name;
}

}  // namespace ds
