#include "reports/report.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace qeval
