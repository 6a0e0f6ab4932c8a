// Clean stops for the streaming stages: SIGINT/SIGTERM end the process at once with exit 130,
// except while whole lines are being written to stdout, which finish first (no half line downstream).
#pragma once

namespace ds {

// Installs the SIGINT/SIGTERM handlers and restores SIGPIPE's default action (a stage whose reader
// has gone away has nothing left to do: it ends silently, as `yes | head -1` does). `program` names
// the one stderr line written on a stop. The stop is immediate because a streaming stage holds
// nothing worth saving: it writes no `end` record when stopped, so the run is recorded failed
// downstream. ds-load has its own handlers (it must roll back and record the run).
void install_stop_signals(const char* program);

// Carriage return and erase to the end of the line: takes a terminal status line back.
inline constexpr char clear_line_sequence[] = "\r\x1b[K";

// Whether a terminal status line (ds::Progress) is on stderr now: the stop message then clears it
// first, instead of landing at the end of a half-overwritten line.
void note_status_line(bool shown);

// Brackets one write of whole lines to stdout (OutputWriter::flush). A stop signal that arrives
// inside takes effect when the last open section closes. Cheap (two atomic operations) and a no-op
// in effect when no handler is installed.
// True once a stop signal has arrived (the process ends when the open output section closes).
bool stop_pending();

class OutputSection {
 public:
  OutputSection();
  ~OutputSection();
  OutputSection(const OutputSection&) = delete;
  OutputSection& operator=(const OutputSection&) = delete;
};

}  // namespace ds
