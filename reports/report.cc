#include "reports/report.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "core/text.h"

namespace qeval {

namespace {

constexpr size_t kColumns = 9;
using Cells = std::array<std::string, kColumns>;
constexpr std::array<const char*, kColumns> kHeader = {"model", "chip",  "mode",      "metric", "fp32",
                                                       "int8",  "delta", "tolerance", "result"};
constexpr bool kNumeric[kColumns] = {false, false, false, false, true, true, true, false, false};
constexpr size_t kMessageWidth = 60;

bool is_broken(const JobResult& j) {
  return j.status == "error" || j.status == "crashed" || j.status == "timeout";
}


// Display width of UTF-8 text (continuation bytes take no column).
size_t width(const std::string& s) {
  return size_t(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

// One line of at most `n` columns, cut at a character boundary.
std::string truncate(std::string s, size_t n) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  if (width(s) <= n) return s;
  size_t cols = 0, i = 0;
  for (; i < s.size(); ++i) {
    if ((s[i] & 0xC0) != 0x80 && cols++ == n - 3) break;
  }
  return s.substr(0, i) + "...";
}

// top1 / top5 are percentages (2 decimals); mAP, cos, euclid live in 0..1 (4 decimals).
// The summary rows shared by every writer.
std::vector<Cells> summary_rows(const std::vector<JobResult>& jobs) {
  std::vector<Cells> rows;
  for (const JobResult& j : jobs) {
    bool any_gated = false;
    if (!is_broken(j)) {
      const std::string primary = primary_metric_of(j);
      for (const MetricResult& m : j.metrics) {
        any_gated |= m.gated;
        if (!m.gated && m.name != primary) continue;
        rows.push_back({j.model, j.chip, j.mode, m.name, format_metric(m.name, m.baseline),
                        format_metric(m.name, m.value),
                        format_metric(m.name, m.delta, true), m.gated ? m.tolerance : "-",
                        m.gated ? (m.pass ? "PASS" : "FAIL") : "-"});
      }
    }
    // A job that did not run, or has nothing gated: its status and why.
    if (is_broken(j) || !any_gated) {
      rows.push_back({j.model, j.chip, j.mode, "-", "-", "-", "-", truncate(j.message, kMessageWidth),
                      to_upper(j.status)});
    }
  }
  return rows;
}

struct Totals {
  int jobs = 0, passed = 0, failed = 0, errors = 0;
  double seconds = 0;
};

Totals totals_of(const std::vector<JobResult>& jobs) {
  Totals t;
  for (const JobResult& j : jobs) {
    ++t.jobs;
    t.passed += j.status == "pass";
    t.failed += j.status == "fail";
    t.errors += is_broken(j);
    if (std::isfinite(j.seconds)) t.seconds += j.seconds;
  }
  return t;
}

std::string totals_line(const Totals& t) {
  return fmt::format("{} jobs: {} passed, {} failed, {} errors", t.jobs, t.passed, t.failed, t.errors);
}

// Escapes for XML and HTML text and attributes. XML 1.0 forbids most control
// characters (a crashed worker's log may hold ANSI colour codes): they become '?'.
std::string escape_xml(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t' && c != '\r') out += '?';
        else out += c;
    }
  }
  return out;
}

// HTML5 has no &apos; in every reader; &#39; is universal.
std::string escape_html(const std::string& s) {
  std::string out = escape_xml(s), r;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out.compare(i, 6, "&apos;") == 0) {
      r += "&#39;";
      i += 5;
    } else {
      r += out[i];
    }
  }
  return r;
}

std::string join(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

std::string seconds_attr(double s) { return fmt::format("{:.3f}", std::isfinite(s) ? s : 0.0); }

}  // namespace

std::string results_table_text(const std::vector<JobResult>& jobs) {
  std::vector<Cells> rows = summary_rows(jobs);
  std::array<size_t, kColumns> w{};
  for (size_t c = 0; c < kColumns; ++c) w[c] = width(kHeader[c]);
  for (const Cells& r : rows) {
    for (size_t c = 0; c < kColumns; ++c) w[c] = std::max(w[c], width(r[c]));
  }
  auto line = [&](const auto& cells) {
    std::string s;
    for (size_t c = 0; c < kColumns; ++c) {
      const std::string cell = cells[c];
      const std::string pad(w[c] - width(cell), ' ');
      s += (c ? "  " : "") + (kNumeric[c] ? pad + cell : cell + pad);
    }
    s.erase(s.find_last_not_of(' ') + 1);
    return s + "\n";
  };
  std::string out = line(kHeader);
  Cells rule;
  for (size_t c = 0; c < kColumns; ++c) rule[c] = std::string(w[c], '-');
  out += line(rule);
  for (const Cells& r : rows) out += line(r);
  return out;
}

std::string results_markdown(const RunInfo& run, const std::vector<JobResult>& jobs) {
  auto cell = [](std::string s) {
    std::replace(s.begin(), s.end(), '\n', ' ');
    std::string out;
    for (char c : s) out += c == '|' ? std::string("\\|") : std::string(1, c);
    return out;
  };
  const Totals t = totals_of(jobs);
  std::string out = fmt::format("## qeval run {}\n\n", run.id);
  out += fmt::format("Started {}{}, status {}{}.\n\n", run.started,
                     run.finished.empty() ? "" : ", finished " + run.finished, run.status,
                     run.exit_code >= 0 ? fmt::format(", exit code {}", run.exit_code) : "");
  out += fmt::format("**{}**\n\n", totals_line(t));
  out += "|";
  for (const char* h : kHeader) out += fmt::format(" {} |", h);
  out += "\n|";
  for (size_t c = 0; c < kColumns; ++c) out += kNumeric[c] ? "---:|" : "---|";
  out += "\n";
  for (const Cells& r : summary_rows(jobs)) {
    out += "|";
    for (const std::string& c : r) out += " " + cell(c) + " |";
    out += "\n";
  }
  return out;
}

std::string results_junit(const RunInfo& run, const std::vector<JobResult>& jobs) {
  std::string cases;
  int tests = 0, failures = 0, errors = 0;
  for (const JobResult& j : jobs) {
    const std::string cls = escape_xml(j.model + "." + j.chip + "." + j.mode);
    // The job's time goes on its first testcase so that the testcase times add up to the suite's.
    double time = j.seconds;
    auto open = [&](const std::string& name) {
      ++tests;
      cases += fmt::format("    <testcase classname=\"{}\" name=\"{}\" time=\"{}\"", cls, escape_xml(name),
                           seconds_attr(time));
      time = 0;
    };
    if (is_broken(j)) {
      open("job");
      ++errors;
      const std::string msg =
          j.message.empty() && j.signal ? fmt::format("killed by signal {}", j.signal) : j.message;
      cases += fmt::format(">\n      <error type=\"{}\" message=\"{}\">{}</error>\n    </testcase>\n",
                           escape_xml(j.status), escape_xml(msg), escape_xml(join(j.log_tail)));
      continue;
    }
    bool any_gated = false;
    for (const MetricResult& m : j.metrics) {
      if (!m.gated) continue;
      any_gated = true;
      open(m.name);
      if (m.pass) {
        cases += "/>\n";
        continue;
      }
      ++failures;
      const std::string what =
          fmt::format("{}: int8 {} vs fp32 {} (delta {}), tolerance {}", m.name, format_metric(m.name, m.value),
                      format_metric(m.name, m.baseline), format_metric(m.name, m.delta, true), m.tolerance);
      cases += fmt::format(
          ">\n      <failure type=\"tolerance\" message=\"{}\">{}</failure>\n    </testcase>\n",
          escape_xml(what), escape_xml(j.message));
    }
    if (!any_gated) {  // nothing gated: the job itself is the test
      open("job");
      if (j.status == "fail") {
        ++failures;
        cases += fmt::format(">\n      <failure type=\"fail\" message=\"{}\"/>\n    </testcase>\n",
                             escape_xml(j.message));
      } else {
        cases += "/>\n";
      }
    }
  }
  const Totals t = totals_of(jobs);
  const std::string counts =
      fmt::format("tests=\"{}\" failures=\"{}\" errors=\"{}\"", tests, failures, errors);
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  out += fmt::format("<testsuites name=\"qeval\" {} time=\"{}\">\n", counts, seconds_attr(t.seconds));
  out += fmt::format(
      "  <testsuite name=\"qeval\" {} skipped=\"0\" time=\"{}\" timestamp=\"{}\" hostname=\"{}\">\n", counts,
      seconds_attr(t.seconds), escape_xml(run.started), escape_xml(run.host));
  out += cases;
  out += "  </testsuite>\n</testsuites>\n";
  return out;
}

namespace {

// A horizontal bar chart of the per-layer cosine similarity, one bar per layer.
// The axis starts at 0.99, 0.9, 0 or -1 (the highest that shows every bar) and
// ends at 1, so that the usual 0.99x values are not all full-width bars.
std::string cos_chart(const JobResult& j) {
  constexpr double kLabelW = 230, kBarW = 420, kValueW = 70, kRowH = 16, kTop = 26, kBottom = 6;
  double lo = 0.99;
  for (const LayerResult& l : j.layers) {
    if (std::isnan(l.cos)) continue;
    while (l.cos < lo && lo > -1) lo = lo == 0.99 ? 0.9 : lo == 0.9 ? 0 : -1;
  }
  const double hi = 1;
  auto x = [&](double v) { return kLabelW + (std::clamp(v, lo, hi) - lo) / (hi - lo) * kBarW; };
  const double h = kTop + kRowH * double(j.layers.size()) + kBottom;
  // Colours are attributes, not CSS, so that the chart stays right when cut out of the page.
  std::string s = fmt::format(
      "<svg class=\"chart\" data-job=\"{2}\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"monospace\" font-size=\"11\" role=\"img\" "
      "aria-label=\"per-layer cosine similarity of {2}\">\n",
      kLabelW + kBarW + kValueW, h, escape_html(j.id));
  // Axis: ticks and grid lines at five evenly spaced values from lo to 1.
  s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"#444\"/>\n", kLabelW, kTop - 4,
                   kLabelW + kBarW);
  for (int k = 0; k <= 4; ++k) {
    const double v = lo + (hi - lo) * k / 4, xv = x(v);
    s += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#ddd\"/>", xv,
                     kTop - 8, h - kBottom);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:.4g}</text>\n", xv, kTop - 12, v);
  }
  for (size_t i = 0; i < j.layers.size(); ++i) {
    const LayerResult& l = j.layers[i];
    const double y = kTop + kRowH * double(i);
    const std::string label = truncate(l.op.empty() ? l.name : l.name + " (" + l.op + ")", 36);
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", kLabelW - 6, y + kRowH - 4,
                     escape_html(label));
    if (!std::isnan(l.cos)) {  // NaN: not measured, no bar
      // data-value holds the exact value (shortest round-trip form) for tools and tests.
      const std::string tip = fmt::format("{} ({}): cos {:.6f}, euclid {}, sqnr {:.1f} dB, max LSB {}",
                                          l.name, l.op, l.cos, format_metric("euclid", l.euclid), l.sqnr, l.max_lsb);
      s += fmt::format(
          "<rect x=\"{}\" y=\"{}\" width=\"{:.1f}\" height=\"{}\" fill=\"{}\" data-idx=\"{}\" "
          "data-layer=\"{}\" data-value=\"{}\"><title>{}</title></rect>",
          kLabelW, y + 2, x(l.cos) - kLabelW, kRowH - 4, l.pass ? "#3a9a4a" : "#d0342c", i,
          escape_html(l.name), l.cos, escape_html(tip));
    }
    s += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n", kLabelW + kBarW + 6, y + kRowH - 4,
                     format_metric("cos", l.cos));
  }
  return s + "</svg>\n";
}

// The y-axis of a trend plot: the data's range padded by 10% (a small range around
// a single value), with 3 to 5 ticks at "nice" values (1, 2, 2.5 or 5 x 10^k).
struct Axis {
  double lo = 0, hi = 1;
  std::vector<double> ticks;
  int decimals = 0;
};

Axis value_axis(double lo, double hi) {
  if (!(lo <= hi)) lo = 0, hi = 1;  // no finite value at all
  const double pad = hi > lo ? (hi - lo) * 0.1 : lo != 0 ? std::abs(lo) * 0.01 : 0.01;
  Axis a{lo - pad, hi + pad, {}, 0};
  const double span = a.hi - a.lo;
  if (!(span > 0 && std::isfinite(span))) return {lo, lo + 1, {lo, lo + 0.5, lo + 1}, 1};  // degenerate
  const int e0 = int(std::floor(std::log10(span)));
  // Largest step first: the fewest ticks that are still at least 3.
  for (int e = e0; e >= e0 - 2 && a.ticks.empty(); --e) {
    for (double m : {5.0, 2.5, 2.0, 1.0}) {
      const double step = m * std::pow(10.0, e);
      const double first = std::ceil(a.lo / step), last = std::floor(a.hi / step);
      if (last - first < 2 || last - first > 4) continue;
      for (double k = first; k <= last; ++k) a.ticks.push_back(k * step + 0.0);  // + 0.0: no "-0.00"
      a.decimals = std::max(0, -e + (m == 2.5));
      break;
    }
  }
  if (a.ticks.empty()) {  // no nice step gives 3..5 ticks: 5 evenly spaced ones
    for (int k = 0; k <= 4; ++k) a.ticks.push_back(a.lo + span * k / 4);
    a.decimals = std::max(0, 2 - int(std::floor(std::log10(span / 4))));
  }
  a.decimals = std::min(a.decimals, 12);
  return a;
}

// A line plot of one (job, metric) over runs: int8 solid with circles, fp32 dashed
// with squares. x is the run's position in the trend, labelled by run id. NaN
// points have no marker and break the line. Markers carry the exact value.
std::string trend_plot(const Trend& t) {
  constexpr double kW = 560, kH = 230, kLeft = 64, kRight = 16, kTop = 30, kBottom = 40, kInset = 14;
  constexpr const char* kInt8 = "#1f5fbf";
  constexpr const char* kFp32 = "#e07b00";
  const size_t n = t.points.size();
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const TrendPoint& p : t.points) {
    for (double v : {p.int8, p.fp32}) {
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
    }
  }
  const Axis a = value_axis(lo, hi);
  const double pw = kW - kLeft - kRight, ph = kH - kTop - kBottom;
  auto x = [&](size_t i) {
    return n < 2 ? kLeft + pw / 2 : kLeft + kInset + (pw - 2 * kInset) * double(i) / double(n - 1);
  };
  auto y = [&](double v) { return kTop + ph * (a.hi - v) / (a.hi - a.lo); };
  const std::string what = escape_html(t.job_key + " " + t.metric);
  std::string s = fmt::format(
      "<svg class=\"trend\" data-job=\"{0}\" data-metric=\"{1}\" width=\"{2}\" height=\"{3}\" "
      "viewBox=\"0 0 {2} {3}\" font-family=\"monospace\" font-size=\"11\" role=\"img\" "
      "aria-label=\"{4} over runs, int8 and fp32\">\n",
      escape_html(t.job_key), escape_html(t.metric), kW, kH, what);
  // y-axis: grid line and label per tick; x-axis: run ids (at most ~10 labels).
  for (double v : a.ticks) {
    s += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#e4e4e4\"/>", kLeft,
                     y(v), kW - kRight);
    s += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.{}f}</text>\n", kLeft - 6, y(v) + 4,
                     v, a.decimals);
  }
  s += fmt::format("<path d=\"M{0} {1} V{2} H{3}\" fill=\"none\" stroke=\"#444\"/>\n", kLeft, kTop,
                   kTop + ph, kW - kRight);
  const size_t stride = (n + 9) / 10;
  for (size_t i = 0; i < n; i += stride) {
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>", x(i), kTop + ph + 15,
                     t.points[i].run_id);
  }
  s += fmt::format("\n<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">run</text>\n", kLeft + pw / 2, kH - 6);

  // One series: the line (a new segment after each gap), then the markers on top.
  auto series = [&](const char* name, double TrendPoint::*field, const char* colour, bool dashed) {
    std::string d;
    bool pen_down = false;
    for (size_t i = 0; i < n; ++i) {
      const double v = t.points[i].*field;
      if (!std::isfinite(v)) {
        pen_down = false;
        continue;
      }
      d += fmt::format("{}{:.1f} {:.1f} ", pen_down ? "L" : "M", x(i), y(v));
      pen_down = true;
    }
    if (!d.empty()) {
      d.pop_back();
      s += fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"{}/>\n", d, colour,
                       dashed ? " stroke-dasharray=\"5 3\"" : "");
    }
    for (size_t i = 0; i < n; ++i) {
      const TrendPoint& p = t.points[i];
      const double v = p.*field;
      if (!std::isfinite(v)) continue;
      const std::string attrs =
          fmt::format("fill=\"{}\" data-run=\"{}\" data-series=\"{}\" data-value=\"{}\"", colour, p.run_id,
                      name, v);
      const std::string tip = fmt::format("run {}{}: {} {}", p.run_id,
                                          p.started.empty() ? "" : " " + p.started, name,
                                          format_metric(t.metric, v));
      s += dashed ? fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"7\" height=\"7\" {}>", x(i) - 3.5,
                                y(v) - 3.5, attrs)
                  : fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" {}>", x(i), y(v), attrs);
      s += fmt::format("<title>{}</title></{}>\n", escape_html(tip), dashed ? "rect" : "circle");
    }
  };
  series("fp32", &TrendPoint::fp32, kFp32, true);
  series("int8", &TrendPoint::int8, kInt8, false);  // drawn last: on top where the two meet

  // Legend above the plot area.
  s += fmt::format(
      "<g class=\"legend\"><line x1=\"{0}\" y1=\"12\" x2=\"{1}\" y2=\"12\" stroke=\"{2}\" "
      "stroke-width=\"1.5\"/>"
      "<circle cx=\"{3}\" cy=\"12\" r=\"3.5\" fill=\"{2}\"/><text x=\"{4}\" y=\"16\">int8</text>"
      "<line x1=\"{5}\" y1=\"12\" x2=\"{6}\" y2=\"12\" stroke=\"{7}\" stroke-width=\"1.5\" "
      "stroke-dasharray=\"5 3\"/><rect x=\"{8}\" y=\"8.5\" width=\"7\" height=\"7\" fill=\"{7}\"/>"
      "<text x=\"{9}\" y=\"16\">fp32</text></g>\n",
      kLeft, kLeft + 24, kInt8, kLeft + 12, kLeft + 30, kLeft + 80, kLeft + 104, kFp32, kLeft + 88.5,
      kLeft + 110);
  return s + "</svg>\n";
}

// The class of a status cell: PASS green, FAIL red, anything that did not run orange.
std::string status_class(const std::string& status) {
  const std::string u = to_upper(status);
  if (u == "PASS") return "pass";
  if (u == "FAIL") return "fail";
  return u == "ERROR" || u == "CRASHED" || u == "TIMEOUT" ? "error" : "";
}

// Run-to-run comparison: regressions first (red rows), then the rest in their order.
std::string diff_section(const HtmlExtras& x) {
  std::string h = fmt::format("<h2 id=\"diff\">Changes since run {}</h2>\n", x.baseline_run);
  if (x.diff.empty()) return h + "<p>No common jobs.</p>\n";
  std::vector<const MetricDiff*> rows;
  for (const MetricDiff& d : x.diff) rows.push_back(&d);
  std::stable_partition(rows.begin(), rows.end(), [](const MetricDiff* d) { return d->regressed; });
  h += "<table class=\"diff\">\n<tr><th>job</th><th>metric</th><th>before</th><th>after</th><th>delta</th>"
       "<th>before status</th><th>after status</th><th>note</th></tr>\n";
  auto status_cell = [](const std::string& st) {
    const std::string cls = status_class(st);
    return fmt::format("<td{}>{}</td>", cls.empty() ? "" : " class=\"" + cls + "\"",
                       st.empty() ? "-" : escape_html(to_upper(st)));
  };
  for (const MetricDiff* d : rows) {
    h += d->regressed ? "<tr class=\"regressed\">" : "<tr>";
    h += fmt::format("<td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>"
                     "<td class=\"num\">{}</td>",
                     escape_html(d->job_key), escape_html(d->metric.empty() ? "-" : d->metric),
                     format_metric(d->metric, d->before), format_metric(d->metric, d->after),
                     format_metric(d->metric, d->delta, true));
    h += status_cell(d->before_status) + status_cell(d->after_status);
    h += fmt::format("<td>{}</td></tr>\n", escape_html(d->rule));
  }
  return h + "</table>\n";
}

constexpr const char* kCss = R"css(
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.pass { background: #c8ecc9; color: #14532d; font-weight: bold; }
td.fail { background: #f8c9c4; color: #7f1d1d; font-weight: bold; }
td.error { background: #fcd9a8; color: #7c2d12; font-weight: bold; }
dl.run { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; }
dl.run dt { font-weight: bold; }
dl.run dd { margin: 0; }
svg.chart, svg.trend { display: block; margin-bottom: 1em; }
tr.regressed td { background: #f8c9c4; color: #7f1d1d; }
tr.regressed td:first-child { font-weight: bold; }
pre { background: #f6f6f6; padding: 6px; overflow-x: auto; }
)css";

}  // namespace

std::string html_escape(const std::string& s) { return escape_html(s); }
std::string layer_cos_chart(const JobResult& j) { return cos_chart(j); }
const char* report_css() { return kCss; }

std::string results_html(const RunInfo& run, const std::vector<JobResult>& jobs, const HtmlExtras& extras) {
  const Totals t = totals_of(jobs);
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  h += fmt::format("<title>qeval run {}</title>\n<style>{}</style>\n</head>\n<body>\n", run.id, kCss);
  h += fmt::format("<h1>qeval run {}</h1>\n<dl class=\"run\">\n", run.id);
  auto item = [&](const char* k, const std::string& v) {
    if (!v.empty()) h += fmt::format("<dt>{}</dt><dd>{}</dd>\n", k, escape_html(v));
  };
  item("started", run.started);
  item("finished", run.finished);
  item("status", run.status);
  item("command", run.command);
  item("host", run.host);
  item("git", run.git_sha);
  item("fast test", run.fast_test ? "yes" : "no");
  item("seconds", fmt::format("{:.1f}", run.seconds));
  item("exit code", run.exit_code >= 0 ? std::to_string(run.exit_code) : "");
  h += fmt::format("</dl>\n<p><strong>{}</strong></p>\n", totals_line(t));

  h += "<table class=\"summary\">\n<tr>";
  for (const char* c : kHeader) h += fmt::format("<th>{}</th>", c);
  h += "</tr>\n";
  for (const Cells& r : summary_rows(jobs)) {
    h += "<tr>";
    for (size_t c = 0; c < kColumns; ++c) {
      std::string cls = kNumeric[c] ? "num" : "";
      if (c == kColumns - 1 && r[c] != "-") cls = r[c] == "PASS" ? "pass" : r[c] == "FAIL" ? "fail" : "error";
      h += cls.empty() ? "<td>" : fmt::format("<td class=\"{}\">", cls);
      h += escape_html(r[c]) + "</td>";
    }
    h += "</tr>\n";
  }
  h += "</table>\n";

  if (!extras.trends.empty()) {
    h += "<h2 id=\"trends\">Trends</h2>\n";
    for (const Trend& t : extras.trends) {
      h += fmt::format("<h3>{} — {}</h3>\n", escape_html(t.job_key), escape_html(t.metric));
      h += trend_plot(t);
    }
  }
  if (extras.baseline_run != 0) h += diff_section(extras);

  for (const JobResult& j : jobs) {
    h += fmt::format("<h2>{}</h2>\n<p>{}{} &middot; {} samples &middot; {:.1f} s</p>\n", escape_html(j.id),
                     escape_html(to_upper(j.status)), j.message.empty() ? "" : ": " + escape_html(j.message),
                     j.samples, std::isfinite(j.seconds) ? j.seconds : 0.0);
    if (!j.log_tail.empty()) {
      h += fmt::format("<details><summary>log tail</summary><pre>{}</pre></details>\n",
                       escape_html(join(j.log_tail)));
    }
    if (!j.layers.empty()) {
      h += "<h3>Per-layer cosine similarity (int8 simulator vs fp32)</h3>\n" + cos_chart(j);
    }
  }
  return h + "</body>\n</html>\n";
}

}  // namespace qeval
