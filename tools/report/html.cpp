// ds-report's HTML shell and blocks. The stylesheet is inline and the page loads nothing, so it
// looks the same opened from disk, from a cron mail's attachment or on a machine without network.
#include "html.hpp"

#include <fmt/format.h>

#include "svg.hpp"

namespace ds::report {
namespace {

// A restrained palette in the manner of GitHub's and Grafana's light themes: grey text and
// borders, one blue for data, green/amber/red only where they mean a status.
constexpr const char* stylesheet = R"CSS(
:root{--fg:#1f2328;--muted:#59636e;--faint:#818b98;--border:#d1d9e0;--line:#eef1f4;--bg:#f6f8fa;--card:#fff;
--blue:#0969da;--green:#1a7f37;--amber:#9a6700;--red:#cf222e}
*{box-sizing:border-box}
html{background:var(--bg)}
body{margin:0;color:var(--fg);font:14px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI","Noto Sans",Helvetica,Arial,"DejaVu Sans",sans-serif}
header.top{background:var(--card);border-bottom:1px solid var(--border);padding:18px 32px}
header.top .brand{font-size:12px;font-weight:600;color:var(--blue);letter-spacing:.06em;text-transform:uppercase}
header.top h1{margin:2px 0 0;font-size:22px;font-weight:600;line-height:1.3}
header.top .sub{color:var(--muted);font-size:13px;margin-top:2px}
main{max-width:1200px;margin:0 auto;padding:8px 32px 40px}
h2{font-size:17px;font-weight:600;margin:28px 0 12px;padding-bottom:8px;border-bottom:1px solid var(--border)}
h2 .h2note{font-size:12px;font-weight:400;color:var(--muted);margin-left:8px}
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:12px}
.stat{background:var(--card);border:1px solid var(--border);border-radius:8px;padding:12px 16px}
.stat .label{color:var(--muted);font-size:11px;font-weight:600;text-transform:uppercase;letter-spacing:.05em}
.stat .value{font-size:24px;font-weight:600;margin-top:2px;line-height:1.3;font-variant-numeric:tabular-nums}
.stat .value.good{color:var(--green)}.stat .value.warn{color:var(--amber)}.stat .value.bad{color:var(--red)}
.stat .value .pill{font-size:14px;vertical-align:4px}
.stat .note{color:var(--muted);font-size:12px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:16px;margin-top:16px}
.card{background:var(--card);border:1px solid var(--border);border-radius:8px;padding:14px 16px 12px;min-width:0}
.card.wide{grid-column:1/-1}
.card h3{margin:0;font-size:14px;font-weight:600}
.card .desc{color:var(--muted);font-size:12px;margin:1px 0 8px}
svg.chart{width:100%;height:auto;display:block}
svg .grid{stroke:var(--line);stroke-width:1}
svg .axis{stroke:#c8d1da;stroke-width:1}
svg .tick{font-size:11px;fill:var(--muted)}
svg .unit{font-size:11px;fill:var(--muted);font-weight:600}
svg .ref{stroke:var(--red);stroke-dasharray:6 4;stroke-width:1.5}
svg .ref-label{font-size:11px;fill:var(--red);font-weight:600}
svg .line{fill:none;stroke-width:2;stroke-linejoin:round;stroke-linecap:round}
svg .bar:hover rect[rx]{opacity:.75}
svg .point:hover{stroke:var(--fg);stroke-width:2}
svg .gap-label{font-size:11px;fill:var(--faint);font-style:italic}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12px;color:var(--muted);margin:6px 0 0 52px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;vertical-align:-1px}
.note{font-size:12px;color:var(--muted);margin:8px 0 0}
.note b{color:var(--fg);font-weight:600}
.table-wrap{overflow-x:auto;background:var(--card);border:1px solid var(--border);border-radius:8px;margin-top:16px}
table{width:100%;border-collapse:collapse;font-size:13px}
th,td{padding:7px 9px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
tr:last-child td{border-bottom:0}
th{color:var(--muted);font-weight:600;font-size:12px;background:var(--bg)}
th.num,td.num{text-align:right;font-variant-numeric:tabular-nums}
td.wrap{white-space:normal;min-width:200px;color:var(--muted)}
td .did,td .sub{color:var(--faint);font-size:12px}
td .sub{margin-left:6px}
tbody tr:hover td{background:#f6f8fa}
.pill{display:inline-block;padding:0 8px;border-radius:999px;font-size:12px;font-weight:600;line-height:20px}
.pill.completed{background:#dafbe1;color:var(--green)}
.pill.partial{background:#fff8c5;color:var(--amber)}
.pill.failed{background:#ffebe9;color:var(--red)}
.pill.in_progress,.pill.other{background:#ddf4ff;color:var(--blue)}
.placeholder{border:1px dashed var(--border);border-radius:8px;padding:14px 16px;color:var(--muted);background:var(--card);margin-top:16px}
.placeholder b{color:var(--fg)}
footer{color:var(--faint);font-size:12px;text-align:center;padding:8px 32px 32px}
)CSS";

// The hatch the charts' gap bands are filled with, defined once for every inline SVG of the page.
constexpr const char* shared_svg_defs =
    "<svg width=\"0\" height=\"0\" style=\"position:absolute\" aria-hidden=\"true\" focusable=\"false\"><defs>"
    "<pattern id=\"ds-hatch\" width=\"7\" height=\"7\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">"
    "<rect width=\"7\" height=\"7\" fill=\"#f6f8fa\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"7\" stroke=\"#d8dee4\" "
    "stroke-width=\"2.5\"/></pattern></defs></svg>";

}  // namespace

std::string html_page(const std::string& title, const std::string& subtitle, const std::string& body_html) {
  std::string out =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      "<meta name=\"generator\" content=\"ds-report\">\n<title>";
  out += escape(title) + " · dopplersky</title>\n<style>" + stylesheet + "</style>\n</head>\n<body>\n";
  out += shared_svg_defs;
  out += "\n<header class=\"top\"><div class=\"brand\">dopplersky</div><h1>" + escape(title) +
         "</h1><div class=\"sub\">" + escape(subtitle) + "</div></header>\n<main>\n";
  out += body_html;
  out += "\n</main>\n<footer>Generated by ds-report. Times are UTC. Hover a bar or a point for its numbers; "
         "the runs' numbers are also in the table under their charts.</footer>\n</body>\n</html>\n";
  return out;
}

std::string stat_tile(const std::string& label, const std::string& value_html, const std::string& note_text,
                      const std::string& tone) {
  // fmt, not `" " + std::string&&`, which trips GCC 12's false -Wrestrict at -O3 (make build-release).
  return fmt::format("<div class=\"stat\"><div class=\"label\">{}</div><div class=\"value{}{}\">{}</div>"
                     "<div class=\"note\">{}</div></div>",
                     escape(label), tone.empty() ? "" : " ", escape(tone), value_html, escape(note_text));
}

std::string stat_row(const std::vector<std::string>& tiles) {
  std::string out = "<div class=\"stats\">";
  for (const auto& t : tiles) out += t;
  return out + "</div>\n";
}

std::string card(const std::string& title, const std::string& description, const std::string& content_html,
                 bool wide) {
  return std::string("<section class=\"card") + (wide ? " wide" : "") + "\"><h3>" + escape(title) +
         "</h3><p class=\"desc\">" + escape(description) + "</p>" + content_html + "</section>\n";
}

std::string status_pill(const std::string& status) {
  const bool known = status == "completed" || status == "partial" || status == "failed" || status == "in_progress";
  return "<span class=\"pill " + (known ? status : std::string("other")) + "\">" +
         escape(status == "in_progress" ? "in progress" : status) + "</span>";
}

std::string status_color(const std::string& status) {
  if (status == "completed") return "#2da44e";
  if (status == "partial") return "#d4a72c";
  if (status == "failed") return "#cf222e";
  return "#54aeff";
}

std::string note(const std::string& text) { return "<p class=\"note\">" + escape(text) + "</p>"; }

std::string table(const std::vector<std::string>& headers, const std::vector<std::vector<std::string>>& rows_html) {
  std::vector<std::string> td;  // each column's opening cell tag
  std::string out = "<div class=\"table-wrap\"><table><thead><tr>";
  for (const auto& h : headers) {
    const char kind = h.empty() ? ' ' : h[0];
    const std::string name = kind == '#' || kind == '~' ? h.substr(1) : h;
    td.push_back(kind == '#' ? "<td class=\"num\">" : kind == '~' ? "<td class=\"wrap\">" : "<td>");
    out += (kind == '#' ? "<th class=\"num\">" : "<th>") + escape(name) + "</th>";
  }
  out += "</tr></thead><tbody>";
  for (const auto& row : rows_html) {
    out += "<tr>";
    for (std::size_t i = 0; i < row.size(); ++i) out += (i < td.size() ? td[i] : "<td>") + row[i] + "</td>";
    out += "</tr>";
  }
  return out + "</tbody></table></div>\n";
}

}  // namespace ds::report
