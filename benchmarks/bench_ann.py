"""Approximate nearest-neighbour indexes against exact search, on token vectors of a real extraction.

    hubembed extract corpus.txt -o /tmp/ann_tokens --tokens --quantize int8 --format parquet
    python benchmarks/bench_ann.py /tmp/ann_tokens [--queries 1000] [--k 10]

The token vectors of every parquet shard are flattened into one float32 matrix and L2-normalized (cosine = dot).
``--queries`` rows (seeded sample) are held out as queries; the rest is the corpus. Exact search: a blocked
numpy matrix product + argpartition (what ``ex.search`` does for float shards). Each index is built on the corpus
(build time, serialized size), then searched with all queries at once at several search-time settings: recall@k is
the share of the exact top k found; speed-up is exact time / index time (same queries, same threads).
Libraries: faiss-cpu (IndexHNSWFlat, IndexIVFFlat), hnswlib; whichever is installed.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import tempfile
import time

import numpy as np


def load_vectors(folder: str) -> np.ndarray:
    import pyarrow.parquet as pq

    parts = []
    for path in sorted(glob.glob(os.path.join(folder, "*.parquet"))):
        col = pq.read_table(path, columns=["vectors"]).column("vectors").combine_chunks()
        flat = col.flatten().flatten()  # texts -> rows -> floats
        parts.append(np.asarray(flat.to_numpy(zero_copy_only=False), np.float32).reshape(-1, 384))
    X = np.concatenate(parts)
    X /= np.linalg.norm(X, axis=1, keepdims=True) + 1e-12
    return X


def exact(X: np.ndarray, Q: np.ndarray, k: int, block: int = 65536) -> np.ndarray:
    best_s = np.full((len(Q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(Q), 0), np.int64)
    for start in range(0, len(X), block):
        s = Q @ X[start : start + block].T
        top = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        best_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1)
        best_i = np.concatenate([best_i, top + start], 1)
        keep = np.argpartition(-best_s, min(k, best_s.shape[1] - 1), axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    order = np.argsort(-best_s, axis=1)
    return np.take_along_axis(best_i, order, 1)


def recall(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want)]))


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def faiss_hnsw(X, Q, k, truth, t_exact, M=32, ef_construction=80):
    import faiss

    index = faiss.IndexHNSWFlat(X.shape[1], M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    _, t_build = timed(lambda: index.add(X))
    size = len(faiss.serialize_index(index))
    print(f"faiss HNSWFlat M={M} efConstruction={ef_construction}: build {t_build:.1f} s, {size / 2**20:.0f} MB")
    for ef in (16, 32, 64, 128, 256):
        index.hnsw.efSearch = ef
        (_, got), t = timed(lambda: index.search(Q, k))
        print(f"  efSearch={ef}: recall@{k} {recall(got, truth):.4f}, {t:.3f} s, {t_exact / t:.0f}x faster", flush=True)


def faiss_ivf(X, Q, k, truth, t_exact, nlist=2048):
    import faiss

    quant = faiss.IndexFlatIP(X.shape[1])
    index = faiss.IndexIVFFlat(quant, X.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    sample = X[rng.choice(len(X), size=min(len(X), 100 * nlist), replace=False)]
    _, t_train = timed(lambda: index.train(sample))
    _, t_add = timed(lambda: index.add(X))
    size = len(faiss.serialize_index(index))
    print(f"faiss IVFFlat nlist={nlist}: train {t_train:.1f} s + add {t_add:.1f} s, {size / 2**20:.0f} MB")
    for nprobe in (8, 16, 32, 64, 128):
        index.nprobe = nprobe
        (_, got), t = timed(lambda: index.search(Q, k))
        print(
            f"  nprobe={nprobe}: recall@{k} {recall(got, truth):.4f}, {t:.3f} s, {t_exact / t:.0f}x faster", flush=True
        )


def hnswlib_index(X, Q, k, truth, t_exact, M=32, ef_construction=80):
    import hnswlib

    index = hnswlib.Index(space="ip", dim=X.shape[1])
    index.init_index(max_elements=len(X), M=M, ef_construction=ef_construction, random_seed=0)
    _, t_build = timed(lambda: index.add_items(X, num_threads=os.cpu_count()))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index.bin")
        index.save_index(path)
        size = os.path.getsize(path)
    print(f"hnswlib M={M} ef_construction={ef_construction}: build {t_build:.1f} s, {size / 2**20:.0f} MB")
    for ef in (16, 32, 64, 128, 256):
        index.set_ef(max(ef, k))
        (got, _), t = timed(lambda: index.knn_query(Q, k=k, num_threads=os.cpu_count()))
        print(f"  ef={ef}: recall@{k} {recall(got, truth):.4f}, {t:.3f} s, {t_exact / t:.0f}x faster", flush=True)


def machine() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        avx = sorted(set(re.findall(r"avx512[a-z0-9_]*", f.read())))
    with open("/proc/loadavg", encoding="utf-8") as f:
        load = " ".join(f.read().split()[:3])
    return f"{os.cpu_count()} cores; {' '.join(avx) or 'no avx512'}; load average {load}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--only", nargs="*", default=["faiss-ivf", "faiss-hnsw", "hnswlib"])
    args = ap.parse_args()
    (X), t_load = timed(lambda: load_vectors(args.folder))
    rng = np.random.default_rng(0)
    held = np.zeros(len(X), bool)
    held[rng.choice(len(X), size=args.queries, replace=False)] = True
    Q, X = X[held], np.ascontiguousarray(X[~held])
    print(f"{len(X)} corpus vectors x {X.shape[1]} ({X.nbytes / 2**20:.0f} MB), {len(Q)} queries; read {t_load:.1f} s")
    truth, t_exact = timed(lambda: exact(X, Q, args.k))
    print(f"exact (numpy, blocked): {t_exact:.2f} s for {len(Q)} queries", flush=True)
    runs = {"faiss-ivf": faiss_ivf, "faiss-hnsw": faiss_hnsw, "hnswlib": hnswlib_index}
    for name in args.only:
        runs[name](X, Q, args.k, truth, t_exact)
    print(machine())


if __name__ == "__main__":
    main()
