"""Retrieval metrics (recall@k, MRR@k) of hubembed's search equal sentence-transformers' InformationRetrievalEvaluator:
the computation on the same hit lists, and the whole path (extraction, ``ex.search``, metrics) on 200 STS-B pairs
(``benchmarks/bench_retrieval.py`` runs it on whole splits; ``docs/retrieval.md``)."""

import importlib.util
import os

import numpy as np
import pytest

from hubembed._corpus.metrics import retrieval_metrics
from hubembed._corpus.search import Hit
from hubembed.errors import InputError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "bench_retrieval.py")


def _bench():
    spec = importlib.util.spec_from_file_location("bench_retrieval", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _evaluator(n_queries, n_corpus, relevant):
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    return InformationRetrievalEvaluator(
        {f"q{i}": f"query {i}" for i in range(n_queries)},
        {f"{r:06d}": f"doc {r}" for r in range(n_corpus)},
        {f"q{i}": {f"{r:06d}" for r in rel} for i, rel in enumerate(relevant)},
        mrr_at_k=[1, 5, 10],
        precision_recall_at_k=[1, 3, 10],
        accuracy_at_k=[1],
        ndcg_at_k=[10],
        map_at_k=[10],
        write_csv=False,
    )


@pytest.mark.slow  # imports sentence-transformers (torch): seconds
def test_same_hits_same_metrics_as_the_evaluator():
    rng = np.random.default_rng(0)
    n_queries, n_corpus = 300, 60
    relevant = [set(rng.choice(n_corpus, size=rng.integers(1, 4), replace=False).tolist()) for _ in range(n_queries)]
    hits, listed = [], []
    for _ in range(n_queries):
        rows = rng.permutation(n_corpus)[:10]
        scores = np.sort(rng.random(10))[::-1]
        hits.append([Hit(j + 1, int(r), str(r), float(s)) for j, (r, s) in enumerate(zip(rows, scores))])
        listed.append([{"corpus_id": f"{r:06d}", "score": float(s)} for r, s in zip(rows, scores)])
    ref = _evaluator(n_queries, n_corpus, relevant).compute_metrics(listed)
    ours = retrieval_metrics(hits, relevant, recall_at=(1, 3, 10), mrr_at=(1, 5, 10))
    for k in (1, 3, 10):
        assert ours[f"recall@{k}"] == pytest.approx(ref["recall@k"][k], abs=1e-12)
    for k in (1, 5, 10):
        assert ours[f"mrr@{k}"] == pytest.approx(ref["mrr@k"][k], abs=1e-12)
    by_id = retrieval_metrics(hits, [{str(r) for r in rel} for rel in relevant], by="id")
    assert by_id == retrieval_metrics(hits, relevant)


def test_plain_rows_and_refusals():
    assert retrieval_metrics([[3, 1, 2], [5]], [{1}, {7}]) == {"recall@1": 0.0, "recall@10": 0.5, "mrr@10": 0.25}
    for results, relevant, kw in (
        ([[1]], [{1}, {2}], {}),
        ([], [], {}),
        ([[1]], [set()], {}),
        ([[1]], [{1}], {"recall_at": (0,)}),
        ([[1]], [{1}], {"by": "text"}),
    ):
        with pytest.raises(InputError):
            retrieval_metrics(results, relevant, **kw)


@pytest.mark.slow
def test_search_on_stsb_equals_the_evaluator(minilm, minilm_source, tmp_path):
    """200 STS-B test pairs: hubembed (extract keep_text, ex.search, metrics) = InformationRetrievalEvaluator."""
    from sentence_transformers import SentenceTransformer

    bench = _bench()
    corpus, queries, relevant = bench.stsb_task("test", limit=200)
    assert len(queries) >= 30 and len(corpus) >= 150  # 39 queries, 182 distinct second sentences
    ours, our_top = bench.hubembed_metrics(minilm, corpus, queries, relevant, str(tmp_path))
    st = SentenceTransformer(minilm_source, device="cpu")
    ref, ref_top = bench.reference_metrics(st, corpus, queries, relevant, str(tmp_path))
    for m in ("recall@1", "recall@10", "mrr@10"):
        assert ours[m] == pytest.approx(ref[m], abs=1e-4)
    assert sum(a == b for a, b in zip(our_top, ref_top)) >= len(queries) - 1  # a near-tie may swap, no more
