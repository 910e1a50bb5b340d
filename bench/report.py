#!/usr/bin/python3
"""The tables of bench/run_bench.sh from its results.jsonl (one JSON object per
measurement; bench/README.md lists the fields).

  report.py WORK/results.jsonl [--ort-dir WORK/ort]

--ort-dir: where ort_bench.js saved each model's optimised graph
(MODEL.optimized.onnx); the report then says how many convolutions onnxruntime
ran as int8 kernels and how many as float Conv between Dequantize/Quantize.
"""
import argparse, collections, json, os, platform, statistics


def cpu_line():
    info = {}
    for line in open("/proc/cpuinfo"):
        k, _, v = line.partition(":")
        info.setdefault(k.strip(), v.strip())
    flags = info.get("flags", "").split()
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return f"{info.get('model name', platform.machine())}, {os.cpu_count()} CPUs, {info.get('cpu MHz', '?')} MHz, " \
           f"{' '.join(isa) or 'no AVX2'}"


def ort_kernels(path):
    """'QLinearConv 4, Conv (float) 5, ...' of an optimised onnxruntime graph."""
    try:
        import onnx
    except ImportError:
        return "(python3-onnx missing: kernels not counted)"
    ops = collections.Counter(n.op_type for n in onnx.load(path).graph.node)
    int8 = [f"{k} {v}" for k, v in sorted(ops.items()) if k.startswith(("QLinear", "QGemm", "ConvInteger"))]
    flt = [f"{k} {v}" for k, v in sorted(ops.items()) if k in ("Conv", "Gemm", "MatMul")]
    return f"int8 kernels: {', '.join(int8) or 'none'}; float: {', '.join(flt) or 'none'}"


def fmt_ips(v):
    return f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"


def merge_passes(infer):
    """One row per (peer, model, batch): the rounds of every pass pooled, images/s
    their median, peak RSS the largest; a skipped pass makes the row skipped."""
    merged, order = {}, []
    for r in infer:
        key = (r["peer"], r["model"], r["batch"])
        if key not in merged:
            merged[key] = dict(r, round_images_per_s=list(r.get("round_images_per_s", [])))
            order.append(key)
            continue
        m = merged[key]
        if "skipped" in r or "skipped" in m:
            m.setdefault("skipped", r.get("skipped"))
            continue
        m["round_images_per_s"] += r.get("round_images_per_s", [])
        m["peak_rss_mib"] = max(m.get("peak_rss_mib", 0), r.get("peak_rss_mib", 0))
    for key in order:
        m = merged[key]
        rounds = m["round_images_per_s"]
        if "skipped" not in m and rounds:
            m["images_per_s"] = statistics.median(rounds)
            if "gmac_per_s" in m and "macs_per_image" in m:
                m["gmac_per_s"] = m["images_per_s"] * m["macs_per_image"] / 1e9
                m["peak_fraction"] = m["gmac_per_s"] / m["cpu_peak"]["peak_gmac_per_s"]
    return [merged[k] for k in order]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--ort-dir")
    a = ap.parse_args()
    rows = [json.loads(line) for line in open(a.results) if line.strip()]
    machine = {r["when"]: r for r in rows if r["bench"] == "machine"}
    start = machine.get("start", {})
    print(f"# qeval peer benchmark — {cpu_line()}")
    passes = start.get("passes", 1)
    rounds = f"{start.get('rounds')} rounds" if passes == 1 else \
        f"{passes} x {start.get('rounds')} rounds (passes alternating over the peers)"
    print(f"threads {start.get('threads')}, median of {rounds} of >= {start.get('round_seconds')} s "
          f"after warm-up; load average at start {start.get('loadavg')}, at end {machine.get('end', {}).get('loadavg')}")
    print(f"artifacts: {start.get('artifacts')} (fp32 baseline: {start.get('baseline')}); "
          f"OpenMP wait policy of the LibTorch processes: {start.get('omp_wait_policy')}")

    infer = merge_passes([r for r in rows if r["bench"] == "infer"])
    sim = {(r["model"], r["batch"]): r for r in infer if r["peer"] == "qeval-sim-int8" and "skipped" not in r}
    print("\n## Inference (images/s; qeval/peer = qeval simulator images/s ÷ the peer's)\n")
    print("| model | batch | peer | images/s | qeval/peer | peak RSS MiB | note |")
    print("|---|---|---|---|---|---|---|")
    notes = {}
    for r in infer:
        key = (r["model"], r["batch"])
        if "skipped" in r:
            print(f"| {r['model']} | {r['batch']} | {r['peer']} | **skipped** | | | {r['skipped']} |")
            continue
        q = sim.get(key)
        ratio = f"{q['images_per_s'] / r['images_per_s']:.3g}" if q else "n/a"
        note = ""
        if r["peer"] == "qeval-sim-int8":
            note = (f"{r['profile']}, kernels {r['sim_kernels']}; {r['gmac_per_s']:.2f} GMAC/s = "
                    f"{100 * r['peak_fraction']:.2f}% of peak")
        elif r["peer"] == "onnxruntime-int8":
            path = os.path.join(a.ort_dir, f"{r['model']}.optimized.onnx") if a.ort_dir else ""
            if path and os.path.exists(path):
                note = notes.setdefault(r["model"], ort_kernels(path))
        elif r.get("weights", "").startswith("PyTorch default"):
            note = r["weights"]
        print(f"| {r['model']} | {r['batch']} | {r['peer']} | {fmt_ips(r['images_per_s'])} | {ratio} | "
              f"{r.get('peak_rss_mib', 0):.0f} | {note} |")
    versions = sorted({r["version"] for r in infer if "version" in r})
    if versions:
        print(f"\npeers: {'; '.join(versions)}")

    layers = [r for r in rows if r["bench"] == "layer"]
    if layers:
        peak = next(r["cpu_peak"] for r in infer if "cpu_peak" in r)
        print("\n## qeval simulator: largest convolutions alone (int8 MAC/s vs the cores' peak)\n")
        print(f"peak = {peak['peak_gmac_per_s']:.1f} GMAC/s: {peak['peak_assumption']} "
              f"({peak['cores']} cores, {peak['cpu_mhz']} MHz from /proc/cpuinfo){'; ' + peak['peak_note'] if 'peak_note' in peak else ''}\n")
        print("| model | batch | node | weight | group | MMAC | ms/run | share of model time | GMAC/s | % of peak |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in layers:
            print(f"| {r['model']} | {r['batch']} | {r['node']} | {'x'.join(map(str, r['weight_shape']))} | "
                  f"{r['group']} | {r['macs'] / 1e6:.1f} | {r['ms_per_run']:.2f} | {100 * r['share_of_model_time']:.0f}% | "
                  f"{r['gmac_per_s']:.2f} | {100 * r['peak_fraction']:.2f}% |")

    qat = [r for r in rows if r["bench"] == "qat"]
    if qat:
        print("\n## QAT training (images/s over one epoch of the same images; qeval/torch = ratio of images/s)\n")
        print("| model | images | batch | qeval img/s | torch FX img/s | qeval/torch | mean loss qeval / torch | "
              "act. fake-quant calls per forward qeval / torch | weight fake quants | Conv+BN folded |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        by_model = collections.defaultdict(dict)
        for r in qat:
            by_model[r["model"]][r["peer"]] = r
        for m, p in by_model.items():
            q, t = p.get("qeval-qat", {}), p.get("torch-fx-qat", {})
            for side, r in (("qeval", q), ("torch", t)):
                if "skipped" in r:
                    print(f"| {m} | | | {side} **skipped**: {r['skipped']} | | | | | | |")
            if "skipped" in q or "skipped" in t or not q or not t:
                continue
            print(f"| {m} | {q['images']} | {q['batch']} | {q['images_per_s']:.1f} | {t['images_per_s']:.1f} | "
                  f"{q['images_per_s'] / t['images_per_s']:.3g} | {q['mean_loss']:.3f} / {t['mean_loss']:.3f} | "
                  f"{q['activation_fake_quant_calls']} / {t['activation_fake_quant_calls']} | "
                  f"{q['weight_fake_quants']} / {t['weight_fake_quants']} | {q['conv_bn_folded']} / {t['conv_bn_folded']} |")
            if q["images"] != t["images"] or q["batch"] != t["batch"]:
                print(f"\n**{m}: the two did different work** (images {q['images']} vs {t['images']}, "
                      f"batch {q['batch']} vs {t['batch']})")


if __name__ == "__main__":
    main()
