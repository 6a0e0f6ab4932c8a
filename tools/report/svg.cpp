// ds-report's drawing kit: escaping, formats, axis ticks and the bar and day charts as inline SVG.
// Every chart is a fixed viewBox scaled by CSS; the numbers are in <title>s, which browsers show on hover.
#include "svg.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "ds/clock.hpp"
#include "ds/json_writer.hpp"

namespace ds::report {
namespace {

// A chart's viewBox and the drawing area inside it (the left margin holds the tick labels). The
// width is about the size a card shows it at, so that 11-unit text reads as 11 px: half-width
// cards and full-width ones have their own.
struct Frame {
  double width, height, left, right, top, bottom;
};
Frame frame_for(bool wide) {
  const double w = wide ? 1120 : 540;
  return Frame{w, 220, 52, w - 8, 28, 192};
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  std::string s = buf;
  if (s.size() > 2 && s.compare(s.size() - 2, 2, ".0") == 0) s.resize(s.size() - 2);
  return s;
}

std::string svg_open(const Frame& f, const std::string& aria_label) {
  return "<svg class=\"chart\" viewBox=\"0 0 " + num(f.width) + " " + num(f.height) +
         "\" role=\"img\" aria-label=\"" + escape(aria_label) + "\">";
}

std::string text(double x, double y, const std::string& cls, const std::string& anchor, const std::string& content) {
  return "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" class=\"" + cls + "\" text-anchor=\"" + anchor + "\">" +
         escape(content) + "</text>";
}

std::string rect(double x, double y, double w, double h, const std::string& attrs) {
  return "<rect x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + num(std::max(w, 0.0)) + "\" height=\"" +
         num(std::max(h, 0.0)) + "\" " + attrs + "/>";
}

// Gridlines and tick labels of the y axis, and its unit above it.
std::string y_axis(const Frame& f, const Ticks& t, const TickFormat& fmt, const std::string& unit) {
  std::string out;
  const auto y_of = [&](double v) { return f.bottom - (v - t.bottom) / (t.top - t.bottom) * (f.bottom - f.top); };
  for (const double v : t.values) {
    const double y = y_of(v);
    out += "<line x1=\"" + num(f.left) + "\" x2=\"" + num(f.right) + "\" y1=\"" + num(y) + "\" y2=\"" + num(y) +
           "\" class=\"" + (v == t.bottom ? "axis" : "grid") + "\"/>";
    out += text(f.left - 7, y + 4, "tick", "end", fmt ? fmt(v) : format_compact(v));
  }
  out += text(2, f.top - 14, "unit", "start", unit);
  return out;
}

// Which of n x labels to print: about one per 56 units of width.
std::size_t label_step(const Frame& f, std::size_t n) {
  const auto fit = static_cast<std::size_t>((f.right - f.left) / 56);
  return std::max<std::size_t>(1, (n + fit - 1) / std::max<std::size_t>(fit, 1));
}

std::string hatch_rect(double x, double y, double w, double h) {
  return rect(x, y, w, h, "class=\"gap-band\" fill=\"url(#ds-hatch)\"");
}

}  // namespace

std::string escape(std::string_view s) {
  std::string out;
  for (const char ch : sanitize_utf8(s)) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default:
        // Control characters are not allowed in HTML text; tab and newline are whitespace.
        if ((static_cast<unsigned char>(ch) < 0x20 && ch != '\t' && ch != '\n') || ch == 0x7f) out += ' ';
        else out += ch;
    }
  }
  return out;
}

std::string format_count(double v) {
  const bool negative = v < 0;
  const auto n = static_cast<std::int64_t>(std::llround(std::fabs(v)));
  std::string digits = std::to_string(n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return negative && n != 0 ? "-" + out : out;
}

std::string format_compact(double v) {
  const double a = std::fabs(v);
  char buf[32];
  if (a >= 1e9) std::snprintf(buf, sizeof buf, "%.3gB", v / 1e9);
  else if (a >= 1e6) std::snprintf(buf, sizeof buf, "%.3gM", v / 1e6);
  else if (a >= 1e4) std::snprintf(buf, sizeof buf, "%.3gk", v / 1e3);
  else if (a >= 1000 || a == std::floor(a)) return format_count(v);
  else std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

std::string format_duration(double seconds) {
  if (!(seconds >= 0)) return "–";
  char buf[48];
  if (seconds < 60) std::snprintf(buf, sizeof buf, seconds < 10 ? "%.1f s" : "%.0f s", seconds);
  else if (seconds < 3600) {
    const auto s = static_cast<long>(std::lround(seconds));
    std::snprintf(buf, sizeof buf, "%ld min %02ld s", s / 60, s % 60);
  } else {
    const auto m = static_cast<long>(std::lround(seconds / 60));
    std::snprintf(buf, sizeof buf, "%ld h %02ld min", m / 60, m % 60);
  }
  return buf;
}

std::string format_percent(double fraction) {
  char buf[32];
  const double p = fraction * 100;
  std::snprintf(buf, sizeof buf, p != 0 && std::fabs(p) < 0.1 ? "%.2f%%" : "%.1f%%", p);
  return buf;
}

std::string day_iso(Day d) { return format_date(static_cast<Micros>(d) * micros_per_day); }

std::string day_short(Day d) {
  static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::string iso = day_iso(d);  // YYYY-MM-DD
  const int month = std::stoi(iso.substr(5, 2));
  const int dom = std::stoi(iso.substr(8, 2));
  return std::string(months[(month + 11) % 12]) + " " + std::to_string(dom);
}

Ticks nice_ticks(double lo, double hi, int target) {
  Ticks t;
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = 0, hi = 1;
  if (hi < lo) std::swap(lo, hi);
  if (hi - lo < 1e-9) hi = lo + (lo == 0 ? 1 : std::fabs(lo) * 0.1);
  const double raw = (hi - lo) / std::max(target, 1);
  const double mag = std::pow(10, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  const double step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  const double first = std::floor(lo / step + 1e-9);
  const double last = std::ceil(hi / step - 1e-9);
  for (double k = first; k <= last + 0.5; ++k) t.values.push_back(k * step);
  t.bottom = t.values.front();
  t.top = t.values.back();
  if (t.values.size() == 1) {  // lo == hi on a step: one more tick above
    t.values.push_back(t.top + step);
    t.top += step;
  }
  return t;
}

std::string render_bar_chart(const BarChart& c) {
  double max_value = 0;
  for (const auto& b : c.bars) {
    double sum = 0;
    for (const double v : b.stack) sum += std::max(v, 0.0);
    max_value = std::max(max_value, sum);
  }
  if (c.reference) max_value = std::max(max_value, *c.reference);
  const Frame f = frame_for(c.wide);
  const double left = f.left, right = f.right, top = f.top, bottom = f.bottom;
  const Ticks t = nice_ticks(0, max_value);
  const auto y_of = [&](double v) { return bottom - v / t.top * (bottom - top); };
  std::string out = svg_open(f, c.aria_label);
  out += y_axis(f, t, c.tick_format, c.y_unit);
  const std::size_t n = std::max<std::size_t>(c.bars.size(), 1);
  const double slot = (right - left) / static_cast<double>(n);
  const double bar_w = std::min(slot * 0.68, 30.0);
  const std::size_t step = label_step(f, c.bars.size());
  for (std::size_t i = 0; i < c.bars.size(); ++i) {
    const Bar& b = c.bars[i];
    const double cx = left + slot * (static_cast<double>(i) + 0.5);
    if (b.gap) {
      out += "<g class=\"gap\"><title>" + escape(b.tooltip) + "</title>";
      out += hatch_rect(cx - slot / 2 + 1, top, slot - 2, bottom - top);
      out += "</g>";
    } else {
      out += "<g class=\"bar\"><title>" + escape(b.tooltip) + "</title>";
      // A transparent full-height target, so that a short bar is as easy to hover as a tall one.
      out += rect(cx - slot / 2, top, slot, bottom - top, "fill=\"transparent\"");
      double base = 0;
      for (std::size_t s = 0; s < b.stack.size() && s < c.series.size(); ++s) {
        const double v = std::max(b.stack[s], 0.0);
        if (v <= 0) continue;
        const double y0 = y_of(base), y1 = y_of(base + v);
        const std::string color = !b.color.empty() && c.series.size() == 1 ? b.color : c.series[s].color;
        // At least one unit tall: a value that rounds to nothing is still seen to exist.
        out += rect(cx - bar_w / 2, std::min(y1, y0 - 1), bar_w, std::max(y0 - y1, 1.0),
                    "rx=\"2\" fill=\"" + escape(color) + "\"");
        base += v;
      }
      out += "</g>";
    }
    if (i % step == 0) out += text(cx, bottom + 16, b.gap ? "tick gap-label" : "tick", "middle", b.label);
  }
  if (c.reference) {
    const double y = y_of(*c.reference);
    out += "<line x1=\"" + num(left) + "\" x2=\"" + num(right) + "\" y1=\"" + num(y) + "\" y2=\"" + num(y) +
           "\" class=\"ref\"/>";
    out += text(right - 4, y - 5, "ref-label", "end", c.reference_label);
  }
  out += "</svg>";
  return out;
}

std::vector<std::pair<Day, Day>> day_gaps(const DayChart& c) {
  std::vector<std::pair<Day, Day>> gaps;
  std::size_t n = 0;
  for (const auto& s : c.series) n = std::max(n, s.values.size());
  for (std::size_t i = 0; i < n; ++i) {
    const bool missing = std::none_of(c.series.begin(), c.series.end(), [&](const DaySeries& s) {
      return i < s.values.size() && s.values[i].has_value();
    });
    if (!missing) continue;
    const Day d = c.first + static_cast<Day>(i);
    if (!gaps.empty() && gaps.back().second == d - 1) gaps.back().second = d;
    else gaps.emplace_back(d, d);
  }
  return gaps;
}

std::string render_day_chart(const DayChart& c) {
  std::size_t n = 0;
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& s : c.series) {
    n = std::max(n, s.values.size());
    for (const auto& v : s.values)
      if (v) lo = std::min(lo, *v), hi = std::max(hi, *v);
  }
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (c.from_zero || c.bars) lo = std::min(lo, 0.0);
  else lo -= (hi - lo) * 0.1;  // leave room under the lowest point
  const Frame f = frame_for(c.wide);
  const double left = f.left, right = f.right, top = f.top, bottom = f.bottom;
  const Ticks t = nice_ticks(lo, hi);
  const auto y_of = [&](double v) { return bottom - (v - t.bottom) / (t.top - t.bottom) * (bottom - top); };
  const double slot = (right - left) / static_cast<double>(std::max<std::size_t>(n, 1));
  const auto x_of = [&](std::size_t i) { return left + slot * (static_cast<double>(i) + 0.5); };

  std::string out = svg_open(f, c.aria_label);
  out += y_axis(f, t, c.tick_format, c.y_unit);
  for (const auto& [from, to] : day_gaps(c)) {
    const double x0 = left + slot * (from - c.first), x1 = left + slot * (to - c.first + 1);
    const std::string span = from == to ? day_iso(from) : day_iso(from) + " to " + day_iso(to);
    out += "<g class=\"gap\"><title>" + escape(c.gap_note + ": " + span) + "</title>" +
           hatch_rect(x0, top, x1 - x0, bottom - top);
    if (x1 - x0 >= 56) out += text((x0 + x1) / 2, top + 14, "gap-label", "middle", c.gap_note);
    out += "</g>";
  }
  const auto fmt = c.tick_format ? c.tick_format : TickFormat(format_count);
  for (const auto& s : c.series) {
    if (c.bars) {
      const double bar_w = std::min(slot * 0.7, 24.0);
      for (std::size_t i = 0; i < s.values.size(); ++i) {
        if (!s.values[i]) continue;
        const double y = y_of(*s.values[i]);
        out += "<g class=\"bar\"><title>" + escape(day_iso(c.first + static_cast<Day>(i)) + ": " +
                                                   fmt(*s.values[i]) + " " + s.name) + "</title>";
        out += rect(x_of(i) - bar_w / 2, std::min(y, bottom - 1), bar_w, std::max(bottom - y, 1.0),
                    "rx=\"1.5\" fill=\"" + escape(s.color) + "\"");
        out += "</g>";
      }
      continue;
    }
    // A line breaks wherever this series has no value: it never joins across missing days.
    std::string path;
    bool pen_down = false;
    for (std::size_t i = 0; i < s.values.size(); ++i) {
      if (!s.values[i]) {
        pen_down = false;
        continue;
      }
      // Appended piece by piece: `"L" + std::string&&` trips GCC 12's false -Wrestrict at -O3.
      path += pen_down ? 'L' : 'M';
      path += num(x_of(i));
      path += ' ';
      path += num(y_of(*s.values[i]));
      pen_down = true;
    }
    if (!path.empty())
      out += "<path d=\"" + path + "\" class=\"line\" stroke=\"" + escape(s.color) + "\"/>";
    const double r = s.values.size() <= 60 ? 2.6 : 1.6;
    for (std::size_t i = 0; i < s.values.size(); ++i) {
      if (!s.values[i]) continue;
      out += "<circle cx=\"" + num(x_of(i)) + "\" cy=\"" + num(y_of(*s.values[i])) + "\" r=\"" + num(r) +
             "\" fill=\"" + escape(s.color) + "\" class=\"point\"><title>" +
             escape(day_iso(c.first + static_cast<Day>(i)) + ": " + fmt(*s.values[i]) + " " + s.name) +
             "</title></circle>";
    }
  }
  const std::size_t step = std::max<std::size_t>(label_step(f, n), n > 21 ? 7 : 1);
  for (std::size_t i = 0; i < n; i += step)
    out += text(x_of(i), bottom + 16, "tick", "middle", day_short(c.first + static_cast<Day>(i)));
  out += "</svg>";
  return out;
}

std::string render_legend(const std::vector<std::pair<std::string, std::string>>& name_color) {
  std::string out = "<div class=\"legend\">";
  for (const auto& [name, color] : name_color)
    out += "<span><i style=\"background:" + escape(color) + "\"></i>" + escape(name) + "</span>";
  return out + "</div>";
}

std::string render_series_legend(const std::vector<BarSeries>& series) {
  std::vector<std::pair<std::string, std::string>> name_color;
  for (const auto& s : series) name_color.emplace_back(s.name, s.color);
  return render_legend(name_color);
}

}  // namespace ds::report
