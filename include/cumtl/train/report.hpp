#pragma once
// A training run as one self-contained HTML page: settings, final metrics, loss and rate curves, per-AU F1 and the
// confusion matrix, with the charts drawn here as inline SVG.
//
// Why this shape:
//  - one file with no scripts, fonts or links, so a report opens offline, survives being mailed or archived with the
//    run folder, and cannot run anything a user-supplied name smuggles in: every piece of user text is escaped;
//  - the same data gives the same bytes (ordered maps, locale-free std::to_chars, no time stamps), so reports can be
//    diffed and tested;
//  - a chart never receives a NaN or infinite coordinate: non-finite values are left out of the drawing and listed
//    in a note under the chart, because a silently broken curve hides exactly the divergence a reader looks for;
//  - colours are the Okabe-Ito palette and series also differ by dash pattern, so the curves stay distinguishable
//    for colour-blind readers and in grey-scale print; the confusion matrix uses a single blue ramp.
//
// Which chart a per-epoch metric goes to: keys ending in "loss" join train_loss on the loss chart; every other key
// whose finite values all lie in [0, 1] is a rate and goes to the rate chart (y fixed to 0..1, so runs compare at a
// glance); any other key is named in a note and left to the summary table.

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cumtl/core/config.hpp"
#include "cumtl/core/error.hpp"

namespace cumtl::train {

struct ReportEpoch {
  std::int64_t epoch = 0;  // 1-based
  double train_loss = 0;
  std::map<std::string, double> metrics;  // "test_loss", "emotion_accuracy", "au_mean_f1", ...: any subset
};

struct ReportData {
  std::string title;                                          // e.g. the run folder's name
  std::vector<std::pair<std::string, std::string>> settings;  // model, data, scheme, device, ...
  std::vector<ReportEpoch> epochs;                            // in increasing epoch order; may be empty
  std::map<std::string, double> summary;                      // the final metrics
  std::vector<std::string> au_names;                          // per-AU F1 of the last evaluation; may be empty
  std::vector<double> au_f1;
  std::vector<std::string> class_names;  // may be empty
  std::vector<std::int64_t> confusion;   // row-major truth x predicted, class_names.size()^2 counts
};

namespace detail {

inline std::string report_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// Shortest form with `digits` significant digits (0.853, 1.2e-05). Non-finite values are spelled "NaN" and "Inf" so
// that a lower-case "nan" or "inf" in the page can only mean a broken coordinate, which tests look for.
inline std::string report_number(double value, int digits = 4) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Inf" : "-Inf";
  char text[48];
  const auto result = std::to_chars(text, text + sizeof text, value, std::chars_format::general, digits);
  return std::string(text, result.ptr);
}

// An SVG coordinate, to a tenth of a pixel. Callers only pass finite values; the clamp keeps an extreme one from
// becoming an exponent a renderer might reject.
inline std::string report_coordinate(double value) {
  if (!std::isfinite(value)) value = 0;
  value = std::clamp(value, -1e6, 1e6);
  char text[32];
  const auto result = std::to_chars(text, text + sizeof text, std::round(value * 10) / 10, std::chars_format::fixed, 1);
  std::string out(text, result.ptr);
  if (out.size() > 2 && out.ends_with(".0")) out.resize(out.size() - 2);
  return out == "-0" ? "0" : out;
}

// A rough text width for a 12 px system font; used only to leave room for labels, never to place them exactly.
inline double report_text_width(std::string_view text) {
  return 7.2 * static_cast<double>(text.size());
}

// SVG elements. `extra` holds further attributes, already escaped; `content` is escaped here. A rotated text turns
// about its own anchor point.
inline std::string report_svg_open(double width, double height, std::string_view label) {
  const std::string w = report_coordinate(width), h = report_coordinate(height);
  return "<svg viewBox=\"0 0 " + w + " " + h + "\" width=\"" + w + "\" height=\"" + h +
         "\" role=\"img\" aria-label=\"" + report_escape(label) + "\">\n";
}
inline std::string report_line(double x1, double y1, double x2, double y2, std::string_view extra) {
  const auto c = report_coordinate;
  return "<line x1=\"" + c(x1) + "\" y1=\"" + c(y1) + "\" x2=\"" + c(x2) + "\" y2=\"" + c(y2) + "\" " +
         std::string(extra) + "/>";
}
inline std::string report_text(double x, double y, std::string_view extra, std::string_view content, int rotate = 0) {
  const auto c = report_coordinate;
  std::string tag = "<text x=\"" + c(x) + "\" y=\"" + c(y) + "\"";
  if (rotate != 0) tag += " transform=\"rotate(" + std::to_string(rotate) + " " + c(x) + " " + c(y) + ")\"";
  if (!extra.empty()) tag += " " + std::string(extra);
  return tag + ">" + report_escape(content) + "</text>";
}
inline std::string report_note(std::string_view text) {
  return "<p class=\"note\">" + report_escape(text) + "</p>\n";
}

struct ReportAxis {
  double low, high, step;
};

// Round bounds and a 1-2-5 step giving about `ticks` ticks over [low, high]; a zero-width range is widened.
inline ReportAxis report_nice_axis(double low, double high, int ticks = 5) {
  if (!(high > low)) {
    const double pad = low != 0 ? std::abs(low) * 0.1 : 1;
    low -= pad;
    high += pad;
  }
  const double raw = (high - low) / ticks;
  if (!std::isfinite(raw) || raw <= 0) return {-1, 1, 1};
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double fraction = raw / magnitude;
  const double step = (fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10) * magnitude;
  return {std::floor(low / step) * step, std::ceil(high / step) * step, step};
}

inline constexpr const char* report_colours[] = {"#0072B2", "#E69F00", "#009E73", "#CC79A7",
                                                 "#56B4E9", "#D55E00", "#000000", "#888888"};
inline constexpr const char* report_dashes[] = {"", "6 3", "2 3", "8 3 2 3", "12 4", "4 4", "1 2", "10 2 2 2 2 2"};

struct ReportSeries {
  std::string name;
  std::vector<std::pair<std::int64_t, double>> points;  // (epoch, value), non-finite values included
};

// A line chart of per-epoch series; `rate` fixes the y axis to [0, 1] (the caller sends only values inside it). A
// line breaks at a non-finite value and bridges an epoch where the metric was not recorded (evaluation every few
// epochs), so a gap in a line always means a skipped value; the skipped values are named under the chart. Every
// series has at least one point.
inline std::string report_line_chart(const std::vector<ReportSeries>& series, const std::string& y_title, bool rate) {
  std::int64_t first = series[0].points.front().first, last = first;
  double low = INFINITY, high = -INFINITY;
  std::vector<std::string> skipped;
  for (const ReportSeries& s : series)
    for (const auto& [epoch, value] : s.points) {
      first = std::min(first, epoch);
      last = std::max(last, epoch);
      if (std::isfinite(value))
        low = std::min(low, value), high = std::max(high, value);
      else
        skipped.push_back(s.name + " at epoch " + std::to_string(epoch) + " (" + report_number(value) + ")");
    }
  const ReportAxis y =
      rate ? ReportAxis{0, 1, 0.2} : report_nice_axis(std::isfinite(low) ? low : 0, std::isfinite(high) ? high : 1);
  // A single epoch is centred on an axis one epoch wide on each side, instead of dividing by a zero range.
  const double x_low = double(first) - (first == last), x_high = double(last) + (first == last);
  const double width = 640, left = 64, right = width - 20, top = 14, bottom = 234;
  const auto px = [&](std::int64_t epoch) {
    return left + (double(epoch) - x_low) / (x_high - x_low) * (right - left);
  };
  const auto py = [&](double v) { return bottom - (v - y.low) / (y.high - y.low) * (bottom - top); };

  // The legend wraps into rows under the x axis, so its height is known before the <svg> tag is written.
  std::vector<std::pair<double, double>> legend_at;
  double lx = left, ly = bottom + 56;
  for (const ReportSeries& s : series) {
    const double item = 58 + report_text_width(s.name);
    if (lx + item > width && lx > left) lx = left, ly += 18;
    legend_at.emplace_back(lx, ly);
    lx += item;
  }
  std::string svg = report_svg_open(width, ly + 14, y_title + " per epoch");
  for (int k = 0; y.low + k * y.step <= y.high + y.step * 1e-9; ++k) {
    const double tick = std::abs(y.low + k * y.step) < y.step * 1e-9 ? 0 : y.low + k * y.step;
    svg += report_line(left, py(tick), right, py(tick), "class=\"grid\"") +
           report_text(left - 6, py(tick) + 4, "text-anchor=\"end\"", report_number(tick, 6)) + "\n";
  }
  const auto x_step = std::max<std::int64_t>(1, std::llround(report_nice_axis(double(first), double(last)).step));
  for (std::int64_t tick = (first + x_step - 1) / x_step * x_step; tick <= last; tick += x_step)
    svg += report_line(px(tick), bottom, px(tick), bottom + 5, "class=\"axis\"") +
           report_text(px(tick), bottom + 18, "text-anchor=\"middle\"", std::to_string(tick)) + "\n";
  svg += report_line(left, bottom, right, bottom, "class=\"axis\"") +
         report_line(left, top, left, bottom, "class=\"axis\"") +
         report_text((left + right) / 2, bottom + 36, "text-anchor=\"middle\"", "epoch") +
         report_text(16, (top + bottom) / 2, "text-anchor=\"middle\"", y_title, -90) + "\n";
  for (std::size_t i = 0; i < series.size(); ++i) {
    const std::string colour = report_colours[i % 8], dash = report_dashes[i % 8];
    const std::string stroke = "fill=\"none\" stroke=\"" + colour + "\" stroke-width=\"2\"" +
                               (dash.empty() ? "" : " stroke-dasharray=\"" + dash + "\"");
    std::string path, marks;
    bool pen_down = false;
    for (const auto& [epoch, value] : series[i].points) {
      pen_down = pen_down && std::isfinite(value);
      if (!std::isfinite(value)) continue;
      path += (pen_down ? " L" : " M") + report_coordinate(px(epoch)) + " " + report_coordinate(py(value));
      pen_down = true;
      if (series[i].points.size() <= 60)  // markers would blur into the line on a long run
        marks += "<circle cx=\"" + report_coordinate(px(epoch)) + "\" cy=\"" + report_coordinate(py(value)) +
                 "\" r=\"3\" fill=\"" + colour + "\"/>";
    }
    if (!path.empty()) svg += "<path d=\"" + path.substr(1) + "\" " + stroke + "/>" + marks + "\n";
    const auto [x, baseline] = legend_at[i];
    svg += report_line(x, baseline - 4, x + 32, baseline - 4, stroke) +
           report_text(x + 38, baseline, "", series[i].name) + "\n";
  }
  svg += "</svg>\n";
  if (skipped.empty()) return svg;
  std::string note = "Not drawn because not finite: ";
  for (std::size_t i = 0; i < std::min<std::size_t>(skipped.size(), 8); ++i) note += (i ? ", " : "") + skipped[i];
  if (skipped.size() > 8) note += " and " + std::to_string(skipped.size() - 8) + " more";
  return svg + report_note(note + ".");
}

// Horizontal bars on a 0..1 scale, one per AU, with the value printed at the end of each bar.
inline std::string report_bar_chart(const std::vector<std::string>& names, const std::vector<double>& values) {
  double left = 40;
  for (const std::string& name : names) left = std::max(left, std::min(report_text_width(name) + 12, 220.0));
  const double bar_width = 400, top = 24, row = 22, bottom = top + row * double(names.size()) + 4;
  std::string svg = report_svg_open(left + bar_width + 56, bottom + 4, "F1 per action unit");
  for (int k = 0; k <= 4; ++k)
    svg += report_line(left + bar_width * k / 4, top, left + bar_width * k / 4, bottom, "class=\"grid\"") +
           report_text(left + bar_width * k / 4, top - 8, "text-anchor=\"middle\"", report_number(k / 4.0)) + "\n";
  for (std::size_t i = 0; i < names.size(); ++i) {
    const double y = top + row * double(i), value = values[i];
    const double length = std::isfinite(value) ? std::clamp(value, 0.0, 1.0) * bar_width : 0;
    svg += report_text(left - 6, y + 15, "text-anchor=\"end\"", names[i]);
    if (length > 0)
      svg += "<rect x=\"" + report_coordinate(left) + "\" y=\"" + report_coordinate(y + 3) + "\" width=\"" +
             report_coordinate(length) + "\" height=\"" + report_coordinate(row - 6) + "\" fill=\"#0072B2\"/>";
    svg += report_text(left + length + 4, y + 15, "", report_number(value, 3)) + "\n";
  }
  return svg + report_line(left, top, left, bottom, "class=\"axis\"") + "\n</svg>\n";
}

// Cells shaded by the row-normalized rate (the share of a true class predicted as each class), counts printed, and
// each row's recall in a last column; a class with no samples has no recall rather than a fake 0.
inline std::string report_confusion_chart(const std::vector<std::string>& names,
                                          const std::vector<std::int64_t>& counts) {
  const std::size_t n = names.size();
  double longest = 0;
  for (const std::string& name : names) longest = std::max(longest, std::min(report_text_width(name), 200.0));
  const double cell = std::clamp(std::round(440.0 / double(n)), 26.0, 60.0), grid = cell * double(n);
  const double left = 36 + longest, top = 34 + longest * 0.72, font = cell >= 40 ? 12 : 10;
  std::string svg = report_svg_open(left + grid + std::max(64.0, longest * 0.72), top + grid + 8, "confusion matrix") +
                    report_text(left + grid / 2, 14, "text-anchor=\"middle\" class=\"title\"", "predicted") +
                    report_text(14, top + grid / 2, "text-anchor=\"middle\" class=\"title\"", "truth", -90) +
                    report_text(left + grid + 8, top - 6, "", "recall") + "\n";
  for (std::size_t j = 0; j < n; ++j)
    svg += report_text(left + cell * (double(j) + 0.5), top - 6, "", names[j], -45) + "\n";
  for (std::size_t i = 0; i < n; ++i) {
    std::int64_t total = 0;
    for (std::size_t j = 0; j < n; ++j) total += counts[i * n + j];
    const double y = top + cell * double(i);
    svg += report_text(left - 6, y + cell / 2 + 4, "text-anchor=\"end\"", names[i]);
    for (std::size_t j = 0; j < n; ++j) {
      const std::int64_t count = counts[i * n + j];
      const double rate = total > 0 ? double(count) / double(total) : 0, x = left + cell * double(j);
      char fill[16];
      std::snprintf(fill, sizeof fill, "#%02x%02x%02x", unsigned(std::lround(247 - 239 * rate)),
                    unsigned(std::lround(251 - 203 * rate)), unsigned(std::lround(255 - 148 * rate)));
      // The count's colour is an inline style, because the page's `svg text` rule would beat a fill attribute.
      svg += "<rect x=\"" + report_coordinate(x) + "\" y=\"" + report_coordinate(y) + "\" width=\"" +
             report_coordinate(cell) + "\" height=\"" + report_coordinate(cell) + "\" fill=\"" + fill +
             "\" stroke=\"#fff\"><title>" +
             report_escape("truth " + names[i] + ", predicted " + names[j] + ": " + std::to_string(count) + " (" +
                           report_number(100 * rate, 3) + "% of the row)") +
             "</title></rect>" +
             report_text(x + cell / 2, y + cell / 2 + font / 3,
                         "text-anchor=\"middle\" style=\"font-size:" + report_coordinate(font) +
                             "px;fill:" + (rate > 0.5 ? "#fff" : "#222") + "\"",
                         std::to_string(count));
    }
    svg += report_text(left + grid + 8, y + cell / 2 + 4, "",
                       total > 0 ? report_number(double(counts[i * n + i]) / double(total), 3) : "n/a") +
           "\n";
  }
  return svg + "</svg>\n";
}

// A two-column table; `value_class` styles the value cells.
inline std::string report_table(const std::vector<std::pair<std::string, std::string>>& rows,
                                std::string_view value_class = {}) {
  const std::string td = value_class.empty() ? "<td>" : "<td class=\"" + std::string(value_class) + "\">";
  std::string html = "<table>\n";
  for (const auto& [key, value] : rows)
    html += "<tr><th>" + report_escape(key) + "</th>" + td + report_escape(value) + "</td></tr>\n";
  return html + "</table>\n";
}

}  // namespace detail

inline std::string render_report_html(const ReportData& data) {
  using namespace detail;
  CUMTL_REQUIRE(data.au_names.size() == data.au_f1.size(), "render_report_html: au_names has ", data.au_names.size(),
                " names but au_f1 has ", data.au_f1.size(), " values; expected one F1 per AU name");
  const std::size_t classes = data.class_names.size();
  CUMTL_REQUIRE(data.confusion.size() == classes * classes, "render_report_html: confusion has ", data.confusion.size(),
                " entries but class_names has ", classes,
                " names; expected class_names.size()^2 = ", classes * classes);
  for (std::size_t i = 0; i < data.confusion.size(); ++i)
    CUMTL_REQUIRE(data.confusion[i] >= 0, "render_report_html: confusion[", i, "] is ", data.confusion[i],
                  "; counts cannot be negative");
  for (std::size_t i = 1; i < data.epochs.size(); ++i)
    CUMTL_REQUIRE(data.epochs[i].epoch > data.epochs[i - 1].epoch, "render_report_html: epochs[", i, "] is epoch ",
                  data.epochs[i].epoch, " after epoch ", data.epochs[i - 1].epoch, "; epochs must increase");

  const std::string title = data.title.empty() ? "Training report" : data.title;
  std::string html =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" "
      "content=\"width=device-width, initial-scale=1\">\n<title>" +
      report_escape(title) +
      "</title>\n<style>\nbody{font-family:system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;color:#222;"
      "max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.4}\nh1{font-size:1.6rem}h2{font-size:1.25rem;"
      "margin-top:2rem;border-bottom:1px solid #ddd}\ntable{border-collapse:collapse}th,td{padding:.2rem .8rem;"
      "border-bottom:1px solid #eee;text-align:left}td.number{text-align:right;font-variant-numeric:tabular-nums}\n"
      "svg{max-width:100%;height:auto;display:block}svg text{font-size:12px;fill:#222}svg text.title{font-weight:600}\n"
      ".grid{stroke:#e4e4e4}.axis{stroke:#555}.note{color:#555;font-style:italic}\n</style>\n</head>\n<body>\n<h1>" +
      report_escape(title) + "</h1>\n";
  if (!data.settings.empty()) html += report_table(data.settings);

  html += "<h2>Summary</h2>\n";
  std::vector<std::pair<std::string, std::string>> summary;
  for (const auto& [key, value] : data.summary) summary.emplace_back(key, report_number(value));
  html += summary.empty() ? report_note("No final metrics were recorded.") : report_table(summary, "number");

  std::vector<ReportSeries> losses{{"train_loss", {}}}, rates;
  std::map<std::string, ReportSeries> by_key;
  for (const ReportEpoch& e : data.epochs) {
    losses[0].points.emplace_back(e.epoch, e.train_loss);
    for (const auto& [key, value] : e.metrics) {
      by_key[key].name = key;
      by_key[key].points.emplace_back(e.epoch, value);
    }
  }
  std::string uncharted;  // keys that are neither losses nor rates
  for (auto& [key, s] : by_key) {
    const bool in_unit_range = std::all_of(s.points.begin(), s.points.end(), [](const auto& point) {
      return !std::isfinite(point.second) || (point.second >= 0 && point.second <= 1);
    });
    if (std::string_view(key).ends_with("loss"))
      losses.push_back(std::move(s));
    else if (in_unit_range)
      rates.push_back(std::move(s));
    else
      uncharted += (uncharted.empty() ? "" : ", ") + key;
  }
  const bool no_epoch = data.epochs.empty();
  html += "<h2>Loss</h2>\n" + (no_epoch ? report_note("No epoch finished, so there is no loss curve.")
                                        : report_line_chart(losses, "loss", false));
  html += "<h2>Accuracy</h2>\n" + (no_epoch        ? report_note("No epoch finished, so there are no accuracy curves.")
                                   : rates.empty() ? report_note("No rate metric was recorded per epoch.")
                                                   : report_line_chart(rates, "rate", true));
  if (!uncharted.empty()) html += report_note("Not charted (values outside [0, 1]): " + uncharted + ".");
  html += "<h2>Per-AU F1</h2>\n" + (data.au_names.empty() ? report_note("No per-AU F1 was recorded.")
                                                          : report_bar_chart(data.au_names, data.au_f1));
  html += "<h2>Confusion matrix</h2>\n";
  if (classes == 0)
    html += report_note("No confusion matrix was recorded.");
  else {
    std::int64_t total = 0, correct = 0;
    for (std::size_t i = 0; i < classes; ++i)
      for (std::size_t j = 0; j < classes; ++j) (i == j ? correct : total) += data.confusion[i * classes + j];
    total += correct;
    html += "<p>Rows are the true class, columns the predicted one; shading is the share of the row. " +
            std::to_string(total) + " samples, accuracy " +
            (total > 0 ? report_number(double(correct) / double(total), 3) : std::string("n/a")) + ".</p>\n" +
            report_confusion_chart(data.class_names, data.confusion);
  }
  return html + "</body>\n</html>\n";
}

}  // namespace cumtl::train
