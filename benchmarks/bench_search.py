"""Search over a stored extraction: what codes and rescoring cost and give back, and the memory a search takes.

    python benchmarks/bench_search.py [--model minilm] [--shard-size 1000] [--k 10]

Corpus: the STS-B sentences of ../shared/data (train, dev and the test pairs' second sentences, deduplicated);
queries: the test pairs' first sentences that are not in the corpus. The corpus is extracted (mean pooling,
normalized) as float32, int8 (ranges fitted on the float corpus), binary and ubinary, npy shards. For each, every
query is searched at once (``ex.search(queries, k)``, query vectors embedded once beforehand), with and without
rescoring, at several rescore multipliers; recall@k is the share of the float search's top k found. Memory:
tracemalloc's peak during a float search (1 query and all queries) against the size of the corpus matrix and of a
shard; the process's peak RSS is printed too.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import tempfile
import time
import tracemalloc

import numpy as np

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "stsb")


def corpus_and_queries():
    corpus, queries = [], []
    for name in ("stsb-en-train.csv", "stsb-en-dev.csv", "stsb-en-test.csv"):
        with open(os.path.join(DATA, name), encoding="utf-8") as f:
            for row in csv.reader(f):
                if name.endswith("test.csv"):
                    queries.append(row[0].strip())
                    corpus.append(row[1].strip())
                else:
                    corpus += [row[0].strip(), row[1].strip()]
    corpus = list(dict.fromkeys(t for t in corpus if t))
    seen = set(corpus)
    queries = list(dict.fromkeys(q for q in queries if q and q not in seen))
    return corpus, queries


def recall(got, want):
    return float(np.mean([len({h.row for h in g} & {h.row for h in w}) / len(w) for g, w in zip(got, want)]))


def timed(ex, q, k, **kw):
    best, res = float("inf"), None
    for _ in range(3):
        t = time.perf_counter()
        res = ex.search(q, k, **kw)
        best = min(best, time.perf_counter() - t)
    return res, best


def traced_peak(ex, q, k):
    tracemalloc.start()
    tracemalloc.reset_peak()
    ex.search(q, k)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main():
    import hubembed
    from hubembed import quantize

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--shard-size", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    corpus, queries = corpus_and_queries()
    tmp = tempfile.mkdtemp(prefix="bench-search-")
    src = os.path.join(tmp, "corpus.txt")
    with open(src, "w", encoding="utf-8") as f:
        f.write("\n".join(corpus) + "\n")
    enc = hubembed.load(args.model)
    common = dict(encoder=enc, shard_size=args.shard_size, normalize=True, quiet=True, keep_text=True)
    hubembed.extract(src, os.path.join(tmp, "float32"), **common)
    ex = hubembed.open_extraction(os.path.join(tmp, "float32"))
    ranges = quantize.Ranges.fit(ex.vectors())
    ranges.save(os.path.join(tmp, "r.npz"))
    for p in ("int8", "binary", "ubinary"):
        extra = {"ranges": os.path.join(tmp, "r.npz")} if p == "int8" else {}
        hubembed.extract(src, os.path.join(tmp, p), precision=p, **common, **extra)
    q = ex.embed(queries)
    k = args.k
    print(
        f"corpus {len(corpus)} sentences ({len(ex.shards)} shards of {args.shard_size}), {len(queries)} queries, k={k}"
    )
    want, t_float = timed(ex, q, k)
    print(f"| float32 | exact | 1.000 | {t_float * 1000:.0f} ms |")
    for p in ("int8", "binary", "ubinary"):
        exq = hubembed.open_extraction(os.path.join(tmp, p))
        kw = {"ranges": ranges} if p == "int8" else {}
        got, t = timed(exq, q, k, rescore=False, **kw)
        print(f"| {p} | codes only | {recall(got, want):.3f} | {t * 1000:.0f} ms |")
        for m in (1, 2, 4, 10, 100):
            got, t = timed(exq, q, k, rescore_multiplier=m, **kw)
            print(f"| {p} | rescored, {m} x k | {recall(got, want):.3f} | {t * 1000:.0f} ms |")
    matrix = ex.vectors().nbytes
    shard = matrix // len(ex.shards)
    for n in (1, len(q)):
        peak = traced_peak(ex, q[:n], k)
        print(
            f"traced peak, {n} queries: {peak / 1e6:.2f} MB (corpus matrix {matrix / 1e6:.1f} MB, a shard "
            f"{shard / 1e6:.2f} MB)"
        )
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
