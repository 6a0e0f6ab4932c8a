// ds-report's "data" section (accounts, snapshots per day, accounts gone quiet, backfills) and the
// one-account page (--account), plus the page assembly.
#include <algorithm>

#include "html.hpp"
#include "report.hpp"

namespace ds::report {
namespace {

Day today_of(Micros t) { return static_cast<Day>(t / micros_per_day - (t % micros_per_day < 0 ? 1 : 0)); }

std::string count(std::int64_t v) { return format_count(static_cast<double>(v)); }

std::string snapshots_chart(const ReportInput& in) {
  DayChart c;
  c.aria_label = "Snapshots written per day";
  c.y_unit = "snapshots";
  c.first = in.data.first_day;
  c.bars = true;
  c.wide = true;
  c.gap_note = "no snapshots";
  DaySeries s{"snapshots", "#0969da", {}};
  for (const auto n : in.data.snapshots_per_day)
    s.values.push_back(n > 0 ? std::optional<double>(static_cast<double>(n)) : std::nullopt);
  c.series.push_back(std::move(s));
  std::string gaps;
  const auto found = day_gaps(c);
  for (std::size_t i = 0; i < found.size(); ++i) {
    gaps += i ? ", " : "";
    gaps += found[i].first == found[i].second ? day_short(found[i].first)
                                              : day_short(found[i].first) + " to " + day_short(found[i].second);
  }
  return render_day_chart(c) + note(found.empty() ? "Every day of the period has snapshots."
                                                  : "Days without any snapshot (hatched): " + gaps + ".");
}

std::string quiet_table(const ReportInput& in) {
  const Day today = today_of(in.generated);
  std::vector<std::vector<std::string>> rows;
  for (const auto& q : in.data.quiet) {
    rows.push_back({escape(q.handle) + "<br><span class=\"did\">" + escape(q.did) + "</span>",
                    q.last_snapshot ? escape(day_iso(*q.last_snapshot)) : "never",
                    q.last_snapshot ? count(today - *q.last_snapshot) : "–", escape(q.reason)});
  }
  std::string out = table({"Account", "Last snapshot", "#Days since", "~Likeliest reason"}, rows);
  if (in.data.quiet_total > static_cast<std::int64_t>(in.data.quiet.size()))
    out += note("And " + count(in.data.quiet_total - static_cast<std::int64_t>(in.data.quiet.size())) +
                " more; ds-verify --stale-days lists the accounts the selection picked without a snapshot.");
  return out;
}

std::string opt(const std::optional<std::int64_t>& v) { return v ? count(*v) : "–"; }

// One series per day from `first` to `last` of an account's snapshots: missing days stay empty.
DaySeries account_series(const AccountData& a, Day first, Day last, const char* name, const char* color,
                         std::optional<std::int64_t> AccountPoint::*field) {
  DaySeries s{name, color, std::vector<std::optional<double>>(static_cast<std::size_t>(last - first + 1))};
  for (const auto& p : a.points)
    if (p.day >= first && p.day <= last && p.*field)
      s.values[static_cast<std::size_t>(p.day - first)] = static_cast<double>(*(p.*field));
  return s;
}

std::string change_note(const AccountData& a, std::optional<std::int64_t> AccountPoint::*field, const char* what) {
  std::optional<std::int64_t> first, last;
  Day first_day = 0;
  for (const auto& p : a.points) {
    if (!(p.*field)) continue;
    if (!first) first = p.*field, first_day = p.day;
    last = p.*field;
  }
  if (!first || !last) return std::string("no ") + what + " recorded";
  const std::int64_t d = *last - *first;
  return (d >= 0 ? "+" : "") + count(d) + " since " + day_short(first_day);
}

}  // namespace

std::string render_data_section(const ReportInput& in) {
  const auto& d = in.data;
  const Day today = today_of(in.generated);
  const std::int64_t today_snapshots = d.snapshots_per_day.empty() ? 0 : d.snapshots_per_day.back();
  std::string out = "<h2>The data<span class=\"h2note\">as of " + escape(day_iso(today)) + "</span></h2>\n";
  out += stat_row({
      stat_tile("Tracked accounts", count(d.accounts - d.skipped),
                count(d.accounts) + " in users · " + count(d.skipped) + " skip_user"),
      stat_tile("Active", count(d.active), "a views row in the last " + std::to_string(in.active_days) + " days"),
      stat_tile("Backfilled", count(d.backfilled), "full history fetched at least once"),
      stat_tile("Posts stored", count(d.live_posts), count(d.posts - d.live_posts) + " more marked deleted"),
      stat_tile("Snapshots today", count(today_snapshots), "dated " + day_short(today)),
      stat_tile("Quiet accounts", count(d.quiet_total),
                "no snapshot in the last " + std::to_string(in.stale_days) + " days",
                d.quiet_total > 0 ? "warn" : "good"),
  });
  out += "<div class=\"cards\">\n";
  out += card("Snapshots per day",
              "Account snapshots dated each day of the last " + std::to_string(in.days) + " days.",
              snapshots_chart(in), true);
  out += "</div>\n";
  out += "<h2>Accounts without a snapshot for " + std::to_string(in.stale_days) +
         " days<span class=\"h2note\">skip_user accounts left out; active ones first</span></h2>\n";
  out += d.quiet.empty() ? "<div class=\"placeholder\"><b>None.</b> Every tracked account has a snapshot from the last " +
                               std::to_string(in.stale_days) + " days.</div>\n"
                         : quiet_table(in);
  // Progressive backfill (docs/request-economy.md): accounts whose history takes several runs.
  out += "<h2>Backfills in progress<span class=\"h2note\">no snapshot until the history is complete</span></h2>\n";
  if (d.backfills.empty()) {
    out += "<div class=\"placeholder\" id=\"backfills\"><b>None are tracked yet.</b> No backfill is spread over "
           "several runs now (one that reaches BACKFILL_MAX_REQUESTS or MAX_POSTS_PER_USER continues the next day). " +
           count(std::max<std::int64_t>(d.accounts - d.skipped - d.backfilled, 0)) +
           " tracked accounts have no backfill marker yet; their next run starts their history.</div>\n";
    return out;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& b : d.backfills)
    rows.push_back({escape(b.handle) + "<br><span class=\"did\">" + escape(b.did) + "</span>",
                    b.started ? escape(format_timestamp(*b.started).substr(0, 10)) : "–",
                    b.covered_to ? escape(format_timestamp(*b.covered_to).substr(0, 10)) : "–", count(b.posts)});
  out += "<div id=\"backfills\">" + table({"Account", "Started", "Last run", "#Posts stored"}, rows) + "</div>\n";
  if (d.backfills_total > static_cast<std::int64_t>(d.backfills.size()))
    out += note("And " + count(d.backfills_total - static_cast<std::int64_t>(d.backfills.size())) + " more.");
  return out;
}

std::string render_account_section(const ReportInput& in, const AccountData& a) {
  const Day today = today_of(in.generated);
  std::string out;
  const AccountPoint* last = a.points.empty() ? nullptr : &a.points.back();
  const auto tile = [&](const char* label, std::optional<std::int64_t> AccountPoint::*field, const char* what) {
    return stat_tile(label, last ? opt(last->*field) : "–", change_note(a, field, what));
  };
  out += "<h2>Totals<span class=\"h2note\">" +
         escape(last ? "latest snapshot " + day_iso(last->day) : std::string("no snapshot yet")) + "</span></h2>\n";
  out += stat_row({tile("Followers", &AccountPoint::followers, "followers"),
                   tile("Following", &AccountPoint::following, "following"),
                   tile("Posts", &AccountPoint::posts, "posts"), tile("Likes", &AccountPoint::likes, "likes"),
                   tile("Replies", &AccountPoint::replies, "replies"), tile("Quotes", &AccountPoint::quotes, "quotes"),
                   tile("Reposts", &AccountPoint::reposts, "reposts")});
  if (a.points.empty())
    return out + "<div class=\"placeholder\"><b>No snapshots of this account yet.</b> It gets its first on the "
                 "next run that selects it and fetches its profile and feed completely.</div>\n";

  const Day first = a.points.front().day;
  const Day end = std::max(today, a.points.back().day);
  const auto chart = [&](const char* aria, const char* unit, bool from_zero,
                         std::vector<DaySeries> series) {
    DayChart c;
    c.aria_label = aria;
    c.y_unit = unit;
    c.first = first;
    c.from_zero = from_zero;
    c.gap_note = "no snapshot";
    c.series = std::move(series);
    std::vector<std::pair<std::string, std::string>> legend;
    for (const auto& s : c.series) legend.emplace_back(s.name, s.color);
    return render_day_chart(c) + (c.series.size() > 1 ? render_legend(legend) : std::string());
  };
  out += "<h2>Over time<span class=\"h2note\">" + escape(day_iso(first) + " to " + day_iso(end)) +
         "; hatched days have no snapshot</span></h2>\n<div class=\"cards\">\n";
  out += card("Followers", "Followers on each snapshot's day.",
              chart("Followers over time", "followers", false,
                    {account_series(a, first, end, "followers", "#0969da", &AccountPoint::followers)}));
  out += card("Posts", "Posts the profile reports on each snapshot's day.",
              chart("Posts over time", "posts", false,
                    {account_series(a, first, end, "posts", "#8250df", &AccountPoint::posts)}));
  out += card("Likes", "Likes summed over the account's live posts.",
              chart("Likes over time", "likes", true,
                    {account_series(a, first, end, "likes", "#bf3989", &AccountPoint::likes)}));
  out += card("Replies, reposts and quotes", "Summed over the account's live posts.",
              chart("Replies, reposts and quotes over time", "count", true,
                    {account_series(a, first, end, "replies", "#0969da", &AccountPoint::replies),
                     account_series(a, first, end, "reposts", "#1a7f37", &AccountPoint::reposts),
                     account_series(a, first, end, "quotes", "#bc4c00", &AccountPoint::quotes)}));
  out += "</div>\n";
  std::vector<std::vector<std::string>> rows;
  for (auto it = a.points.rbegin(); it != a.points.rend() && rows.size() < 60; ++it)
    rows.push_back({escape(day_iso(it->day)), opt(it->followers), opt(it->following), opt(it->posts), opt(it->likes),
                    opt(it->replies), opt(it->quotes), opt(it->reposts)});
  out += table({"Date", "#Followers", "#Following", "#Posts", "#Likes", "#Replies", "#Quotes", "#Reposts"}, rows);
  return out;
}

std::string render(const ReportInput& in) {
  const std::string generated = format_timestamp(in.generated).substr(0, 16);
  if (in.account) {
    const auto& a = *in.account;
    std::string sub = (a.display_name ? *a.display_name + " · " : std::string()) + a.did + " · " +
                      (a.backfilled_at ? "backfilled " + format_timestamp(*a.backfilled_at).substr(0, 10)
                                       : std::string("not backfilled yet")) +
                      (a.skip_user ? " · skip_user (never selected)" : "") + " · " + count(a.live_posts) +
                      " live posts stored · report of " + generated.substr(0, 10) + " " + generated.substr(11) + " UTC";
    return html_page(a.handle, sub, render_account_section(in, a));
  }
  const std::string sub = in.database + " · generated " + generated.substr(0, 10) + " " + generated.substr(11) + " UTC";
  return html_page("Nightly report", sub, render_runs_section(in) + render_data_section(in));
}

}  // namespace ds::report
