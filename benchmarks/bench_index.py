"""hubembed's approximate index (``Extraction.build_index``, FAISS HNSW) against its exact search, on word vectors
of every text in ../shared/data.

    python benchmarks/bench_index.py [--work /tmp/bench_index] [--queries 1000] [--k 10]

The corpus: every distinct sentence of SST-2 (train, dev, test) and STS-B (all splits) but 300 held out, each
twice: as it is and after "query: " (the same words in another context: other vectors). That is the only way to
reach 500,000 real vectors with the data here (one copy gives about 340,000 words; SST-2's train split here has
6,920 sentences, not GLUE's 67,349). ``hubembed.extract(..., level="words", format="parquet")`` with minilm
(reused when the folder is complete). Queries: ``--queries`` word vectors (seeded sample) of the 300 held-out texts,
embedded as the corpus was (``ex.embed(texts)``): vectors the corpus does not hold.

Measured, each in this process: the exact search (``ex.search(q, k, exact=True)``: every shard read and scanned),
the index's build (time, file size), its first load, and searches through it at several ``ef_search`` (best of 2):
recall@k is the share of the exact top k (row, position) found; speed-up is exact time / index time, both whole
``ex.search`` calls (ids, texts and words of the hits included). Prints the CPU flags and the load.
"""

from __future__ import annotations

import argparse
import csv
import os
import time

import numpy as np

import hubembed
from hubembed._corpus import index as ann

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def texts() -> list:
    out = []
    for split in ("train", "dev", "test"):
        with open(os.path.join(DATA, "sst2", f"{split}.tsv"), encoding="utf-8") as f:
            out += [line.rsplit("\t", 1)[0] for line in f if line.strip()]
        with open(os.path.join(DATA, "stsb", f"stsb-en-{split}.csv"), encoding="utf-8") as f:
            out += [s for row in csv.reader(f) for s in row[:2]]
    return [t for t in dict.fromkeys(t.strip() for t in out) if t]


def cpu() -> str:
    flags = open("/proc/cpuinfo").read().split("flags")[1].split("\n")[0]
    has = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16") if f" {f}" in flags]
    return f"{os.cpu_count()} cores, {' '.join(has)}; load {os.getloadavg()[0]:.2f}"


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def extraction(work: str, held: int, seed: int):
    all_texts = texts()
    order = np.random.default_rng(seed).permutation(len(all_texts))
    queries = [all_texts[i] for i in order[:held]]
    corpus = [all_texts[i] for i in sorted(order[held:])]
    path = os.path.join(work, "corpus.txt")
    os.makedirs(work, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(corpus + ["query: " + t for t in corpus]) + "\n")
    out = os.path.join(work, "words")
    done = os.path.exists(os.path.join(out, "manifest.json")) and hubembed.open_extraction(out).complete
    if not done:
        _, t = timed(lambda: hubembed.extract(path, out, level="words", format="parquet", resume=os.path.exists(out)))
        print(f"extracted {2 * len(corpus)} texts at word level in {t:.0f} s")
    return hubembed.open_extraction(out), queries


def recall(got, want) -> float:
    return float(np.mean([len({(h.row, h.position) for h in g} & {(h.row, h.position) for h in w}) / len(w)
                          for g, w in zip(got, want)]))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/bench_index")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(cpu())
    ex, held = extraction(a.work, 300, a.seed)
    words = ex.embed(held)  # WordEmbeddings, made as the corpus's rows were
    pool = np.concatenate([w.vectors for w in words])
    q = pool[np.random.default_rng(a.seed).choice(len(pool), min(a.queries, len(pool)), replace=False)]
    record = ex.manifest.get("index")
    n = record["vectors"] if record else "?"
    print(
        f"{len(ex)} texts, {n} word vectors of {q.shape[1]} dims; {len(q)} query words from {len(held)} held-out texts"
    )
    want, t_exact = timed(lambda: ex.search(q, a.k, exact=True))
    _, t_exact2 = timed(lambda: ex.search(q, a.k, exact=True))
    print(f"exact search (every shard read and scanned): first {t_exact:.1f} s, second {t_exact2:.1f} s", flush=True)
    t_exact = min(t_exact, t_exact2)
    record = ex.build_index(overwrite=True, progress=False)
    print(
        f"index: faiss {record['kind']} {record['params']} over {record['vectors']} vectors: built in "
        f"{record['build_seconds']:.0f} s, {record['bytes'] / 2**20:.0f} MB on disk (load {os.getloadavg()[0]:.2f})"
    )
    ann._LOADED.clear()
    _, t_load = timed(lambda: ann.load(ex, record))
    print(f"first load of the index (sha256 check, FAISS read): {t_load:.1f} s; then it stays in the process")
    for ef in (16, 32, 64, 128, 256):
        runs = [timed(lambda: ex.search(q, a.k, ef_search=ef)) for _ in range(2)]
        got, t = runs[0][0], min(r[1] for r in runs)
        print(
            f"  ef_search {ef:>3}: recall@{a.k} {recall(got, want):.4f}, {t:.2f} s, {t_exact / t:.1f}x faster",
            flush=True,
        )
    print(f"load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
