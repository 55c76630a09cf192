"""Extraction at scale: peak memory must not grow with the corpus; throughput must match Encoder.embed.

    python benchmarks/bench_extract.py [--model minilm] [--sizes 10000 200000] [--throughput-n 10000]

Corpora are SST-2 + STS-B sentences from ../shared/data repeated (with the row number appended, so no two
lines are equal) to each size. Each size runs `hubembed extract` in a fresh process (feature cache on, in a
temporary folder); its peak RSS is read from the child's own rusage (os.wait4). Throughput: Encoder.embed
vs hubembed.extract (cache off: the same work) on the same texts in one process, interleaved, best of
--rounds (a shared 2-core machine swings when busy); then, in the same process: a rerun served by a warm
feature cache, each output format, token-level Parquet, and the Beam DirectRunner (one worker).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def sentences():
    out = []
    with open(os.path.join(DATA, "sst2", "train.tsv"), encoding="utf-8") as f:
        out += [line.split("\t")[0] for line in f if line.strip()]
    with open(os.path.join(DATA, "stsb", "stsb-en-train.csv"), encoding="utf-8") as f:
        out += [s for r in csv.reader(f) for s in r[:2]]
    return out


def write_corpus(path, n):
    base = sentences()
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(f"{base[i % len(base)]} ({i})\n")


def peak_rss_mb(cmd):
    """Run cmd; (its own peak RSS in MB, from wait4's rusage; seconds)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {p.returncode}")
    return usage.ru_maxrss / 1024, time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 200000])
    ap.add_argument("--shard-size", type=int, default=10000)
    ap.add_argument("--throughput-n", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="hubembed-bench-")
    try:
        print(f"# model {args.model}; shard size {args.shard_size}; {os.cpu_count()} cores")
        print(f"\n{'rows':>8} {'peak RSS MB':>12} {'seconds':>9} {'rows/s':>8}")
        rss = {}
        for n in sorted(args.sizes):
            src = os.path.join(tmp, f"c{n}.txt")
            write_corpus(src, n)
            cmd = [
                sys.executable,
                "-m",
                "hubembed",
                "extract",
                src,
                "-o",
                os.path.join(tmp, f"o{n}"),
                "--model",
                args.model,
                "--shard-size",
                str(args.shard_size),
                "-q",
                "--cache",
                os.path.join(tmp, f"f{n}"),
            ]
            rss[n], sec = peak_rss_mb(cmd)
            print(f"{n:>8} {rss[n]:>12.0f} {sec:>9.1f} {n / sec:>8.1f}")
            os.remove(src)
        lo, hi = min(rss), max(rss)
        print(f"\npeak RSS {hi} rows / {lo} rows = {rss[hi] / rss[lo]:.3f} (target: within 1.20)")

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import hubembed

        enc = hubembed.load(args.model)
        src = os.path.join(tmp, "t.txt")
        write_corpus(src, args.throughput_n)
        texts = open(src, encoding="utf-8").read().splitlines()
        enc.embed(texts[:2000])  # warm-up: the first calls per shape are slow
        best = {"embed": 1e9, "extract": 1e9}
        for _ in range(args.rounds):
            t = time.perf_counter()
            enc.embed(texts)
            best["embed"] = min(best["embed"], time.perf_counter() - t)
            out = os.path.join(tmp, "tp")
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            hubembed.extract(src, out, encoder=enc, quiet=True, shard_size=args.shard_size, cache=False)
            best["extract"] = min(best["extract"], time.perf_counter() - t)
        n = len(texts)
        print(f"\nthroughput on {n} texts, best of {args.rounds} interleaved rounds:")
        print(f"  Encoder.embed     {n / best['embed']:8.1f} rows/s")
        print(
            f"  hubembed.extract  {n / best['extract']:8.1f} rows/s   (extract / embed = "
            f"{best['embed'] / best['extract']:.3f}; target >= 0.90)"
        )

        def once(label, **kw):
            out = os.path.join(tmp, "once")
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            m = kw.pop("fn", hubembed.extract)(src, out, **kw)
            sec = time.perf_counter() - t
            size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out)) / 2**20
            print(
                f"  {label:<34} {n / sec:8.1f} rows/s  {sec / best['extract']:5.2f}x the npy run's time  "
                f"{size:8.1f} MB on disk  ({m['summary'].get('texts_encoded_this_run', '-')} texts encoded)"
            )

        print("\none run each (same process, same texts):")
        cache = os.path.join(tmp, "features")
        common = dict(encoder=enc, quiet=True, shard_size=args.shard_size)
        once("npy, cache filled", cache=cache, **common)
        once("npy, served by the warm cache", cache=cache, **common)
        once("parquet", format="parquet", cache=False, **common)
        once("parquet float16", format="parquet", dtype="float16", cache=False, **common)
        once("tfrecord", format="tfrecord", cache=False, **common)
        once("tokens, parquet", level="tokens", cache=False, **common)
        try:
            from hubembed import beam
        except ImportError:
            print("  (Beam: pip install 'hubembed[beam]')")
        else:
            once(
                f"Beam DirectRunner, shards of {args.shard_size // 5}",
                fn=beam.extract,
                model=args.model,
                shard_size=args.shard_size // 5,
                pipeline_args=["--direct_num_workers=1"],
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
