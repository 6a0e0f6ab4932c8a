// One request-start cadence shared by every process on this host that talks to the same API:
// the fetching stages of a pipeline, and the shards beside it, together stay within one cap.
#pragma once
#include <string>

namespace ds {

// The next free start time (CLOCK_MONOTONIC seconds, which every process on a host shares); each
// start takes it and moves it on by 1/rps. A slot missed by a whole interval restarts the cadence
// from now, so unused slots never bank into a burst. With a path the slot lives in a small file,
// taken under flock(2), so every process opening it shares one cadence (they should use the same
// rps: each advances the slot by its own interval); without one, in this object alone.
class RateGate {
 public:
  // Opens (creating, mode 0600) the file at `path`, or keeps the slot in memory when `path` is
  // empty. Throws std::runtime_error naming the path.
  RateGate(const std::string& path, double rps);
  ~RateGate();
  RateGate(const RateGate&) = delete;
  RateGate& operator=(const RateGate&) = delete;

  // The earliest time a start may happen, as the file says at `now` (monotonic seconds).
  // Reserves nothing.
  double next_slot(double now) const;
  // Takes the slot when it is due at `now` and returns true; else false (ask next_slot() when).
  bool try_take(double now);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;        // -1: no file, the slot is `slot_`
  double slot_ = 0;
  double interval_;
};

// Where the gate for `base_url` lives by default: one file per user and API, in
// $XDG_RUNTIME_DIR when set, else /tmp (docs/operations.md, "The API budget").
std::string default_rate_gate_path(const std::string& base_url);

}  // namespace ds
