"""Retrieval metrics of search results against known relevant rows: recall@k and MRR@k, as sentence-transformers'
``InformationRetrievalEvaluator`` computes them (``benchmarks/bench_retrieval.py``, ``docs/retrieval.md``).

>>> found = ex.search(queries, k=10)                                         # doctest: +SKIP
>>> retrieval_metrics(found, [{12}, {40, 41}])                              # doctest: +SKIP
{'recall@1': 0.5, 'recall@10': 1.0, 'mrr@10': 0.75}

Per query, best first: recall@k = (relevant rows among the first k hits) / (relevant rows); MRR@k = 1 / rank of the
first relevant hit within the first k (0 if none). Each is the mean over the queries. Hits are taken in the order
given (``ex.search`` ranks by score, equal scores in row order).
"""

from __future__ import annotations

from typing import Any, Collection, Dict, Iterable, List, Sequence

from hubembed.errors import InputError


def _key(hit: Any, by: str) -> Any:
    if isinstance(hit, (int, str)):
        return hit
    return getattr(hit, by)


def _positive_ks(name: str, ks: Iterable[int]) -> List[int]:
    out = [int(k) for k in ks]
    if any(k < 1 for k in out):
        raise InputError(f"{name}={out}: every k must be >= 1")
    return out


def retrieval_metrics(
    results: Sequence[Sequence[Any]],
    relevant: Sequence[Collection[Any]],
    *,
    recall_at: Iterable[int] = (1, 10),
    mrr_at: Iterable[int] = (10,),
    by: str = "row",
) -> Dict[str, float]:
    """recall@k and MRR@k of ranked hits, averaged over the queries.

    Args:
        results: per query, the hits best first: ``ex.search``'s ``Results`` (``Hit`` objects), or plain row numbers
            or ids.
        relevant: per query (same order), the relevant rows (``by="row"``) or ids (``by="id"``); never empty.
        recall_at, mrr_at: the cut-offs.
        by: which field of a ``Hit`` is compared with ``relevant``: "row" (0-based position) or "id".

    Returns:
        ``{"recall@1": ..., "recall@10": ..., "mrr@10": ...}`` (one key per cut-off).

    Raises:
        InputError: results and relevant of different lengths, an empty relevant set, a cut-off < 1, no queries.
    """
    if by not in ("row", "id"):
        raise InputError(f"by={by!r}; valid: row, id")
    if len(results) != len(relevant):
        raise InputError(f"{len(results)} result lists for {len(relevant)} relevant sets: one each per query")
    if not len(results):
        raise InputError("no queries: retrieval metrics need at least one")
    r_ks, m_ks = _positive_ks("recall_at", recall_at), _positive_ks("mrr_at", mrr_at)
    recall = {k: 0.0 for k in r_ks}
    mrr = {k: 0.0 for k in m_ks}
    for i, (hits, rel) in enumerate(zip(results, relevant)):
        wanted = set(rel)
        if not wanted:
            raise InputError(f"query {i} has no relevant rows: recall is undefined for it")
        found = [_key(h, by) in wanted for h in hits]
        for k in r_ks:
            recall[k] += sum(found[:k]) / len(wanted)
        for k in m_ks:
            first = next((j for j, f in enumerate(found[:k]) if f), None)
            mrr[k] += 0.0 if first is None else 1.0 / (first + 1)
    n = len(results)
    out = {f"recall@{k}": v / n for k, v in recall.items()}
    out.update({f"mrr@{k}": v / n for k, v in mrr.items()})
    return out
