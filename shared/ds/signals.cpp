// Stop signals for the streaming stages. The handler only uses async-signal-safe calls (atomics,
// write, _exit); whether it may exit at once depends on whether a stdout write is under way.
#include "ds/signals.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>

#include "ds/exit_codes.hpp"

namespace ds {
namespace {

static_assert(std::atomic<int>::is_always_lock_free, "the handler needs lock-free atomics");

// Low bits: open output sections; `exiting`: some thread has committed to _exit. Both sides use
// sequentially consistent operations, so of a signal and a closing section at least one sees the
// other (the handler stores `pending` before testing the count, the writer decrements first).
constexpr int exiting = 1 << 30;
std::atomic<int> state{0};
std::atomic<int> pending{0};

char int_message[160];
char term_message[160];
std::size_t int_length = 0, term_length = 0;
std::atomic<bool> status_line{false};

[[noreturn]] void stop_now(int sig) {
  const char* msg = sig == SIGINT ? int_message : term_message;
  const std::size_t len = sig == SIGINT ? int_length : term_length;
  if (len > 0) {
    ssize_t ignored = 0;
    if (status_line.load()) ignored = ::write(STDERR_FILENO, clear_line_sequence, sizeof clear_line_sequence - 1);
    ignored = ::write(STDERR_FILENO, msg, len);
    (void)ignored;
  }
  ::_exit(exit_code::interrupted);
}

// Another thread is on its way to _exit: never touch stdout again.
[[noreturn]] void wait_for_exit() {
  for (;;) ::pause();
}

void on_stop_signal(int sig) {
  pending.store(sig);
  int idle = 0;
  if (state.compare_exchange_strong(idle, exiting)) stop_now(sig);
  // Otherwise a write is under way: the writer's OutputSection ends the process when it closes.
}

}  // namespace

void install_stop_signals(const char* program) {
  int_length = static_cast<std::size_t>(std::snprintf(
      int_message, sizeof int_message, "%s: interrupted by SIGINT; stopped without an end record (exit 130)\n", program));
  term_length = static_cast<std::size_t>(std::snprintf(
      term_message, sizeof term_message, "%s: interrupted by SIGTERM; stopped without an end record (exit 130)\n", program));
  int_length = std::min(int_length, sizeof int_message - 1);
  term_length = std::min(term_length, sizeof term_message - 1);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGINT);
  sigaddset(&sa.sa_mask, SIGTERM);
  // No SA_RESTART: a write blocked on a stalled reader must return, so that the writer finishes
  // only the line under way (reads and polls treat EINTR as "try again").
  sa.sa_flags = 0;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_DFL);  // an inherited SIG_IGN would turn a closed reader into error spam
}

void note_status_line(bool shown) { status_line.store(shown); }

bool stop_pending() { return pending.load() != 0; }

OutputSection::OutputSection() {
  int s = state.load();
  for (;;) {
    if (s & exiting) wait_for_exit();
    if (state.compare_exchange_weak(s, s + 1)) return;
  }
}

OutputSection::~OutputSection() {
  if (state.fetch_sub(1) != 1) return;  // another section is still open: it decides
  const int sig = pending.load();
  if (sig == 0) return;
  int idle = 0;
  if (state.compare_exchange_strong(idle, exiting)) stop_now(sig);
  if (idle & exiting) wait_for_exit();
}

}  // namespace ds
