#!/usr/bin/env python3
"""Checks a run_eval HTML report against the results store it was written from.

    html_check.py HTML_FILE DB_FILE RUN_ID

(a) well-formedness: every tag closed in order (void elements and self-closing
    SVG elements excepted), nothing loaded from elsewhere;
(b) trend plots (<svg class="trend" data-job=J data-metric=M>): each marker's
    data-value equals the stored int8 value (data-series="int8") or fp32
    baseline ("fp32") of metric M of job J in run data-run, exactly; a run shown
    in a plot has a marker for each series the store holds a value for;
(c) per-layer charts (<svg class="chart" data-job=J>) of run RUN_ID: one per job
    with layers, one bar per layer with a cosine (data-idx = layers.idx), its
    data-value equal to layers.cos exactly.

Prints "ok: ..." and exits 0, or lists the mismatches and exits 1. Stdlib only.
"""
import argparse
import pathlib
import sqlite3
import sys
from html.parser import HTMLParser

VOID = {"br", "meta", "img", "hr", "input", "link"}
FORBIDDEN = {"script", "link", "iframe", "object", "embed"}  # the file must be self-contained


class Report(HTMLParser):
    """Checks the tag balance and collects the trend markers and layer bars."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack = []  # (tag, line)
        self.errors = []
        self.trends = []  # {"job", "metric", "markers": [(run, series, value_text)]}
        self.charts = []  # {"job", "bars": [(idx, layer, value_text)]}
        self.svg = None   # ("trend" | "chart" | None, dict) of the open <svg>

    def where(self):
        return "line %d" % self.getpos()[0]

    def element(self, tag, attrs, closes_itself):
        a = dict(attrs)
        if tag in FORBIDDEN:
            self.errors.append("%s: <%s> (the report must be self-contained)" % (self.where(), tag))
        for k in ("src", "href"):
            if k in a and not (a[k] or "").startswith("#"):
                self.errors.append("%s: <%s %s=%r> loads something" % (self.where(), tag, k, a[k]))
        if tag == "svg":
            if self.svg is not None:
                self.errors.append("%s: <svg> inside <svg>" % self.where())
            classes = (a.get("class") or "").split()
            if "trend" in classes:
                entry = {"job": a.get("data-job"), "metric": a.get("data-metric"), "markers": []}
                self.trends.append(entry)
                self.svg = ("trend", entry)
            elif "chart" in classes:
                entry = {"job": a.get("data-job"), "bars": []}
                self.charts.append(entry)
                self.svg = ("chart", entry)
            else:
                self.svg = (None, None)
            if closes_itself:
                self.svg = None
        elif self.svg and self.svg[0] == "trend" and "data-series" in a:
            self.svg[1]["markers"].append((a.get("data-run"), a.get("data-series"), a.get("data-value")))
        elif self.svg and self.svg[0] == "chart" and tag == "rect" and "data-value" in a:
            self.svg[1]["bars"].append((a.get("data-idx"), a.get("data-layer"), a.get("data-value")))

    def handle_starttag(self, tag, attrs):
        self.element(tag, attrs, False)
        if tag not in VOID:
            self.stack.append((tag, self.getpos()[0]))

    def handle_startendtag(self, tag, attrs):  # <circle .../>, <br/>
        self.element(tag, attrs, True)

    def handle_endtag(self, tag):
        if tag in VOID:
            self.errors.append("%s: </%s> closes a void element" % (self.where(), tag))
            return
        if not self.stack:
            self.errors.append("%s: </%s> with nothing open" % (self.where(), tag))
            return
        open_tag, line = self.stack.pop()
        if open_tag != tag:
            self.errors.append("%s: </%s> closes <%s> of line %d" % (self.where(), tag, open_tag, line))
            self.stack.append((open_tag, line))  # report the rest against the same stack
            if any(t == tag for t, _ in self.stack):  # resync: drop the unclosed ones
                while self.stack.pop()[0] != tag:
                    pass
        if tag == "svg":
            self.svg = None


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def check_trends(db, trends, errors):
    points = 0
    for t in trends:
        job, metric = t["job"], t["metric"]
        name = "trend %s %s" % (job, metric)
        if not job or not metric:
            errors.append("%s: <svg class=\"trend\"> without data-job / data-metric" % name)
            continue
        seen, runs = set(), set()
        for run, series, text in t["markers"]:
            points += 1
            what = "%s: run %s %s data-value=%r" % (name, run, series, text)
            if series not in ("int8", "fp32") or number(run) is None:
                errors.append("%s: bad data-series or data-run" % what)
                continue
            if (run, series) in seen:
                errors.append("%s: two markers" % what)
            seen.add((run, series))
            runs.add(run)
            row = db.execute(
                "SELECT m.value, m.baseline FROM metrics m JOIN jobs j ON m.job_id = j.id "
                "WHERE j.run_id = ? AND j.job_key = ? AND m.name = ?", (int(run), job, metric)).fetchone()
            if row is None:
                errors.append("%s: no such metric in the store" % what)
                continue
            want = row[0] if series == "int8" else row[1]
            got = number(text)
            if want is None:
                errors.append("%s: the store holds NULL (NaN), there should be no marker" % what)
            elif got is None or got != want:
                errors.append("%s: the store holds %r" % (what, want))
        # Every run the plot shows: a marker for each series the store has a value for.
        for run in sorted(runs, key=int):
            row = db.execute(
                "SELECT m.value, m.baseline FROM metrics m JOIN jobs j ON m.job_id = j.id "
                "WHERE j.run_id = ? AND j.job_key = ? AND m.name = ?", (int(run), job, metric)).fetchone()
            for series, want in zip(("int8", "fp32"), row or (None, None)):
                if want is not None and (run, series) not in seen:
                    errors.append("%s: run %s has no %s marker (store: %r)" % (name, run, series, want))
    return points


def check_layers(db, run_id, charts, errors):
    want = {}  # job_key -> {idx: (name, cos)}
    for job, idx, name, cos in db.execute(
            "SELECT j.job_key, l.idx, l.name, l.cos FROM layers l JOIN jobs j ON l.job_id = j.id "
            "WHERE j.run_id = ? ORDER BY j.id, l.idx", (run_id,)):
        want.setdefault(job, {})[idx] = (name, cos)
    bars = 0
    charted = set()
    for c in charts:
        job = c["job"]
        if job in charted:
            errors.append("layer chart %s: twice" % job)
        charted.add(job)
        if job not in want:
            errors.append("layer chart %s: the store has no layers for this job in run %d" % (job, run_id))
            continue
        seen = set()
        for idx, layer, text in c["bars"]:
            bars += 1
            what = "layer chart %s: bar %s (%s) data-value=%r" % (job, idx, layer, text)
            i = number(idx)
            if i is None or int(i) not in want[job]:
                errors.append("%s: no such layer index in the store" % what)
                continue
            name, cos = want[job][int(i)]
            seen.add(int(i))
            if layer != name:
                errors.append("%s: the store names layer %s %r" % (what, idx, name))
            if cos is None:
                errors.append("%s: the store holds NULL (NaN), there should be no bar" % what)
            elif number(text) != cos:
                errors.append("%s: the store holds %r" % (what, cos))
        for i, (name, cos) in sorted(want[job].items()):
            if cos is not None and i not in seen:
                errors.append("layer chart %s: no bar for layer %d (%s, cos %r)" % (job, i, name, cos))
    for job in want:
        if job not in charted:
            errors.append("job %s has layers in run %d but no chart" % (job, run_id))
    return bars


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html")
    ap.add_argument("db")
    ap.add_argument("run_id", type=int)
    args = ap.parse_args()

    p = Report()
    with open(args.html, encoding="utf-8") as f:
        p.feed(f.read())
    p.close()
    errors = list(p.errors)
    for tag, line in p.stack:
        errors.append("<%s> of line %d is never closed" % (tag, line))

    db = sqlite3.connect(pathlib.Path(args.db).resolve().as_uri() + "?mode=ro", uri=True)
    if db.execute("SELECT 1 FROM runs WHERE id = ?", (args.run_id,)).fetchone() is None:
        errors.append("run %d is not in %s" % (args.run_id, args.db))
    points = check_trends(db, p.trends, errors)
    bars = check_layers(db, args.run_id, p.charts, errors)
    db.close()

    if errors:
        for e in errors:
            print("FAIL:", e)
        print("%d problem(s) in %s" % (len(errors), args.html))
        return 1
    print("ok: %d trend plots, %d points, %d layer charts, %d bars"
          % (len(p.trends), points, len(p.charts), bars))
    return 0


if __name__ == "__main__":
    sys.exit(main())
