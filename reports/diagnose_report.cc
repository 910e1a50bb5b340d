#include "reports/diagnose_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "reports/report.h"

namespace qeval {

namespace {

struct Bar {
  std::string label, tip;
  double value = kNaN;
  bool flagged = false;
};

// A horizontal bar chart from 0 to the largest value (at least `min_hi`); each bar
// carries its exact value in data-value.
std::string bar_chart(const std::string& id, const std::string& what, const std::vector<Bar>& bars, double min_hi,
                      const std::string& unit) {
  constexpr double kLabelW = 230, kBarW = 420, kValueW = 90, kRowH = 16, kTop = 10, kBottom = 6;
  double hi = min_hi;
  for (const Bar& b : bars) {
    if (std::isfinite(b.value)) hi = std::max(hi, b.value);
  }
  const double h = kTop + kRowH * double(bars.size()) + kBottom;
  std::string s = fmt::format(
      "<svg class=\"chart\" id=\"{2}\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" font-family=\"monospace\" "
      "font-size=\"11\" role=\"img\" aria-label=\"{3}\">\n",
      kLabelW + kBarW + kValueW, h, html_escape(id), html_escape(what));
  for (size_t i = 0; i < bars.size(); ++i) {
    const Bar& b = bars[i];
    const double y = kTop + kRowH * double(i);
    const std::string label = b.label.size() > 34 ? "…" + b.label.substr(b.label.size() - 33) : b.label;
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", kLabelW - 6, y + kRowH - 4,
                     html_escape(label));
    if (std::isfinite(b.value)) {
      const double w = std::max(0.0, b.value) / hi * kBarW;
      s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{:.1f}\" height=\"{}\" fill=\"{}\" data-layer=\"{}\" "
                       "data-value=\"{}\"><title>{}</title></rect>",
                       kLabelW, y + 2, w, kRowH - 4, b.flagged ? "#d0342c" : "#4a7ab5", html_escape(b.label), b.value,
                       html_escape(b.tip));
      s += fmt::format("<text x=\"{}\" y=\"{}\">{:.4g}{}</text>\n", kLabelW + kBarW + 6, y + kRowH - 4, b.value, unit);
    } else {
      s += fmt::format("<text x=\"{}\" y=\"{}\">-</text>\n", kLabelW + kBarW + 6, y + kRowH - 4);
    }
  }
  return s + "</svg>\n";
}

std::string num(double v, const char* f = "{:.4g}") {
  return std::isfinite(v) ? fmt::format(fmt::runtime(f), v) : std::string("-");
}

}  // namespace

std::string diagnose_html(const RunInfo& run, const std::vector<JobResult>& jobs, const std::vector<Finding>& findings) {
  const JobResult* main = jobs.empty() ? nullptr : &jobs[0];
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  h += fmt::format("<title>qeval diagnose {}</title>\n<style>{}</style>\n</head>\n<body>\n",
                   html_escape(main ? main->model : ""), report_css());
  h += fmt::format("<h1>qeval diagnose: {}</h1>\n<dl class=\"run\">\n", html_escape(main ? main->id : "no job"));
  auto item = [&](const char* k, const std::string& v) {
    if (!v.empty()) h += fmt::format("<dt>{}</dt><dd>{}</dd>\n", k, html_escape(v));
  };
  item("run", std::to_string(run.id));
  item("command", run.command);
  item("started", run.started);
  item("host", run.host);
  item("seconds", fmt::format("{:.1f}", run.seconds));
  item("exit code", run.exit_code >= 0 ? std::to_string(run.exit_code) : "");
  h += "</dl>\n";

  // Gate and checks.
  h += "<h2 id=\"checks\">Checks</h2>\n<table class=\"checks\">\n<tr><th></th><th>check</th><th>finding</th></tr>\n";
  size_t flags = 0;
  for (const Finding& f : findings) {
    if (f.kind != "check" && f.kind != "measure") continue;
    const bool flag = f.kind == "check" || (f.subject == "gate" && (f.detail.find("FAILS") != std::string::npos ||
                                                                    f.detail.find("other gates fail") != std::string::npos));
    flags += f.kind == "check";
    h += fmt::format("<tr><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>\n", flag ? "fail" : "pass",
                     flag ? "FLAG" : "ok", html_escape(f.subject), html_escape(f.detail));
  }
  h += fmt::format("</table>\n<p>{} flag(s).</p>\n", flags);

  // Per-layer profile.
  if (main && !main->layers.empty()) {
    h += "<h2 id=\"profile\">Per-layer profile (fp32 vs simulator)</h2>\n";
    h += "<h3>Cosine similarity</h3>\n" + layer_cos_chart(*main);
    std::vector<Bar> sat;
    for (const LayerResult& l : main->layers) {
      if (l.bits == 0) continue;
      sat.push_back({l.name, fmt::format("{}: {:.3f}% clipped, fp32 [{}, {}], scale {}", l.name, 100 * l.saturation,
                                         num(l.lo), num(l.hi), num(l.scale)),
                     100 * l.saturation, l.saturation > 0.01});
    }
    h += "<h3>Saturation (% of fp32 values outside the quantizer's range)</h3>\n" +
         bar_chart("chart-saturation", "saturation per layer", sat, 1.0, "%");
    h += "<table class=\"layers\">\n<tr><th>value</th><th>op</th><th>cos</th><th>euclid</th><th>SQNR dB</th>"
         "<th>max LSB</th><th>fp32 min</th><th>fp32 max</th><th>saturation %</th><th>outlier</th><th>scale</th>"
         "<th>bits</th></tr>\n";
    for (const LayerResult& l : main->layers) {
      h += fmt::format(
          "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>"
          "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num{}\">{}</td>"
          "<td class=\"num{}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
          html_escape(l.name), html_escape(l.op), num(l.cos, "{:.6f}"), num(l.euclid), num(l.sqnr, "{:.2f}"),
          l.max_lsb >= 0 ? std::to_string(l.max_lsb) : "-", num(l.lo), num(l.hi), l.saturation > 0.01 ? " fail" : "",
          num(100 * l.saturation, "{:.3f}"), l.outlier > 4 ? " fail" : "", num(l.outlier, "{:.2f}"), num(l.scale),
          l.bits ? std::to_string(l.bits) : "float");
    }
    h += "</table>\n";
  }

  // Sensitivity.
  std::vector<const Finding*> sens;
  for (const Finding& f : findings) {
    if (f.kind == "sensitivity") sens.push_back(&f);
  }
  std::stable_sort(sens.begin(), sens.end(), [](const Finding* a, const Finding* b) { return a->rank < b->rank; });
  if (!sens.empty()) {
    double all_q = kNaN, fp32 = kNaN;
    for (const Finding& f : findings) {
      if (f.kind == "measure" && f.subject == "gate") fp32 = f.value2;
    }
    for (const JobResult& j : jobs) {
      if (j.mode == "ptq" && j.model == (main ? main->model : "")) {
        if (const MetricResult* m = j.metric("top1") ? j.metric("top1") : j.metric("mAP")) all_q = m->value;
      }
    }
    if (main && main->mode == "ptq") {
      if (const MetricResult* m = main->metric("top1") ? main->metric("top1") : main->metric("mAP")) all_q = m->value;
    }
    h += "<h2 id=\"sensitivity\">Sensitivity ranking (PTQ)</h2>\n";
    h += fmt::format("<p>fp32 {}, all layers quantized {}. Bars: metric gained when only this layer stays float.</p>\n",
                     num(fp32), num(all_q));
    std::vector<Bar> bars;
    for (const Finding* f : sens) {
      bars.push_back({f->subject, f->detail, f->value2 - all_q, false});
    }
    h += bar_chart("chart-sensitivity", "metric gained per layer kept float", bars, 0.1, "");
    h += "<table class=\"sensitivity\">\n<tr><th>rank</th><th>layer</th><th>only this layer float</th>"
         "<th>only this layer quantized</th><th>output SQNR</th></tr>\n";
    for (const Finding* f : sens) {
      h += fmt::format("<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>"
                       "<td>{}</td></tr>\n",
                       f->rank, html_escape(f->subject), num(f->value2), num(f->value), html_escape(f->detail));
    }
    h += "</table>\n";
  }

  // Fix.
  h += "<h2 id=\"fix\">Fix</h2>\n";
  bool any = false;
  for (const Finding& f : findings) {
    if (f.kind != "fix_result") continue;
    any = true;
    h += fmt::format("<p class=\"fix\">{} layer(s) changed: {} {} &rarr; {} (<code>{}</code>)</p>\n<ul>\n", f.rank,
                     html_escape(f.subject), num(f.value), num(f.value2), html_escape(f.detail));
    for (const Finding& x : findings) {
      if (x.kind == "fix") h += fmt::format("<li>{}: {}</li>\n", html_escape(x.subject), html_escape(x.detail));
    }
    h += "</ul>\n";
  }
  if (!any) h += "<p>No fix (within tolerance, not searched, or none found).</p>\n";

  // Every job of the run.
  h += "<h2 id=\"jobs\">Jobs</h2>\n<table class=\"jobs\">\n<tr><th>job</th><th>status</th><th>metric</th>"
       "<th>fp32</th><th>output SQNR</th><th>seconds</th></tr>\n";
  for (const JobResult& j : jobs) {
    const MetricResult* m = j.metric("top1") ? j.metric("top1") : j.metric("mAP");
    const MetricResult* q = j.metric("output_sqnr");
    h += fmt::format("<tr><td>{}</td><td class=\"{}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>"
                     "<td class=\"num\">{}</td><td class=\"num\">{:.1f}</td></tr>\n",
                     html_escape(j.id), j.status == "pass" ? "pass" : j.status == "fail" ? "fail" : "error",
                     html_escape(j.status), m ? num(m->value) : "-", m ? num(m->baseline) : "-",
                     q ? num(q->value, "{:.2f}") : "-", std::isfinite(j.seconds) ? j.seconds : 0.0);
  }
  return h + "</table>\n</body>\n</html>\n";
}

}  // namespace qeval
