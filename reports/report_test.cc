#include "reports/report.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <regex>
#include <sstream>

namespace qeval {
namespace {

constexpr size_t kColumnsForTest = 9;

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + what.size())) ++n;
  return n;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

JobResult job(const std::string& model, const std::string& task, const std::string& status) {
  JobResult j;
  j.model = model;
  j.chip = "bm1684x";
  j.mode = "int8_sym";
  j.id = model + "/bm1684x/int8_sym";
  j.task = task;
  j.status = status;
  j.seconds = 2.5;
  return j;
}

// pass (2 gated, ungated top5), fail (1 of 2 gated fails), crashed, pass with only an ungated top1.
std::vector<JobResult> jobs() {
  JobResult a = job("resnet8", "classify", "pass");
  a.metrics = {{"top1", 85.3, 85.91, 85.3 - 85.91, "drop <= 1.00", true, true},
               {"top5", 99.1, 99.2, -0.1, "", false, true},
               {"output_cos", 0.99912, kNaN, kNaN, ">= 0.99", true, true}};
  a.layers = {{"conv1", "Conv", 0.99987, 0.98, 38.2, 1, true},
              {"relu1", "Relu", 0.9995123456789, 0.97, 35.5, 0, true},
              {"fc", "Gemm", 0.95, 0.9, 20.0, 9, false}};
  JobResult b = job("det_tiny", "detect", "fail");
  b.message = "mAP < 95% of fp32";
  b.metrics = {{"mAP", 0.3012, 0.3424, 0.3012 - 0.3424, "ratio >= 0.95", true, false},
               {"min_layer_cos", 0.97, kNaN, kNaN, ">= 0.9", true, true}};
  b.layers = {{"stem", "Conv", 0.9712, 0.81, 21.0, 7, false}, {"head", "Conv", kNaN, kNaN, kNaN, -1, true}};
  JobResult c = job("lenet5", "classify", "crashed");
  c.signal = 11;
  c.message = "worker killed | signal 11 (SIGSEGV) while running the simulator on batch 17 of 40 <core>";
  c.log_tail = {"loading <model> & weights", "Segmentation fault"};
  JobResult d = job("mobilenetv2_tiny", "classify", "pass");  // nothing gated: primary top1 still shows
  d.metrics = {{"top1", 70.0, 70.5, -0.5, "", false, true}};
  return {a, b, c, d};
}

RunInfo run_info() {
  RunInfo r;
  r.id = 7;
  r.started = "2024-05-01T10:00:00Z";
  r.finished = "2024-05-01T10:01:00Z";
  r.status = "done";
  r.command = "run_eval --fast_test regression/basic.yaml";
  r.host = "ci<1>";
  r.seconds = 60;
  r.exit_code = 2;
  return r;
}

TEST(Report, TextTableColumnsAndNumbers) {
  const std::string t = results_table_text(jobs());
  const auto lines = lines_of(t);
  ASSERT_GE(lines.size(), 2u);
  std::istringstream header(lines[0]);
  std::vector<std::string> cols;
  for (std::string w; header >> w;) cols.push_back(w);
  EXPECT_EQ(cols, (std::vector<std::string>{"model", "chip", "mode", "metric", "fp32", "int8", "delta",
                                            "tolerance", "result"}));
  // Rows: resnet8 top1 + output_cos (top5 is ungated), det_tiny mAP + min_layer_cos, lenet5 status row,
  // mobilenet top1 (ungated primary) + its PASS status row.
  ASSERT_EQ(lines.size(), 2u + 7u) << t;
  // Every row's result starts in the header's result column.
  const size_t result_col = lines[0].find("result");
  for (size_t i = 2; i < lines.size(); ++i) {
    ASSERT_GT(lines[i].size(), result_col) << lines[i];
    EXPECT_NE(lines[i][result_col], ' ') << lines[i];
    EXPECT_EQ(lines[i][result_col - 1], ' ') << lines[i];
  }
  EXPECT_NE(lines[2].find("85.91"), std::string::npos) << lines[2];    // top1: 2 decimals
  EXPECT_NE(lines[2].find("-0.61"), std::string::npos) << lines[2];
  EXPECT_NE(lines[3].find("0.9991"), std::string::npos) << lines[3];   // cos: 4 decimals
  EXPECT_NE(lines[3].find(" - "), std::string::npos) << lines[3];      // NaN baseline
  EXPECT_NE(lines[4].find("0.3424"), std::string::npos) << lines[4];
  EXPECT_EQ(lines[4].substr(result_col), "FAIL");
  EXPECT_EQ(lines[2].substr(result_col), "PASS");
  EXPECT_EQ(lines[6].substr(result_col), "CRASHED");
  EXPECT_NE(lines[6].find("worker killed | signal 11"), std::string::npos);
  EXPECT_NE(lines[6].find("..."), std::string::npos);  // message cut to 60 columns
  EXPECT_EQ(lines[6].find("<core>"), std::string::npos);
  EXPECT_NE(lines[7].find("70.50"), std::string::npos) << lines[7];
  EXPECT_EQ(lines[7].substr(result_col), "-");  // ungated primary metric
  EXPECT_EQ(lines[8].substr(result_col), "PASS");
  EXPECT_EQ(t.find("top5"), std::string::npos);
}

TEST(Report, Markdown) {
  const std::string md = results_markdown(run_info(), jobs());
  EXPECT_EQ(md.rfind("## qeval run 7\n", 0), 0u) << md;
  EXPECT_NE(md.find("4 jobs: 2 passed, 1 failed, 1 errors"), std::string::npos) << md;
  EXPECT_NE(md.find("| model | chip | mode | metric | fp32 | int8 | delta | tolerance | result |\n"),
            std::string::npos) << md;
  EXPECT_NE(md.find("|---|---|---|---|---:|---:|---:|---|---|\n"), std::string::npos) << md;
  EXPECT_NE(md.find("| PASS |"), std::string::npos);
  EXPECT_NE(md.find("| FAIL |"), std::string::npos);
  EXPECT_NE(md.find("| CRASHED |"), std::string::npos);
  EXPECT_NE(md.find("killed \\| signal"), std::string::npos) << md;  // '|' escaped in a cell
  // Every table row has the same number of unescaped '|'.
  for (const std::string& l : lines_of(md)) {
    if (l.empty() || l[0] != '|') continue;
    EXPECT_EQ(count(l, "|") - count(l, "\\|"), kColumnsForTest + 1) << l;
  }
}

TEST(Report, JUnitCounts) {
  const std::string x = results_junit(run_info(), jobs());
  // Testcases: resnet8 2 gated, det_tiny 2 gated, lenet5 "job", mobilenet "job" (nothing gated).
  EXPECT_EQ(count(x, "<testcase "), 6u) << x;
  EXPECT_EQ(count(x, "<failure "), 1u) << x;
  EXPECT_EQ(count(x, "<error "), 1u) << x;
  EXPECT_EQ(count(x, "</testcase>"), 2u) << x;  // only the failed and the errored cases have a body
  EXPECT_NE(x.find("<testsuite name=\"qeval\" tests=\"6\" failures=\"1\" errors=\"1\""), std::string::npos);
  EXPECT_NE(x.find("classname=\"det_tiny.bm1684x.int8_sym\" name=\"mAP\" time=\"2.500\""), std::string::npos);
  EXPECT_NE(x.find("name=\"min_layer_cos\" time=\"0.000\""), std::string::npos);  // job time counted once
  EXPECT_NE(x.find("time=\"10.000\""), std::string::npos);                       // suite: sum of job seconds
  EXPECT_NE(x.find("type=\"crashed\""), std::string::npos);
  // Escaping: no raw '<' or '&' from the messages and logs.
  EXPECT_NE(x.find("loading &lt;model&gt; &amp; weights"), std::string::npos) << x;
  EXPECT_NE(x.find("hostname=\"ci&lt;1&gt;\""), std::string::npos);
  EXPECT_EQ(x.find("<core>"), std::string::npos);
  EXPECT_EQ(x.find("<model>"), std::string::npos);
  EXPECT_EQ(x.find("&&"), std::string::npos);
  // Crude well-formedness: every '<' opens a tag name, '?' or '/'.
  const std::regex stray("<[^a-zA-Z/?]");
  EXPECT_FALSE(std::regex_search(x, stray));
}

TEST(Report, HtmlChartsAndColours) {
  const auto js = jobs();
  const std::string h = results_html(run_info(), js);
  EXPECT_EQ(h.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(h.find("<title>qeval run 7</title>"), std::string::npos);
  EXPECT_NE(h.find("<style>"), std::string::npos);
  // Self-contained: nothing fetched from elsewhere.
  for (const char* ext : {"<script", "<link", "src=", "http://", "https://", "@import"}) {
    EXPECT_EQ(h.find(ext), std::string::npos) << ext;
  }
  // One chart per job with layers.
  EXPECT_EQ(count(h, "<svg"), 2u);
  EXPECT_EQ(count(h, "</svg>"), 2u);
  // The bars carry the layer cos values, in order (NaN layers have no bar).
  std::vector<double> want;
  for (const JobResult& j : js) {
    for (const LayerResult& l : j.layers) {
      if (!std::isnan(l.cos)) want.push_back(l.cos);
    }
  }
  std::vector<double> got;
  const std::regex value("<rect [^>]*data-value=\"([^\"]+)\"");
  for (auto it = std::sregex_iterator(h.begin(), h.end(), value); it != std::sregex_iterator(); ++it) {
    got.push_back(std::stod((*it)[1].str()));
  }
  EXPECT_EQ(got, want);
  // Result cells coloured by class.
  EXPECT_NE(h.find("<td class=\"pass\">PASS</td>"), std::string::npos);
  EXPECT_NE(h.find("<td class=\"fail\">FAIL</td>"), std::string::npos);
  EXPECT_NE(h.find("<td class=\"error\">CRASHED</td>"), std::string::npos);
  EXPECT_NE(h.find("td.pass"), std::string::npos);
  // All text escaped.
  EXPECT_EQ(h.find("<core>"), std::string::npos);
  EXPECT_EQ(h.find("<model>"), std::string::npos);
  EXPECT_NE(h.find("loading &lt;model&gt; &amp; weights"), std::string::npos);
  EXPECT_NE(h.find("ci&lt;1&gt;"), std::string::npos);
}

// The SVG elements of one kind (`<svg class="KIND"`), each from its tag to its </svg>.
std::vector<std::string> svgs(const std::string& h, const std::string& kind) {
  std::vector<std::string> out;
  const std::string open = "<svg class=\"" + kind + "\"";
  for (size_t p = h.find(open); p != std::string::npos; p = h.find(open, p + 1)) {
    out.push_back(h.substr(p, h.find("</svg>", p) + 6 - p));
  }
  return out;
}

std::string attr(const std::string& tag, const std::string& name) {
  std::smatch m;
  const std::regex re(" " + name + "=\"([^\"]*)\"");
  return std::regex_search(tag, m, re) ? m[1].str() : "";
}

// Two trends: top1 over three runs (int8 missing in the last) and mAP of a single run.
HtmlExtras trend_extras() {
  HtmlExtras x;
  x.trends.push_back({"resnet8/bm1684x/int8_sym",
                      "top1",
                      {{3, "2024-04-01T10:00:00Z", 85.91, 85.3},
                       {5, "2024-04-15T10:00:00Z", 85.91, 0.1 + 0.2 + 84.6},
                       {7, "2024-05-01T10:00:00Z", 85.91, kNaN}}});
  x.trends.push_back({"det_tiny/bm1684x/int8_sym", "mAP", {{7, "", 0.34240000000000004, 1.0 / 3}}});
  return x;
}

TEST(Report, HtmlTrendPlots) {
  const HtmlExtras x = trend_extras();
  const std::string h = results_html(run_info(), jobs(), x);
  EXPECT_NE(h.find("<h2 id=\"trends\">Trends</h2>"), std::string::npos);
  EXPECT_NE(h.find("<h3>resnet8/bm1684x/int8_sym — top1</h3>"), std::string::npos);
  EXPECT_EQ(count(h, "class=\"trend\""), 2u);
  EXPECT_EQ(count(h, "<svg"), 4u);  // + the two per-layer charts
  EXPECT_EQ(count(h, "</svg>"), 4u);
  const auto plots = svgs(h, "trend");
  ASSERT_EQ(plots.size(), 2u);
  const std::regex marker("<(circle|rect) [^>]*data-run=[^>]*>");
  for (size_t k = 0; k < plots.size(); ++k) {
    const Trend& t = x.trends[k];
    const std::string& plot = plots[k];
    EXPECT_EQ(attr(plot, "data-job"), t.job_key);
    EXPECT_EQ(attr(plot, "data-metric"), t.metric);
    // Every finite point has exactly one marker whose data-value reads back as the same double.
    size_t markers = 0, want = 0;
    for (const TrendPoint& p : t.points) want += !std::isnan(p.int8) + !std::isnan(p.fp32);
    for (std::sregex_iterator it(plot.begin(), plot.end(), marker), end; it != end; ++it) {
      const std::string tag = (*it)[0].str(), series = attr(tag, "data-series");
      EXPECT_EQ((*it)[1].str(), series == "int8" ? "circle" : "rect") << tag;
      const int64_t run = std::stoll(attr(tag, "data-run"));
      const auto p =
          std::find_if(t.points.begin(), t.points.end(), [&](auto& q) { return q.run_id == run; });
      ASSERT_NE(p, t.points.end()) << tag;
      ASSERT_TRUE(series == "int8" || series == "fp32") << tag;
      const double want_v = series == "int8" ? p->int8 : p->fp32;
      ASSERT_FALSE(std::isnan(want_v)) << "marker for a NaN point: " << tag;
      EXPECT_EQ(std::stod(attr(tag, "data-value")), want_v) << tag;
      ++markers;
    }
    EXPECT_EQ(markers, want) << plot;
    // A legend, 3 to 5 y-axis labels, dashed fp32 line.
    EXPECT_NE(plot.find(">int8</text>"), std::string::npos);
    EXPECT_NE(plot.find(">fp32</text>"), std::string::npos);
    const size_t ticks = count(plot, "text-anchor=\"end\"");
    EXPECT_GE(ticks, 3u);
    EXPECT_LE(ticks, 5u);
  }
  EXPECT_NE(plots[0].find("stroke-dasharray"), std::string::npos);
  // 0.1 + 0.2 + 84.6: the shortest form that reads back exactly, not a rounded one.
  EXPECT_NE(plots[0].find("data-value=\"84.89999999999999\""), std::string::npos) << plots[0];
  EXPECT_EQ(plots[0].find("data-run=\"7\" data-series=\"int8\""), std::string::npos);  // NaN
  EXPECT_NE(plots[0].find("data-run=\"7\" data-series=\"fp32\""), std::string::npos);
  EXPECT_EQ(h.find("Changes since"), std::string::npos);  // no baseline run
}

// The y-axis labels of a one-series trend over `values`.
std::vector<std::string> tick_labels(const std::vector<double>& values) {
  Trend t{"m/c/x", "mAP", {}};
  for (size_t i = 0; i < values.size(); ++i) t.points.push_back({int64_t(i + 1), "", kNaN, values[i]});
  HtmlExtras x;
  x.trends = {t};
  const std::string plot = svgs(results_html(run_info(), {}, x), "trend").at(0);
  std::vector<std::string> out;
  const std::regex label("text-anchor=\"end\">([^<]*)</text>");
  for (auto it = std::sregex_iterator(plot.begin(), plot.end(), label); it != std::sregex_iterator(); ++it) {
    out.push_back((*it)[1].str());
  }
  return out;
}

TEST(Report, HtmlTrendAxisTicks) {
  for (const auto& values : std::vector<std::vector<double>>{{0.5, 0.5},
                                                             {0, 0},
                                                             {-3},
                                                             {85.3, 85.31, 84.9},
                                                             {0.1, 0.9},
                                                             {1e-7, 3e-7},
                                                             {1234.5, 98765},
                                                             {kNaN, kNaN},
                                                             {-0.25, 0.25}}) {
    const auto labels = tick_labels(values);
    EXPECT_GE(labels.size(), 3u) << values[0];
    EXPECT_LE(labels.size(), 5u) << values[0];
    for (size_t i = 1; i < labels.size(); ++i) EXPECT_NE(labels[i], labels[i - 1]) << values[0];
    for (const auto& l : labels) EXPECT_NE(l, "-0.00") << values[0];
  }
}

TEST(Report, HtmlDiff) {
  HtmlExtras x;
  x.baseline_run = 5;
  x.diff = {{"resnet8/bm1684x/int8_sym", "top1", 85.3, 85.7, 85.7 - 85.3, "PASS", "PASS", "", false},
            {"det_tiny/bm1684x/int8_sym", "mAP", 0.3424, 0.3012, 0.3012 - 0.3424, "PASS", "FAIL",
             "passed in run 5, fails now", true},
            {"lenet5/bm1684x/int8_sym", "", kNaN, kNaN, kNaN, "pass", "crashed", "job <crashed>", true}};
  const std::string h = results_html(run_info(), jobs(), x);
  EXPECT_NE(h.find("<h2 id=\"diff\">Changes since run 5</h2>"), std::string::npos);
  EXPECT_EQ(count(h, "<tr class=\"regressed\">"), 2u);
  EXPECT_NE(h.find("tr.regressed td"), std::string::npos);  // the red background
  // Regressions first, in their order; then the rest.
  const size_t table = h.find("<table class=\"diff\">");
  ASSERT_NE(table, std::string::npos);
  const size_t det = h.find("<td>det_tiny/", table), lenet = h.find("<td>lenet5/", table),
               resnet = h.find("<td>resnet8/", table);
  ASSERT_NE(resnet, std::string::npos);
  EXPECT_LT(det, lenet);
  EXPECT_LT(lenet, resnet);
  EXPECT_EQ(h.rfind("<tr", det), h.find("<tr class=\"regressed\">", table));
  EXPECT_EQ(h.substr(h.rfind("<tr", resnet), 5), "<tr><");
  // Numbers as in the summary table: top1 2 decimals, mAP 4, NaN "-"; statuses upper-cased and escaped.
  EXPECT_NE(h.find("<td class=\"num\">85.30</td><td class=\"num\">85.70</td><td class=\"num\">+0.40</td>"),
            std::string::npos);
  EXPECT_NE(
      h.find("<td class=\"num\">0.3424</td><td class=\"num\">0.3012</td><td class=\"num\">-0.0412</td>"),
      std::string::npos);
  EXPECT_NE(h.find("<td class=\"pass\">PASS</td><td class=\"fail\">FAIL</td><td>passed in run 5, fails now"),
            std::string::npos);
  EXPECT_NE(h.find("<td class=\"error\">CRASHED</td><td>job &lt;crashed&gt;</td>"), std::string::npos);
  EXPECT_EQ(h.find("No common jobs."), std::string::npos);

  x.diff.clear();
  const std::string empty = results_html(run_info(), jobs(), x);
  EXPECT_NE(empty.find("Changes since run 5"), std::string::npos);
  EXPECT_NE(empty.find("No common jobs."), std::string::npos);
  EXPECT_EQ(empty.find("<table class=\"diff\">"), std::string::npos);

  x = trend_extras();  // baseline_run 0: no diff section even with rows
  x.diff = {{"a/b/c", "top1", 1, 0, -1, "PASS", "FAIL", "dropped", true}};
  const std::string none = results_html(run_info(), jobs(), x);
  EXPECT_EQ(none.find("Changes since"), std::string::npos);
  EXPECT_EQ(none.find("regressed\">"), std::string::npos);
}

}  // namespace
}  // namespace qeval
