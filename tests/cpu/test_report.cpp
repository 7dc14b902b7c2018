// The HTML run report: which charts appear and when they are left out, escaping of user text, refusals of
// inconsistent inputs, finite SVG coordinates for one epoch and for non-finite values, and byte-identical output.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "../support/testing.hpp"
#include "cumtl/train/report.hpp"

using cumtl::train::render_report_html;
using cumtl::train::ReportData;
using cumtl::train::ReportEpoch;

namespace {

std::size_t count_of(const std::string& text, std::string_view part) {
  std::size_t count = 0;
  for (std::size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++count;
  return count;
}

ReportData full_run() {
  ReportData data;
  data.title = "run-42";
  data.settings = {{"model", "resnet18"}, {"device", "cpu"}};
  for (std::int64_t epoch = 1; epoch <= 5; ++epoch) {
    ReportEpoch e;
    e.epoch = epoch;
    e.train_loss = 2.0 / double(epoch);
    e.metrics["test_loss"] = 2.2 / double(epoch);
    e.metrics["emotion_accuracy"] = 0.5 + 0.08 * double(epoch);
    e.metrics["au_mean_f1"] = 0.3 + 0.05 * double(epoch);
    data.epochs.push_back(e);
  }
  data.summary = {{"emotion_accuracy", 0.9}, {"test_loss", 0.44}};
  data.au_names = {"AU1", "AU2", "AU4"};
  data.au_f1 = {0.61, 0.125, 0.9};
  data.class_names = {"happy", "sad"};
  data.confusion = {37, 13, 2, 48};
  return data;
}

// Every value of the attributes that carry coordinates, checked to be made of digits, signs, points, spaces and path
// letters only: a NaN or an infinity would show as letters.
bool coordinates_are_numbers(const std::string& html) {
  for (std::string_view name : {" x=\"", " y=\"", " x1=\"", " x2=\"", " y1=\"", " y2=\"", " cx=\"", " cy=\"",
                                " width=\"", " height=\"", " d=\"", " viewBox=\"", "rotate("}) {
    for (std::size_t at = html.find(name); at != std::string::npos; at = html.find(name, at + 1)) {
      for (std::size_t i = at + name.size(); i < html.size() && html[i] != '"' && html[i] != ')'; ++i) {
        const char c = html[i];
        if (!((c >= '0' && c <= '9') || c == '-' || c == '.' || c == ' ' || c == 'M' || c == 'L')) return false;
      }
    }
  }
  return true;
}

}  // namespace

TEST_SUITE("report") {
  TEST_CASE("report: a full run draws one svg per chart with its title") {
    const std::string html = render_report_html(full_run());
    CHECK(html.starts_with("<!DOCTYPE html>"));
    CHECK(count_of(html, "<svg") == 4);
    CHECK(count_of(html, "</svg>") == 4);
    for (std::string_view title : {"<h1>run-42</h1>", "<h2>Summary</h2>", "<h2>Loss</h2>", "<h2>Accuracy</h2>",
                                   "<h2>Per-AU F1</h2>", "<h2>Confusion matrix</h2>"})
      CHECK_MESSAGE(html.find(title) != std::string::npos, title);
    // Legends name the series of each chart.
    for (std::string_view series :
         {">train_loss</text>", ">test_loss</text>", ">emotion_accuracy</text>", ">au_mean_f1</text>"})
      CHECK_MESSAGE(html.find(series) != std::string::npos, series);
    CHECK(html.find("<th>model</th><td>resnet18</td>") != std::string::npos);
    CHECK(html.find("<th>test_loss</th><td class=\"number\">0.44</td>") != std::string::npos);
    CHECK(coordinates_are_numbers(html));
  }

  TEST_CASE("report: the page is self-contained") {
    const std::string html = render_report_html(full_run());
    for (std::string_view outside : {"http", "<script", "src=", "url(", "<link", "@import"})
      CHECK_MESSAGE(html.find(outside) == std::string::npos, outside);
  }

  TEST_CASE("report: user text is escaped everywhere") {
    const std::string evil = "<script>&\"'";
    ReportData data = full_run();
    data.title = evil;
    data.settings.emplace_back(evil, evil);
    data.summary[evil] = 0.5;
    data.epochs[0].metrics[evil] = 0.5;
    data.au_names[1] = evil;
    data.class_names[0] = evil;
    const std::string html = render_report_html(data);
    CHECK(html.find("<script") == std::string::npos);
    CHECK(html.find("&\"") == std::string::npos);
    // Title tag and heading, the settings key and value, the summary, the legend, the AU bar, the class on both
    // axes and in the cells' tooltips.
    CHECK(count_of(html, "&lt;script&gt;&amp;&quot;&#39;") >= 10);
  }

  TEST_CASE("report: a confusion matrix of the wrong size is refused") {
    ReportData data = full_run();
    data.class_names = {"a", "b", "c"};
    data.confusion = {1, 2, 3, 4, 5};
    CHECK_THROWS_AS(render_report_html(data), cumtl::Error);
    CHECK_ERROR_WITH(render_report_html(data), "confusion has 5 entries", "class_names has 3", "9");
    data.class_names.clear();
    CHECK_ERROR_WITH(render_report_html(data), "confusion has 5 entries", "class_names has 0");
  }

  TEST_CASE("report: AU names and values of different lengths are refused") {
    ReportData data = full_run();
    data.au_f1.pop_back();
    CHECK_THROWS_AS(render_report_html(data), cumtl::Error);
    CHECK_ERROR_WITH(render_report_html(data), "au_names has 3", "au_f1 has 2");
  }

  TEST_CASE("report: negative counts and epochs out of order are refused") {
    ReportData negative = full_run();
    negative.confusion[2] = -1;
    CHECK_ERROR_WITH(render_report_html(negative), "confusion[2]", "negative");
    ReportData unordered = full_run();
    unordered.epochs[3].epoch = 2;
    CHECK_ERROR_WITH(render_report_html(unordered), "epochs[3]", "increase");
  }

  TEST_CASE("report: empty epochs AU and confusion omit their charts and say so") {
    ReportData data;
    data.title = "empty";
    const std::string html = render_report_html(data);
    CHECK(count_of(html, "<svg") == 0);
    CHECK(html.find("No epoch finished, so there is no loss curve") != std::string::npos);
    CHECK(html.find("No epoch finished, so there are no accuracy curves") != std::string::npos);
    CHECK(html.find("No per-AU F1 was recorded") != std::string::npos);
    CHECK(html.find("No confusion matrix was recorded") != std::string::npos);
    CHECK(html.find("No final metrics were recorded") != std::string::npos);
    CHECK(html.find("<h2>Loss</h2>") != std::string::npos);
  }

  TEST_CASE("report: each chart is left out on its own") {
    ReportData data = full_run();
    data.au_names.clear();
    data.au_f1.clear();
    std::string html = render_report_html(data);
    CHECK(count_of(html, "<svg") == 3);
    CHECK(html.find("No per-AU F1 was recorded") != std::string::npos);
    CHECK(html.find("aria-label=\"F1 per action unit\"") == std::string::npos);
    data.class_names.clear();
    data.confusion.clear();
    html = render_report_html(data);
    CHECK(count_of(html, "<svg") == 2);
    CHECK(html.find("aria-label=\"confusion matrix\"") == std::string::npos);
    for (ReportEpoch& e : data.epochs) e.metrics = {{"test_loss", 1.0}};
    html = render_report_html(data);
    CHECK(count_of(html, "<svg") == 1);
    CHECK(html.find("No rate metric was recorded per epoch") != std::string::npos);
  }

  TEST_CASE("report: one epoch draws a point without nan") {
    ReportData data;
    ReportEpoch e;
    e.epoch = 1;
    e.train_loss = 0.7;
    e.metrics["emotion_accuracy"] = 0.25;
    data.epochs.push_back(e);
    const std::string html = render_report_html(data);
    CHECK(count_of(html, "<svg") == 2);
    CHECK(count_of(html, "<circle") == 2);
    CHECK(html.find("nan") == std::string::npos);
    CHECK(html.find("inf") == std::string::npos);
    CHECK(coordinates_are_numbers(html));
    // The single epoch sits in the middle of the x axis rather than on its edge.
    CHECK(html.find("<circle cx=\"342\"") != std::string::npos);
  }

  TEST_CASE("report: non-finite values are skipped and named in a note") {
    ReportData data = full_run();
    data.epochs[1].train_loss = std::numeric_limits<double>::quiet_NaN();
    data.epochs[2].metrics["emotion_accuracy"] = std::numeric_limits<double>::infinity();
    data.au_f1[0] = std::numeric_limits<double>::quiet_NaN();
    const std::string html = render_report_html(data);
    CHECK(html.find("nan") == std::string::npos);
    CHECK(html.find("inf") == std::string::npos);
    CHECK(coordinates_are_numbers(html));
    CHECK(html.find("Not drawn because not finite: train_loss at epoch 2 (NaN)") != std::string::npos);
    CHECK(html.find("emotion_accuracy at epoch 3 (Inf)") != std::string::npos);
    // Each skipped value breaks its line in two, and a path restarts only there.
    CHECK(count_of(html, " M") == 2);
    CHECK(count_of(html, "<circle") == 18);  // 20 points on the two curve charts, 2 of them skipped
    CHECK(count_of(render_report_html(full_run()), " M") == 0);
    CHECK(html.find(">NaN</text>") != std::string::npos);  // the AU bar with no value
    CHECK(count_of(html, "<svg") == 4);
  }

  TEST_CASE("report: extreme and missing values keep coordinates finite") {
    ReportData data;
    for (std::int64_t epoch = 1; epoch <= 3; ++epoch) {
      ReportEpoch e;
      e.epoch = epoch;
      e.train_loss = epoch == 2 ? -1e308 : 1e308;
      data.epochs.push_back(e);
    }
    std::string html = render_report_html(data);
    CHECK(coordinates_are_numbers(html));
    CHECK(html.find("nan") == std::string::npos);
    CHECK(count_of(html, "<circle") == 3);
    // A single epoch whose only value is not finite draws an empty chart with its note.
    data.epochs.resize(1);
    data.epochs[0].train_loss = std::numeric_limits<double>::quiet_NaN();
    html = render_report_html(data);
    CHECK(coordinates_are_numbers(html));
    CHECK(count_of(html, "<svg") == 1);
    CHECK(count_of(html, "<circle") == 0);
    CHECK(html.find("Not drawn because not finite: train_loss at epoch 1 (NaN).") != std::string::npos);
  }

  TEST_CASE("report: a metric outside the unit range is kept off the rate chart") {
    ReportData data = full_run();
    for (ReportEpoch& e : data.epochs) e.metrics["images_per_second"] = 812.5;
    const std::string html = render_report_html(data);
    CHECK(html.find("Not charted (values outside [0, 1]): images_per_second.") != std::string::npos);
    CHECK(html.find(">images_per_second</text>") == std::string::npos);
    CHECK(coordinates_are_numbers(html));
  }

  TEST_CASE("report: output is deterministic") {
    const ReportData data = full_run();
    const std::string first = render_report_html(data);
    const ReportData copy = data;
    CHECK(render_report_html(copy) == first);
    CHECK(render_report_html(data) == first);
  }

  TEST_CASE("report: confusion cells show counts and row recall") {
    const std::string html = render_report_html(full_run());
    for (std::string_view count : {">37</text>", ">13</text>", ">2</text>", ">48</text>"})
      CHECK_MESSAGE(html.find(count) != std::string::npos, count);
    CHECK(html.find(">0.74</text>") != std::string::npos);  // 37 / 50
    CHECK(html.find(">0.96</text>") != std::string::npos);  // 48 / 50
    CHECK(html.find("100 samples, accuracy 0.85") != std::string::npos);
    // The dominant cell of a row is the darkest and has white text; an empty row has no recall.
    CHECK(html.find("fill:#fff\">48</text>") != std::string::npos);
    CHECK(html.find("fill:#222\">2</text>") != std::string::npos);
    ReportData empty_row = full_run();
    empty_row.confusion = {0, 0, 2, 48};
    CHECK(render_report_html(empty_row).find(">n/a</text>") != std::string::npos);
  }

  TEST_CASE("report: numbers are compact") {
    ReportData data;
    data.summary = {{"small", 1.2e-05}, {"rate", 0.853}, {"long", 0.123456789}};
    const std::string html = render_report_html(data);
    CHECK(html.find(">1.2e-05</td>") != std::string::npos);
    CHECK(html.find(">0.853</td>") != std::string::npos);
    CHECK(html.find(">0.1235</td>") != std::string::npos);
  }

  TEST_CASE("report: AU bars print their values") {
    const std::string html = render_report_html(full_run());
    CHECK(html.find(">0.61</text>") != std::string::npos);
    CHECK(html.find(">0.125</text>") != std::string::npos);
    CHECK(count_of(html, "height=\"16\" fill=\"#0072B2\"/>") == 3);  // one bar per AU
  }
}
