// Tests for ds-report's builders: escaping of hostile names, formats, axis ticks, bar and day charts
// (tooltips, the deadline line, gaps marked and never drawn through), and a whole page's structure.
#include <algorithm>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "ds/clock.hpp"
#include "html.hpp"
#include "report.hpp"
#include "svg.hpp"

namespace {

namespace dr = ds::report;

dr::Day day(const char* iso) {
  return static_cast<dr::Day>(*ds::parse_timestamp(std::string(iso) + "T00:00:00Z") / ds::micros_per_day);
}

std::size_t occurrences(const std::string& hay, const std::string& needle) {
  std::size_t n = 0;
  for (auto p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

// Every element opened is closed in order (void elements and self-closed SVG ones aside); the
// contents of <style> are skipped. Returns "" or what went wrong.
std::string tag_balance(const std::string& html) {
  static const std::vector<std::string> void_elements = {"meta", "br", "img", "hr", "link", "input", "!DOCTYPE"};
  std::vector<std::string> open;
  std::size_t i = 0;
  while ((i = html.find('<', i)) != std::string::npos) {
    const auto end = html.find('>', i);
    if (end == std::string::npos) return "unterminated tag at " + std::to_string(i);
    std::string tag = html.substr(i + 1, end - i - 1);
    i = end + 1;
    if (tag.rfind("!--", 0) == 0) continue;
    const bool closing = !tag.empty() && tag[0] == '/';
    const bool self_closed = !tag.empty() && tag.back() == '/';
    std::string name = tag.substr(closing ? 1 : 0);
    name = name.substr(0, name.find_first_of(" \t\n/"));
    if (closing) {
      if (open.empty() || open.back() != name) return "</" + name + "> closes <" + (open.empty() ? "" : open.back()) + ">";
      open.pop_back();
    } else if (!self_closed && std::find(void_elements.begin(), void_elements.end(), name) == void_elements.end()) {
      open.push_back(name);
      if (name == "style") {
        i = html.find("</style>", i);
        if (i == std::string::npos) return "unclosed <style>";
      }
    }
  }
  return open.empty() ? "" : "<" + open.back() + "> never closed";
}

}  // namespace

TEST_CASE("ds-report escapes what the database holds", "[report]") {
  CHECK(dr::escape("<script>alert(\"x\")</script> & 'y'") ==
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;");
  CHECK(dr::escape("Zoë \xF0\x9F\xA6\x8B") == "Zoë \xF0\x9F\xA6\x8B");  // UTF-8 kept
  CHECK(dr::escape(std::string("a\x01" "b\xff", 4)) == "a b\xEF\xBF\xBD");  // control byte, invalid byte
}

TEST_CASE("ds-report's number, duration and date formats", "[report]") {
  CHECK(dr::format_count(1234567) == "1,234,567");
  CHECK(dr::format_count(-1000) == "-1,000");
  CHECK(dr::format_count(0) == "0");
  CHECK(dr::format_compact(950) == "950");
  CHECK(dr::format_compact(2.5) == "2.5");
  CHECK(dr::format_compact(34000) == "34k");
  CHECK(dr::format_compact(1500000) == "1.5M");
  CHECK(dr::format_duration(4.2) == "4.2 s");
  CHECK(dr::format_duration(42) == "42 s");
  CHECK(dr::format_duration(312) == "5 min 12 s");
  CHECK(dr::format_duration(11100) == "3 h 05 min");
  CHECK(dr::format_percent(0.1234) == "12.3%");
  CHECK(dr::format_percent(0.0004) == "0.04%");
  CHECK(dr::day_iso(day("2026-11-03")) == "2026-11-03");
  CHECK(dr::day_short(day("2026-11-03")) == "Nov 3");
  CHECK(dr::day_short(day("2027-01-31")) == "Jan 31");
}

TEST_CASE("ds-report's axis ticks are round numbers covering the data", "[report]") {
  auto t = dr::nice_ticks(0, 87);
  CHECK(t.values == std::vector<double>{0, 20, 40, 60, 80, 100});
  CHECK(t.top == 100);
  t = dr::nice_ticks(0, 22);
  CHECK(t.values == std::vector<double>{0, 5, 10, 15, 20, 25});
  t = dr::nice_ticks(43.7, 58);  // an axis not from zero (followers)
  CHECK(t.values == std::vector<double>{40, 45, 50, 55, 60});
  CHECK(t.bottom == 40);
  t = dr::nice_ticks(0, 0);  // nothing to show: still an axis
  CHECK(t.values.size() >= 2);
  CHECK(t.top > 0);
  t = dr::nice_ticks(0, 0.6);
  CHECK(t.values.back() >= 0.6);
  CHECK(t.values.size() <= 8);
}

TEST_CASE("ds-report's bar chart: tooltips, status colours, the reference line and gap slots", "[report]") {
  dr::BarChart c;
  c.aria_label = "Duration <of> runs";
  c.y_unit = "hours";
  c.series = {{"duration", "#2da44e"}};
  dr::Bar a;
  a.label = "Nov 2";
  a.stack = {3};
  a.color = "#cf222e";
  a.tooltip = "Run #1 \"<b>\" & more";
  dr::Bar gap;
  gap.gap = true;
  gap.label = "no run";
  gap.tooltip = "No run on 2026-11-03";
  dr::Bar b;
  b.label = "Nov 4";
  b.stack = {1};
  b.tooltip = "Run #2";
  c.bars = {a, gap, b};
  c.reference = 22;
  c.reference_label = "22 h deadline";
  const std::string svg = dr::render_bar_chart(c);
  CHECK(tag_balance(svg).empty());
  CHECK(svg.find("aria-label=\"Duration &lt;of&gt; runs\"") != std::string::npos);
  CHECK(svg.find("<title>Run #1 &quot;&lt;b&gt;&quot; &amp; more</title>") != std::string::npos);
  CHECK(svg.find("fill=\"#cf222e\"") != std::string::npos);  // the status colour replaced the series'
  CHECK(svg.find("<title>No run on 2026-11-03</title>") != std::string::npos);
  CHECK(occurrences(svg, "url(#ds-hatch)") == 1);
  CHECK(svg.find("class=\"ref\"") != std::string::npos);
  CHECK(svg.find(">22 h deadline</text>") != std::string::npos);
  CHECK(svg.find(">hours</text>") != std::string::npos);
  // The axis reaches the reference: its top tick is at least 22.
  CHECK(svg.find(">25</text>") != std::string::npos);
  CHECK(svg.find("<script") == std::string::npos);
}

TEST_CASE("ds-report's day chart marks gaps and never draws a line across them", "[report]") {
  dr::DayChart c;
  c.aria_label = "Followers";
  c.y_unit = "followers";
  c.first = day("2026-11-01");
  c.from_zero = false;
  c.series = {{"followers <&>", "#0969da", {10.0, 12.0, std::nullopt, std::nullopt, 15.0, 16.0}}};
  const auto gaps = dr::day_gaps(c);
  REQUIRE(gaps.size() == 1);
  CHECK(gaps[0].first == day("2026-11-03"));
  CHECK(gaps[0].second == day("2026-11-04"));
  const std::string svg = dr::render_day_chart(c);
  CHECK(tag_balance(svg).empty());
  // Two separate strokes: one before the gap, one after; none joins Nov 2 to Nov 5.
  const auto d_at = svg.find("<path d=\"");
  REQUIRE(d_at != std::string::npos);
  const std::string d = svg.substr(d_at + 9, svg.find('"', d_at + 9) - d_at - 9);
  CHECK(occurrences(d, "M") == 2);
  CHECK(occurrences(d, "L") == 2);
  CHECK(svg.find("<title>no data: 2026-11-03 to 2026-11-04</title>") != std::string::npos);
  CHECK(svg.find("<title>2026-11-05: 15 followers &lt;&amp;&gt;</title>") != std::string::npos);
  CHECK(occurrences(svg, "<circle") == 4);
  CHECK(svg.find(">Nov 1</text>") != std::string::npos);

  // Bars: missing days are gaps too, with the chart's own note.
  c.bars = true;
  c.gap_note = "no snapshots";
  const std::string bars = dr::render_day_chart(c);
  CHECK(bars.find("<title>no snapshots: 2026-11-03 to 2026-11-04</title>") != std::string::npos);
  CHECK(occurrences(bars, "<g class=\"bar\">") == 4);
}

TEST_CASE("ds-report's capacity is the rate cap times the duration, for a shard too (shards share it)", "[report]") {
  dr::RunRow r;
  r.duration_s = 100;
  CHECK(dr::cap_capacity(r, 10) == Approx(1000));
  r.shard = "1/4";
  CHECK(dr::cap_capacity(r, 10) == Approx(1000));
  r.duration_s = 50;
  CHECK(dr::cap_capacity(r, 10) == Approx(500));
  CHECK_FALSE(dr::cap_capacity(r, 0).has_value());
  r.duration_s.reset();
  CHECK_FALSE(dr::cap_capacity(r, 10).has_value());
}

TEST_CASE("ds-report stacks each run's requests by endpoint; a run logged before the split shows its total", "[report]") {
  dr::ReportInput in;
  in.rate_limit_rps = 0;  // plain request counts: the heights are the numbers themselves
  dr::RunRow split;
  split.id = 2;
  split.status = "completed";
  split.started = *ds::parse_timestamp("2026-11-05T06:00:00Z");
  split.duration_s = 60;
  split.selected = 50;
  split.requests = 35;
  split.requests_profiles = 2;
  split.requests_feed = 20;
  split.requests_posts = 13;
  dr::RunRow before = split;
  before.id = 1;
  before.started = *ds::parse_timestamp("2026-11-04T06:00:00Z");
  before.requests_profiles = before.requests_feed = before.requests_posts = std::nullopt;
  in.runs = {split, before};
  const std::string html = dr::render_runs_section(in);
  CHECK(html.find("getProfiles 2 · getAuthorFeed 20 · getPosts 13") != std::string::npos);
  CHECK(html.find("0.7 per selected account") != std::string::npos);
  CHECK(html.find("not split by endpoint") != std::string::npos);  // the legend of run 1's stack
  CHECK(occurrences(html, "getProfiles 2 ·") == 1);  // run 1 has no split to show
}

TEST_CASE("ds-report tells why an account has no recent snapshot", "[report]") {
  dr::RunRow partial;
  partial.id = 9;
  partial.status = "partial";
  partial.error = "2 users not refreshed (profiles failed 0, feeds failed 2, feeds capped 0)";
  dr::RunRow running;
  running.id = 10;
  running.status = "in_progress";
  const std::vector<dr::RunRow> runs = {running, partial};
  dr::QuietFacts f{"did:plc:a", "a.test", false, true, std::string("2026-10-01")};
  CHECK(dr::quiet_reason(f, runs, 7) == "Not selected: no views in the last 7 days (last view 2026-10-01).");
  f.active = true;
  CHECK(dr::quiet_reason(f, runs, 7) ==
        "Last run #9 was partial: 2 users not refreshed (profiles failed 0, feeds failed 2, feeds capped 0).");
  f.backfilled = false;
  CHECK(dr::quiet_reason(f, runs, 7).rfind("No complete backfill yet", 0) == 0);
  f.handle = f.did;
  CHECK(dr::quiet_reason(f, runs, 7).rfind("Its handle moved", 0) == 0);
}

TEST_CASE("ds-report's page is one balanced, self-contained document", "[report]") {
  dr::ReportInput in;
  in.generated = *ds::parse_timestamp("2026-11-05T07:00:00Z");
  in.database = "postgresql://ops@db/<prod>";
  in.rate_limit_rps = 10;
  const dr::Day today = day("2026-11-05");
  for (int i = 0; i < 4; ++i) {
    dr::RunRow r;
    r.id = 10 - i;
    r.status = i == 1 ? "partial" : i == 3 ? "failed" : "completed";
    r.started = (today - (i == 3 ? 4 : i)) * ds::micros_per_day + 6 * 3600 * ds::micros_per_second;
    r.duration_s = 1800.0 + i;
    r.selected = 100;
    r.snapshotted = 95;
    r.failed = 3;
    r.gone = 2;
    r.requests = 9000;
    if (i == 1) r.error = "3 users not refreshed <&>";
    in.runs.push_back(r);
  }
  in.data.accounts = 120;
  in.data.skipped = 20;
  in.data.first_day = today - 4;
  in.data.snapshots_per_day = {95, 0, 95, 95, 95};
  in.data.quiet = {{"did:plc:evil", "<img src=x onerror=alert(1)>.test", std::nullopt, "Not selected: \"x\""}};
  in.data.quiet_total = 1;
  const std::string html = dr::render(in);
  CHECK(tag_balance(html).empty());
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("http://") == std::string::npos);
  CHECK(html.find("https://") == std::string::npos);
  CHECK(html.find("<img") == std::string::npos);
  CHECK(html.find("&lt;img src=x onerror=alert(1)&gt;.test") != std::string::npos);
  CHECK(html.find("3 users not refreshed &lt;&amp;&gt;") != std::string::npos);
  CHECK(html.find("postgresql://ops@db/&lt;prod&gt;") != std::string::npos);
  // Runs 10..7: the day without a run (between #8 and #7) and the day without snapshots are marked.
  CHECK(html.find("No run on ") != std::string::npos);
  CHECK(html.find("no snapshots: ") != std::string::npos);
  CHECK(html.find("Days without any snapshot (hatched): Nov 2.") != std::string::npos);
  CHECK(occurrences(html, "<tr>") == 1 + 4 + 1 + 1);  // runs table head + 4, quiet table head + 1
  CHECK(html.find("id=\"backfills\"") != std::string::npos);
  CHECK(html.find("None are tracked yet.") != std::string::npos);
  // Half-hour runs are far from the 22 h deadline: it is said, not drawn.
  CHECK(html.find("The 22 h deadline is off this scale") != std::string::npos);

  dr::AccountData a;
  a.did = "did:plc:zoe";
  a.handle = "zoe.test";
  a.display_name = "Zoë \"<3\" O'Brien";
  a.points = {{today - 3, 10, 5, 2, 7, 1, 0, 1}, {today, 14, 5, 3, 9, 1, 1, 2}};
  in.account = a;
  const std::string page = dr::render(in);
  CHECK(tag_balance(page).empty());
  CHECK(page.find("Zoë &quot;&lt;3&quot; O&#39;Brien") != std::string::npos);
  CHECK(page.find("+4 since Nov 2") != std::string::npos);  // followers 10 -> 14
  CHECK(page.find("no snapshot: 2026-11-03 to 2026-11-04") != std::string::npos);
  CHECK(page.find("The nights") == std::string::npos);
}

TEST_CASE("ds-report lists the backfills in progress, escaped, the oldest first as read", "[report]") {
  dr::ReportInput in;
  in.generated = *ds::parse_timestamp("2026-11-05T07:00:00Z");
  in.data.accounts = 3;
  in.data.snapshots_per_day = {0};
  in.data.first_day = day("2026-11-05");
  dr::BackfillProgress big{"did:plc:big", "<b>big</b>.test", *ds::parse_timestamp("2026-11-01T06:00:00Z"),
                           *ds::parse_timestamp("2026-11-05T06:00:00Z"), 42000};
  in.data.backfills = {big};
  in.data.backfills_total = 3;
  const std::string html = dr::render(in);
  CHECK(tag_balance(html).empty());
  CHECK(html.find("None are tracked yet.") == std::string::npos);
  CHECK(html.find("&lt;b&gt;big&lt;/b&gt;.test") != std::string::npos);
  CHECK(html.find("2026-11-01") != std::string::npos);
  CHECK(html.find("42,000") != std::string::npos);
  CHECK(html.find("And 2 more.") != std::string::npos);
}
