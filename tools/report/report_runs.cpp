// ds-report's "nights" section: the last runs' status, duration against the 22-hour deadline,
// users, posts and API requests against the rate cap's capacity, as charts and one table.
#include <algorithm>
#include <cmath>

#include "ds/shard.hpp"
#include "html.hpp"
#include "report.hpp"

namespace ds::report {
namespace {

std::string count_or_dash(const std::optional<std::int64_t>& v) { return v ? format_count(static_cast<double>(*v)) : "–"; }

Day day_of(Micros t) { return static_cast<Day>(t / micros_per_day - (t % micros_per_day < 0 ? 1 : 0)); }

std::string time_utc(Micros t) {
  const std::string ts = format_timestamp(t);  // 2026-11-03T06:00:00.000Z
  return ts.substr(0, 10) + " " + ts.substr(11, 5);
}

std::string run_name(const RunRow& r) {
  std::string s = "Run #" + std::to_string(r.id);
  if (r.shard) s += " (shard " + *r.shard + ")";
  if (r.started) s += " · " + time_utc(*r.started) + " UTC";
  return s;
}

// The runs oldest first, with a gap slot wherever whole days passed without a run.
template <typename MakeBar>
std::vector<Bar> bars_with_gaps(const std::vector<const RunRow*>& runs, MakeBar&& make) {
  std::vector<Bar> bars;
  std::optional<Day> prev;
  for (const RunRow* r : runs) {
    if (r->started) {
      const Day d = day_of(*r->started);
      if (prev && d > *prev + 1) {
        Bar gap;
        gap.gap = true;
        gap.label = "no run";
        gap.tooltip = d == *prev + 2 ? "No run on " + day_iso(*prev + 1)
                                     : "No run from " + day_iso(*prev + 1) + " to " + day_iso(d - 1);
        bars.push_back(gap);
      }
      prev = std::max(prev.value_or(d), d);
    }
    Bar b = make(*r);
    b.label = r->started ? day_short(day_of(*r->started)) : "#" + std::to_string(r->id);
    bars.push_back(std::move(b));
  }
  return bars;
}

struct DurationScale {
  double divisor;
  std::string unit;
};
DurationScale duration_scale(double max_s) {
  if (max_s >= 2 * 3600) return {3600, "hours"};
  if (max_s >= 120) return {60, "minutes"};
  return {1, "seconds"};
}

std::string duration_chart(const std::vector<const RunRow*>& runs) {
  double max_s = 0;
  for (const RunRow* r : runs) max_s = std::max(max_s, r->duration_s.value_or(0));
  const DurationScale sc = duration_scale(max_s);
  BarChart c;
  c.aria_label = "Run duration against the 22-hour deadline";
  c.y_unit = sc.unit;
  c.series = {{"duration", "#2da44e"}};
  c.bars = bars_with_gaps(runs, [&](const RunRow& r) {
    Bar b;
    b.stack = {r.duration_s.value_or(0) / sc.divisor};
    b.color = status_color(r.status);
    b.tooltip = run_name(r) + "\n" + r.status + ", " +
                (r.duration_s ? format_duration(*r.duration_s) + " (" + format_percent(*r.duration_s / deadline_seconds) +
                                    " of the 22 h deadline)"
                              : std::string("no duration recorded"));
    return b;
  });
  std::string after;
  // The deadline is drawn when the runs come near enough to it to be compared on one scale;
  // otherwise the bars would be flat lines under it, and a sentence says how far they are.
  if (max_s >= deadline_seconds / 4) {
    c.reference = deadline_seconds / sc.divisor;
    c.reference_label = "22 h deadline";
  } else {
    after = note("The 22 h deadline is off this scale: the longest run took " + format_duration(max_s) + ", " +
                 format_percent(max_s / deadline_seconds) + " of it.");
  }
  return render_bar_chart(c) +
         render_legend({{"completed", status_color("completed")}, {"partial", status_color("partial")},
                        {"failed", status_color("failed")}, {"in progress", status_color("in_progress")}}) +
         after;
}

std::string users_chart(const std::vector<const RunRow*>& runs) {
  BarChart c;
  c.aria_label = "Users per run: snapshotted, failed, gone";
  c.y_unit = "users";
  c.series = {{"snapshotted", "#2da44e"}, {"failed", "#cf222e"}, {"gone", "#8c959f"}};
  c.bars = bars_with_gaps(runs, [](const RunRow& r) {
    Bar b;
    b.stack = {static_cast<double>(r.snapshotted.value_or(0)), static_cast<double>(r.failed.value_or(0)),
               static_cast<double>(r.gone.value_or(0))};
    b.tooltip = run_name(r) + "\nselected " + count_or_dash(r.selected) + ": snapshotted " +
                count_or_dash(r.snapshotted) + ", failed " + count_or_dash(r.failed) + ", gone " + count_or_dash(r.gone);
    return b;
  });
  return render_bar_chart(c) + render_series_legend(c.series);
}

std::string posts_chart(const std::vector<const RunRow*>& runs) {
  BarChart c;
  c.aria_label = "Posts loaded per run";
  c.y_unit = "posts";
  c.series = {{"posts", "#0969da"}};
  c.bars = bars_with_gaps(runs, [](const RunRow& r) {
    Bar b;
    b.stack = {static_cast<double>(r.posts_loaded.value_or(0))};
    b.tooltip = run_name(r) + "\n" + count_or_dash(r.posts_loaded) + " posts inserted, updated or found unchanged";
    return b;
  });
  return render_bar_chart(c);
}

// A run's requests by endpoint, then what the log holds beyond their sum (a run logged before the
// split, or requests of a stage this version does not know): the stacks of the API chart.
std::vector<double> requests_by_endpoint(const RunRow& r) {
  const double profiles = static_cast<double>(r.requests_profiles.value_or(0));
  const double feed = static_cast<double>(r.requests_feed.value_or(0));
  const double posts = static_cast<double>(r.requests_posts.value_or(0));
  const double total = static_cast<double>(r.requests.value_or(0));
  return {profiles, feed, posts, std::max(0.0, total - profiles - feed - posts)};
}

std::string api_chart(const std::vector<const RunRow*>& runs, double rps) {
  BarChart c;
  c.series = {{"getProfiles", "#0969da"}, {"getAuthorFeed", "#8250df"}, {"getPosts", "#1a7f37"},
              {"not split by endpoint", "#8c959f"}};
  const auto tooltip = [](const RunRow& r) {
    std::string t = run_name(r) + "\n" + count_or_dash(r.requests) + " requests (" + count_or_dash(r.retries) +
                    " retries)";
    if (r.requests_profiles || r.requests_feed || r.requests_posts)
      t += "\ngetProfiles " + count_or_dash(r.requests_profiles) + " · getAuthorFeed " +
           count_or_dash(r.requests_feed) + " · getPosts " + count_or_dash(r.requests_posts);
    if (r.selected && *r.selected > 0 && r.requests)
      t += "\n" + format_compact(static_cast<double>(*r.requests) / static_cast<double>(*r.selected)) +
           " per selected account";
    return t;
  };
  if (rps <= 0) {
    c.aria_label = "API requests per run, by endpoint";
    c.y_unit = "requests";
    c.bars = bars_with_gaps(runs, [&](const RunRow& r) {
      Bar b;
      b.stack = requests_by_endpoint(r);
      b.tooltip = tooltip(r);
      return b;
    });
    return render_bar_chart(c) + render_series_legend(c.series) +
           note("RATE_LIMIT_RPS is 0 (no cap), so there is no capacity to compare with.");
  }
  c.aria_label = "API requests by endpoint as a share of the rate cap's capacity for the run's duration";
  c.y_unit = "% of cap";
  c.tick_format = [](double v) { return format_compact(v) + "%"; };
  c.reference = 100;
  c.reference_label = "rate cap";
  c.bars = bars_with_gaps(runs, [&](const RunRow& r) {
    Bar b;
    const auto cap = cap_capacity(r, rps);
    b.stack = requests_by_endpoint(r);
    for (double& v : b.stack) v = cap ? 100.0 * v / *cap : 0;
    b.tooltip = tooltip(r) + (cap ? "\ncapacity " + format_count(*cap) + " = the cap × " +
                                        format_duration(r.duration_s.value_or(0)) + "; " +
                                        (r.requests ? format_percent(static_cast<double>(*r.requests) / *cap) : "–") +
                                        " of it"
                                  : std::string("\nno duration, no capacity"));
    return b;
  });
  return render_bar_chart(c) + render_series_legend(c.series);
}

std::vector<std::string> run_row(const RunRow& r, double rps) {
  const auto cap = cap_capacity(r, rps);
  std::string run = "#" + std::to_string(r.id);
  if (r.shard) run += " <span class=\"did\">shard " + escape(*r.shard) + "</span>";
  const auto with_share = [](const std::string& value, const std::optional<double>& share) {
    return escape(value) + (share ? "<span class=\"sub\">" + escape(format_percent(*share)) + "</span>" : "");
  };
  return {run,
          r.started ? escape(time_utc(*r.started)) : "–",
          status_pill(r.status),
          r.duration_s ? with_share(format_duration(*r.duration_s), *r.duration_s / deadline_seconds) : "–",
          count_or_dash(r.selected),
          count_or_dash(r.snapshotted),
          count_or_dash(r.failed),
          count_or_dash(r.gone),
          count_or_dash(r.posts_loaded),
          with_share(count_or_dash(r.requests), cap && r.requests
                                                    ? std::optional<double>(static_cast<double>(*r.requests) / *cap)
                                                    : std::nullopt),
          count_or_dash(r.retries),
          count_or_dash(r.bad_lines),
          r.error ? escape(*r.error) : ""};
}

}  // namespace

std::optional<double> cap_capacity(const RunRow& r, double rate_limit_rps) {
  if (!(rate_limit_rps > 0) || !r.duration_s || !(*r.duration_s > 0)) return std::nullopt;
  // A shard is not given 1/N of it: the shards of one host share the host's cap through its rate
  // file (docs/operations.md, "The API budget"), so each may use all of it while the others wait.
  return rate_limit_rps * *r.duration_s;
}

std::string render_runs_section(const ReportInput& in) {
  std::string out = "<h2>The nights<span class=\"h2note\">the last " + std::to_string(in.runs.size()) +
                    " runs from snapshot_logs</span></h2>\n";
  if (in.runs.empty()) {
    return out + "<div class=\"placeholder\"><b>No runs recorded yet.</b> snapshot_logs is empty: the pipeline has "
                 "not run against this database.</div>\n";
  }
  const RunRow& last = in.runs.front();
  std::int64_t completed = 0, partial = 0, failed = 0, other = 0;
  for (const auto& r : in.runs) {
    if (r.status == "completed") ++completed;
    else if (r.status == "partial") ++partial;
    else if (r.status == "failed") ++failed;
    else ++other;
  }
  const double share = last.duration_s ? *last.duration_s / deadline_seconds : 0;
  const auto cap = cap_capacity(last, in.rate_limit_rps);
  const std::string rate = in.rate_limit_rps > 0 ? format_compact(in.rate_limit_rps) + "/s per host" : "no cap";
  out += stat_row({
      stat_tile("Last run", status_pill(last.status), run_name(last).substr(4)),
      stat_tile("Last duration", escape(last.duration_s ? format_duration(*last.duration_s) : "–"),
                format_percent(share) + " of the 22 h deadline", share > 0.9 ? "bad" : share > 0.5 ? "warn" : ""),
      stat_tile("Runs completed", format_count(static_cast<double>(completed)) + " <span class=\"note\">of " +
                                      std::to_string(in.runs.size()) + "</span>",
                std::to_string(partial) + " partial · " + std::to_string(failed) + " failed · " +
                    std::to_string(other) + " other",
                failed > 0 ? "bad" : partial > 0 ? "warn" : "good"),
      stat_tile("Last run's users", count_or_dash(last.snapshotted),
                "snapshotted of " + count_or_dash(last.selected) + " selected · " + count_or_dash(last.failed) +
                    " failed · " + count_or_dash(last.gone) + " gone",
                last.failed.value_or(0) > 0 ? "warn" : ""),
      stat_tile("Last run's API use",
                escape(cap && last.requests ? format_percent(static_cast<double>(*last.requests) / *cap)
                                            : count_or_dash(last.requests)),
                count_or_dash(last.requests) + " requests · cap " + rate),
  });

  std::vector<const RunRow*> chrono;
  for (auto it = in.runs.rbegin(); it != in.runs.rend(); ++it) chrono.push_back(&*it);
  out += "<div class=\"cards\">\n";
  out += card("Duration", "Wall time of each run, coloured by its status, against the 22-hour deadline.",
              duration_chart(chrono));
  out += card("Users", "Selected users that got a snapshot, failed (profile or feed failed, feed capped) or are gone.",
              users_chart(chrono));
  out += card("API requests against the rate cap",
              in.rate_limit_rps > 0
                  ? "Requests as a share of RATE_LIMIT_RPS (" + format_compact(in.rate_limit_rps) +
                        "/s) × the run's duration; the shards of one host share that cap, so their shares add up."
                  : "Requests per run.",
              api_chart(chrono, in.rate_limit_rps) +
                  note("Requests by endpoint from the run log (getProfiles, getAuthorFeed, getPosts); runs logged "
                       "before migration 006 have only their total, in grey. Every fetching stage and shard of a "
                       "host shares one cap (RATE_LIMIT_RPS through RATE_LIMIT_FILE), so 100% is the host's budget."));
  out += card("Posts loaded", "Posts each run inserted, updated or found unchanged.", posts_chart(chrono));
  out += "</div>\n";

  std::vector<std::vector<std::string>> rows;
  for (const auto& r : in.runs) rows.push_back(run_row(r, in.rate_limit_rps));
  out += note("Duration: wall time and its share of the 22 h deadline. Requests: both fetching stages together, and "
              "their share of the rate cap's capacity.");
  out += table({"Run", "Started", "Status", "#Duration", "#Selected", "#Snapshots", "#Failed", "#Gone", "#Posts",
                "#Requests", "#Retries", "#Bad lines", "~Error"},
               rows);
  return out;
}

}  // namespace ds::report
