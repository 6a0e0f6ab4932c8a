// ds-report's drawing kit: HTML escaping, number/duration/date formats, "nice" axis ticks, and the
// two chart kinds the report uses (bars per run, series per day), as inline SVG strings.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ds::report {

// Text for HTML or SVG content and attribute values: & < > " ' as entities, invalid UTF-8 and
// control characters replaced, so a handle or display name can never open a tag or an attribute.
std::string escape(std::string_view s);

std::string format_count(double v);            // 1234567 -> "1,234,567" (rounded)
std::string format_compact(double v);          // 950, 1.2k, 34k, 1.5M
std::string format_duration(double seconds);   // "42 s", "5 min 12 s", "3 h 05 min"
std::string format_percent(double fraction);   // 0.1234 -> "12.3%"

// Days since 1970-01-01, UTC.
using Day = std::int32_t;
std::string day_iso(Day d);    // "2026-11-03"
std::string day_short(Day d);  // "Nov 3"

// Axis ticks from 0 (or `lo`) to at least `hi`, at 1, 2 or 5 times a power of ten, about `target`
// intervals; `top` is the last tick (the axis' end). A flat or empty range gets a unit axis.
struct Ticks {
  std::vector<double> values;
  double top = 1;
  double bottom = 0;
};
Ticks nice_ticks(double lo, double hi, int target = 5);

using TickFormat = std::function<std::string(double)>;

// Bars, one per run, stacked by series, on a categorical x axis. A slot marked `gap` draws no bar
// but a hatched band saying what is missing (days without a run).
struct BarSeries {
  std::string name;
  std::string color;
};
struct Bar {
  std::string label;          // under the axis (some are skipped when crowded)
  std::vector<double> stack;  // one value per series, bottom first
  std::string tooltip;        // the SVG <title>: shown on hover
  std::string color;          // overrides a one-series chart's color (status colours), optional
  bool gap = false;           // a missing slot: `tooltip` says what is missing, `label` is its short note
};
struct BarChart {
  std::string aria_label;  // what the chart shows, for screen readers
  std::string y_unit;      // the y axis' unit, printed above it
  TickFormat tick_format;  // defaults to format_compact
  std::vector<BarSeries> series;
  std::vector<Bar> bars;
  std::optional<double> reference;  // a dashed line across (a deadline, 100%)
  std::string reference_label;
  bool wide = false;  // drawn across a full-width card
};
std::string render_bar_chart(const BarChart& c);

// Series per day on a date axis. Days where no series has a value are gaps: a hatched band with
// "no data", and lines break there instead of joining across.
struct DaySeries {
  std::string name;
  std::string color;
  std::vector<std::optional<double>> values;  // one per day from `first`
};
struct DayChart {
  std::string aria_label;
  std::string y_unit;
  TickFormat tick_format;
  Day first = 0;
  std::vector<DaySeries> series;  // all the same length
  bool bars = false;              // bars (one series) instead of lines
  bool from_zero = true;          // false: the axis starts near the smallest value (followers)
  std::string gap_note = "no data";
  bool wide = false;  // drawn across a full-width card
};
std::string render_day_chart(const DayChart& c);
// The day chart's gaps: runs of days where no series has a value, as [first, last] pairs.
std::vector<std::pair<Day, Day>> day_gaps(const DayChart& c);

// A legend: a colour chip and a name per series.
std::string render_legend(const std::vector<std::pair<std::string, std::string>>& name_color);
// The legend of a stacked bar chart's series.
std::string render_series_legend(const std::vector<BarSeries>& series);

}  // namespace ds::report
