// ds-report's HTML building blocks: the page shell with its inline stylesheet, stat tiles, cards,
// status pills and tables. Every text argument is escaped here; `html` arguments are markup.
#pragma once
#include <string>
#include <vector>

namespace ds::report {

// The whole document: <!DOCTYPE html>, inline CSS, the shared SVG pattern the charts' gap bands
// use, a header with `title` and `subtitle`, `body_html`, a footer. Nothing is loaded from anywhere.
std::string html_page(const std::string& title, const std::string& subtitle, const std::string& body_html);

// A tile: a small label, a big value, a note under it. `tone` colours the value: "", "good",
// "warn", "bad".
std::string stat_tile(const std::string& label, const std::string& value_html, const std::string& note,
                      const std::string& tone = "");
std::string stat_row(const std::vector<std::string>& tiles);

// A card with a title, a one-line description and content (a chart, a table, notes).
std::string card(const std::string& title, const std::string& description, const std::string& content_html,
                 bool wide = false);

std::string status_pill(const std::string& status);
std::string status_color(const std::string& status);  // the bar colour of a run of that status
std::string note(const std::string& text);            // a muted paragraph

// A table: header cells (a leading '#' makes a numeric, right-aligned column; '~' a column whose
// long text wraps) and rows of markup.
std::string table(const std::vector<std::string>& headers, const std::vector<std::vector<std::string>>& rows_html);

}  // namespace ds::report
