"""Exact search over a stored extraction (``Extraction.search``, ``hubembed search``): the ``k`` rows nearest each
query.

>>> ex = hubembed.open_extraction("out/")                                   # doctest: +SKIP
>>> for hit in ex.search(["a film about cats"], k=5)[0]:                    # doctest: +SKIP
...     print(hit.rank, hit.score, hit.id, hit.text)

Queries are texts (embedded as the corpus was, with ``Extraction.embed``: the manifest's model, or ``encoder=``) or
float vectors ``[Q, D]`` (``[D]``: one query). The corpus is read shard after shard, in blocks of rows (a memory-mapped
npy shard a block at a time; a parquet or tfrecord shard whole), and a running top list per query is kept
(``np.argpartition`` per block, merged with the list): memory is one shard (or block) plus a few candidates per query,
whatever the corpus size. Nothing is written.

Scores (``metric``): ``cosine`` (default), or ``dot`` (the default when the vectors were extracted with
``normalize=True``, where it equals cosine). Codes (``precision=``):

    int8 / uint8      the query is quantized with the same calibration ranges (``ranges=``, checked against the
                      manifest's sha256) and scored against the codes as they are (signed: uint8 minus 128, which is
                      what int8 stores); then the ``rescore_multiplier * k`` best are rescored with the float query
                      against the codes' bucket middles (``quantize.dequantize``)
    binary / ubinary  Hamming distance of the query's signs to the stored bits (score: 1 - 2 * hamming / D, the
                      cosine of the +-1 vectors); then the ``rescore_multiplier * k`` best are rescored with the float
                      query against the stored signs (+-1), as sentence-transformers' ``semantic_search_faiss``

``rescore=False`` returns the first stage's order and scores. Rows with equal scores come in row order (the selection
at a block's boundary among equal scores is arbitrary). ``k`` larger than the corpus returns every row, ranked.

Token and word levels: every stored vector (a word piece or a word of a text) is a candidate; a hit also names its
``position`` in the text and its ``piece``. Queries are then vectors (``ex[3].vectors[2]``,
``ex.embed(texts)[0].vectors``): a text has no one token vector to search with.

An approximate index (``Extraction.build_index``, ``hubembed index``; ``hubembed._corpus.index``) saved in the folder
is used when present (``exact=True`` scans instead); an index that no longer matches the shards is refused, never
used.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from hubembed._corpus import shards as shard_formats
from hubembed._corpus.store import Extraction, check_complete, read_manifest, shard_texts
from hubembed._pipeline import quantize
from hubembed._pipeline.transform import TransformLike
from hubembed._util import sha256_file
from hubembed.encoder import Encoder
from hubembed.errors import InputError, OutputError

METRICS = ("cosine", "dot")
BLOCK_ELEMENTS = 1 << 20  # at most: floats per block of converted vectors, and scores per block (4 MB each)
CODES = ("int8", "uint8", "binary", "ubinary")
INDEX_SHOWN = ("library", "kind", "params", "vectors")  # what Results.to_dict says of an index used


@dataclass(frozen=True)
class Hit:
    """One result: its rank (1 = best), the row (0-based position in the extraction), its id, the score and the
    stored text (None: extracted without ``keep_text``)."""

    rank: int
    row: int
    id: str
    score: float
    text: Optional[str] = None
    position: Optional[int] = None  # token/word level: the piece's position in its text
    piece: Optional[str] = None  # token/word level: the word piece or word

    def to_dict(self) -> Dict[str, Any]:
        """Its fields (``position`` and ``piece`` at token/word level only)."""
        d = asdict(self)
        return d if self.position is not None else {k: v for k, v in d.items() if k not in ("position", "piece")}


class Results(List[List[Hit]]):
    """The hits of each query, best first (a list per query, in the queries' order); ``queries``: the query texts
    (None for vectors); ``metric``, ``precision``, ``rescored``: how they were scored; ``index_record``: the approximate
    index used (its manifest record), None for an exact scan."""

    def __init__(
        self,
        hits: Sequence[List[Hit]],
        queries: Optional[List[str]],
        metric: str,
        precision: str,
        rescored: bool,
        index: Optional[dict] = None,
        ef_search: Optional[int] = None,
    ) -> None:
        super().__init__(hits)
        self.queries, self.metric, self.precision, self.rescored = queries, metric, precision, rescored
        self.index_record, self.ef_search = index, ef_search

    def to_dict(self) -> Dict[str, Any]:
        """JSON-able: ``{"metric", "precision", "rescored", "index", "results": [{"query", "hits": [...]}]}``."""
        queries: Sequence[Optional[str]] = self.queries or [None] * len(self)
        return {
            "metric": self.metric,
            "precision": self.precision,
            "rescored": self.rescored,
            "index": None
            if self.index_record is None
            else {**{k: self.index_record[k] for k in INDEX_SHOWN}, "ef_search": self.ef_search},
            "results": [{"query": q, "hits": [h.to_dict() for h in hits]} for q, hits in zip(queries, self)],
        }


@dataclass
class Plan:
    """How one search scores: the metric, the stored precision and ranges, the float width ``dim`` of a query, the
    stored width of a row, and the candidates kept per query (``keep``: k, or k * rescore_multiplier)."""

    metric: str
    precision: str
    dim: int
    width: int
    k: int
    keep: int
    rescore: bool
    ranges: Optional[quantize.Ranges] = None


# -- checks, before anything slow -----------------------------------------------------------------------------------
def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name}={value!r}; valid: an integer >= 1")
    return int(value)


def check_extraction(ex: Extraction, verify: bool) -> None:
    """A searchable extraction: finished, unchanged since it was opened, every shard file there (and, with
    ``verify``, matching its checksum).

    Raises:
        InputError: an unfinished extraction.
        OutputError: the folder changed (its manifest, a missing shard file, a checksum).
    """
    if not isinstance(ex, Extraction):
        raise InputError(f"search: an Extraction (hubembed.open_extraction(out)), not {type(ex).__name__}")
    check_complete(ex, "searching or indexing it")
    if read_manifest(ex.out) != ex.manifest:
        raise OutputError(f"{ex.out} changed since it was opened (its manifest differs): open it again")
    for s in ex.shards:
        for key in s["sha256"]:
            path = os.path.join(ex.out, s[key])
            if not os.path.exists(path):
                raise OutputError(f"{path} is missing: the extraction is damaged; extract it again")
            if verify and sha256_file(path) != s["sha256"][key]:
                raise OutputError(f"{path} does not match its checksum in the manifest: extract it again")


def _ranges(ex: Extraction, precision: str, ranges: Optional[quantize.RangesLike]) -> Optional[quantize.Ranges]:
    if precision not in quantize.CALIBRATED:
        if ranges is not None:
            raise InputError(f"ranges= is for int8/uint8 extractions; {ex.out} holds {precision} vectors")
        return None
    if ranges is None:
        raise InputError(
            f"{ex.out} holds {precision} codes: give the calibration ranges it was quantized with, ranges= (a "
            f"hubembed.quantize.Ranges or its saved .npz; --ranges): queries are quantized and rescored with them"
        )
    r = quantize.Ranges.of(ranges)
    recorded = (ex.record.get("ranges") or {}).get("sha256")
    if r.sha256 != recorded:
        raise InputError(
            f"ranges (sha256 {r.sha256[:16]}...) are not the ones {ex.out} was quantized with ({str(recorded)[:16]}...)"
        )
    return r


def _stored_width(ex: Extraction) -> int:
    """The stored width of a vector: an npy shard's header (a combine="none" layer axis flattened), else the
    record (bytes for binary codes)."""
    if ex.format == "npy" and ex.shards:
        first = np.load(os.path.join(ex.out, ex.shards[0]["file"]), mmap_mode="r")  # the header only
        return int(np.prod(first.shape[1:]))
    return int(ex.record["dim"])


def plan(ex: Extraction, k: Any, metric: Optional[str], rescore: Any, multiplier: Any, ranges: Any) -> Plan:
    """The checked arguments of a search (``k``, ``metric``, ``rescore``, ``rescore_multiplier``, ``ranges``)."""
    k = _positive("k", k)
    multiplier = _positive("rescore_multiplier", multiplier)
    if not isinstance(rescore, bool):
        raise InputError(f"rescore={rescore!r}; valid: True or False")
    if metric is None:
        metric = "dot" if ex.record.get("normalize") else "cosine"
    if metric not in METRICS:
        raise InputError(f"metric={metric!r}; valid: {', '.join(METRICS)} (None: dot for normalized vectors)")
    precision = ex.record.get("precision", "float32")
    width = _stored_width(ex)
    r = _ranges(ex, precision, ranges)
    dim = width if precision not in ("binary", "ubinary") else 8 * width  # a binary query's width: checked later
    rescore = rescore and precision in CODES
    return Plan(metric, precision, dim, width, k, k * multiplier if rescore else k, rescore, r)


def _check_dim(p: Plan, q: np.ndarray, ex: Extraction) -> None:
    binary = p.precision in ("binary", "ubinary")
    if q.ndim != 2 or (q.shape[1] != p.dim if not binary else (q.shape[1] + 7) // 8 != p.width):
        want = f"{8 * p.width - 7}..{8 * p.width}" if binary else str(p.dim)
        raise InputError(
            f"queries of shape {q.shape[1:] if q.ndim == 2 else q.shape}: {ex.out}'s vectors have {want} dimensions "
            f"({p.precision}); give [Q, D] float vectors (or texts, embedded as the corpus was)"
        )
    if binary:
        p.dim = int(q.shape[1])


def query_vectors(queries: Any) -> Tuple[Optional[np.ndarray], Optional[List[str]]]:
    """(float vectors [Q, D], None) or (None, texts to embed): the queries as given, checked."""
    if isinstance(queries, str):
        queries = [queries]
    if isinstance(queries, np.ndarray) and queries.dtype.kind in "fiu":
        q = queries.astype(np.float32).reshape(1, -1) if queries.ndim == 1 else queries.astype(np.float32)
        if not np.all(np.isfinite(q)):
            raise InputError("queries: vectors with NaN or infinite values")
        return q, None
    if isinstance(queries, (list, tuple)) and all(isinstance(t, str) for t in queries):
        return None, list(queries)
    raise InputError(
        f"queries: a text, a list of texts, or float vectors [Q, D] (a numpy array), not {type(queries).__name__}"
    )


def _embed(ex: Extraction, texts: List[str], options: Dict[str, Any]) -> np.ndarray:
    """The query texts embedded as the corpus was (``ex.embed``, float32: codes are rescored with them)."""
    if not texts:
        return np.zeros((0, 0), np.float32)
    v = ex.embed(texts, precision="float32", **options)
    return np.asarray(v, np.float32).reshape(len(texts), -1)


# -- scoring ---------------------------------------------------------------------------------------------------------
def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero: its cosine is 0, as sentence-transformers' cos_sim)."""
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def _signs(codes: np.ndarray, precision: str, dim: int) -> np.ndarray:
    """Packed bits [n, W] -> +-1 float32 [n, dim] (binary is stored minus 128)."""
    u = (codes.astype(np.int16) + 128).astype(np.uint8) if precision == "binary" else codes.astype(np.uint8)
    return np.unpackbits(u, axis=-1)[..., :dim].astype(np.float32) * 2 - 1


def first_stage_query(p: Plan, q: np.ndarray) -> np.ndarray:
    """What the corpus's blocks are scored against: the float query (normalized for cosine), its signed codes
    (int8/uint8), or its signs (binary)."""
    if p.precision in ("binary", "ubinary"):
        return np.where(q > 0, 1.0, -1.0).astype(np.float32)
    if p.precision in quantize.CALIBRATED:
        q = quantize.quantize(q, "int8", p.ranges).astype(np.float32)
    return _unit(q) if p.metric == "cosine" else q


def first_stage(p: Plan, fq: np.ndarray, block: np.ndarray) -> np.ndarray:
    """Scores [Q, n] of a block of stored rows [n, W]: the metric on floats or signed codes; binary: 1 - 2h/D."""
    if p.precision in ("binary", "ubinary"):
        return fq @ _signs(block, p.precision, p.dim).T / p.dim
    x = np.asarray(block, np.float32)  # float32 rows as they are (a memory-mapped block is read in place)
    if p.precision == "uint8":
        x = x - 128  # the int8 codes of the same buckets
    scores = fq @ x.T
    if p.metric == "cosine":  # the rows' lengths divided out: no normalized copy of the block
        scores /= np.maximum(np.sqrt(np.einsum("ij,ij->i", x, x)), 1e-12)
    return scores


def _rows_as_floats(p: Plan, codes: np.ndarray) -> np.ndarray:
    """Stored rows [n, W] -> what the float query is rescored against [n, D]: bucket middles or +-1 signs."""
    if p.precision in quantize.CALIBRATED:
        return quantize.dequantize(codes, p.precision, p.ranges)
    return _signs(codes, p.precision, p.dim)


# -- the scan --------------------------------------------------------------------------------------------------------
@dataclass
class Best:
    """The running top ``keep`` of each query: scores and rows (as wide as the rows seen so far, at most ``keep``:
    a k larger than the corpus costs the corpus, not k)."""

    scores: np.ndarray  # [Q, <= keep] float32, -inf where empty
    rows: np.ndarray  # [Q, <= keep] int64, -1 where empty
    keep: int = 0

    @classmethod
    def empty(cls, n: int, keep: int) -> "Best":
        return cls(np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64), keep)

    def merge(self, scores: np.ndarray, first_row: int) -> None:
        """Add a block's scores [Q, n] (rows first_row..first_row + n - 1)."""
        keep = self.keep
        local = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        if scores.shape[1] > keep:
            local = np.argpartition(scores, scores.shape[1] - keep, axis=1)[:, -keep:]
            scores = np.take_along_axis(scores, local, axis=1)
        all_scores = np.concatenate([self.scores, scores], axis=1)
        all_rows = np.concatenate([self.rows, local + first_row], axis=1)
        if all_scores.shape[1] > keep:
            top = np.argpartition(all_scores, all_scores.shape[1] - keep, axis=1)[:, -keep:]
            all_scores = np.take_along_axis(all_scores, top, axis=1)
            all_rows = np.take_along_axis(all_rows, top, axis=1)
        self.scores, self.rows = all_scores, all_rows

    def ranked(self, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """(rows, scores) [Q, <= k], best first, equal scores in row order, empty places dropped."""
        order = np.lexsort((self.rows, -self.scores.astype(np.float64)), axis=1)[:, :k]
        rows, scores = np.take_along_axis(self.rows, order, axis=1), np.take_along_axis(self.scores, order, axis=1)
        n = int((rows >= 0).sum(axis=1).max()) if rows.size else 0  # empty places (-1) come last
        return rows[:, :n], scores[:, :n]


def _block_rows(p: Plan, n_queries: int) -> int:
    return max(1, BLOCK_ELEMENTS // max(n_queries, p.dim, 1))


def _shard_vectors(ex: Extraction, s: dict, p: Plan) -> np.ndarray:
    """One shard's stored vectors [n, W] (npy: memory-mapped; token/word level: every text's vectors in a row).

    Raises:
        OutputError: a shard whose rows or width differ from the manifest's (changed since it was written).
    """
    path = os.path.join(ex.out, s["file"])
    rows, stored = shard_formats.read_vectors(ex.format, ex.level, path)
    stored = stored.reshape(len(stored), -1) if len(stored) else stored.reshape(0, p.width)
    if rows != int(s["rows"]) or stored.shape[1] != p.width:
        raise OutputError(
            f"{path} holds {rows} rows of width {stored.shape[1]}, the manifest {s['rows']} of width {p.width}: the "
            f"extraction changed since it was written; extract it again"
        )
    return stored


def stored_shards(ex: Extraction, p: Plan) -> Iterator[Tuple[int, np.ndarray]]:
    """(first vector, stored vectors [n, W]) of every shard, one shard at a time: a vector per row at sentence
    level, per word piece or word at the token and word levels (numbered across the extraction, in row order)."""
    first = 0
    for s in ex.shards:
        stored = _shard_vectors(ex, s, p)
        yield first, stored
        first += len(stored)
        del stored
        shard_formats.release(ex.format)


def scan(ex: Extraction, p: Plan, q: np.ndarray) -> Tuple[Best, List[int]]:
    """Every shard, a block of vectors at a time, into the running top list of each query (first stage); and the
    number of vectors of each shard."""
    fq = first_stage_query(p, q)
    best = Best.empty(len(q), p.keep)
    step = _block_rows(p, len(q))
    counts = []
    for first, stored in stored_shards(ex, p):
        for a in range(0, len(stored), step):
            best.merge(first_stage(p, fq, np.asarray(stored[a : a + step])), first + a)
        counts.append(len(stored))
    return best, counts


def rescore_candidates(ex: Extraction, p: Plan, q: np.ndarray, best: Best) -> None:
    """The candidates' scores replaced by the float query's against their stored codes: a second pass over the
    shards that hold candidates, in chunks of (query, candidate) pairs."""
    q = _unit(q) if p.metric == "cosine" else q
    qi, ci = np.nonzero(best.rows >= 0)
    rows = best.rows[qi, ci]
    order = np.argsort(rows, kind="stable")
    qi, ci, rows = qi[order], ci[order], rows[order]
    step = _block_rows(p, 1)
    for first, stored in stored_shards(ex, p):
        a, b = np.searchsorted(rows, [first, first + len(stored)])
        for c in range(a, b, step):
            part = slice(c, min(b, c + step))
            x = _rows_as_floats(p, np.asarray(stored[rows[part] - first]))
            x = _unit(x) if p.metric == "cosine" else x
            best.scores[qi[part], ci[part]] = np.einsum("nd,nd->n", q[qi[part]], x)


# -- ids and texts ---------------------------------------------------------------------------------------------------
Label = Tuple[int, str, Optional[str], Optional[int], Optional[str]]  # row, id, text, position, piece


def _shard_labels(ex: Extraction, i: int, local: np.ndarray) -> List[Label]:
    """(row, id, text, position, piece) of the vectors ``local`` (positions among shard ``i``'s vectors)."""
    s = ex.shards[i]
    first, n = int(s["first_row"]), int(s["rows"])
    if ex.level != "sentence":
        rows, found = shard_formats.pieces_at(ex.format, ex.level, os.path.join(ex.out, s["file"]), local)
        if rows != n:
            raise OutputError(f"{ex.out}: shard {i} does not hold the {n} rows it held; extract it again")
        return [(first + r, rid, text, pos, piece) for r, rid, text, pos, piece in found]
    ids = shard_formats.read_ids(ex.format, os.path.join(ex.out, s.get("ids_file", s["file"])))
    stored = shard_texts(ex, i) if ex.has_text else None
    if len(ids) != n or (stored is not None and len(stored) != n) or (len(local) and local.max() >= n):
        raise OutputError(f"{ex.out}: shard {i}'s ids or texts are not its {n} rows; extract it again")
    return [(first + r, ids[r], None if stored is None else stored[r], None, None) for r in local.tolist()]


def labels(ex: Extraction, found: np.ndarray, counts: Sequence[int]) -> Dict[int, Label]:
    """{vector: (row, id, text, position, piece)} of the vectors ``found`` (numbered as ``stored_shards`` does;
    ``counts``: the vectors of each shard), reading only the shards they are in, one at a time."""
    wanted = np.unique(found[found >= 0])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    which = np.searchsorted(starts, wanted, side="right") - 1
    out: Dict[int, Label] = {}
    for i in np.unique(which).tolist():
        mine = wanted[which == i]
        out.update(zip(mine.tolist(), _shard_labels(ex, i, mine - starts[i])))
    return out


def _found(vectors: List[int]) -> List[int]:
    return [v for v in vectors if v >= 0]  # an index may find fewer than k for a query


def _results(
    ex: Extraction, p: Plan, best: Best, counts: Sequence[int], texts: Any, index: Any, ef: Optional[int]
) -> Results:
    found, scores = best.ranked(p.k)
    named = labels(ex, found, counts)
    hits = [
        [Hit(j + 1, named[v][0], named[v][1], float(s), *named[v][2:]) for j, (v, s) in enumerate(zip(fs, ss))]
        for fs, ss in ((_found(f), s) for f, s in zip(found.tolist(), scores.tolist()))
    ]
    rescored = p.rescore or index is not None and p.precision in CODES
    return Results(hits, texts, p.metric, p.precision, rescored, index, ef)


def search(
    ex: Extraction,
    queries: Any,
    k: int = 10,
    *,
    encoder: Optional[Encoder] = None,
    metric: Optional[str] = None,
    rescore: bool = True,
    rescore_multiplier: int = 4,
    ranges: Optional[quantize.RangesLike] = None,
    transform: TransformLike = None,
    batch_size: Optional[int] = None,
    verify: bool = False,
    exact: bool = False,
    ef_search: Optional[int] = None,
    prompt: Optional[str] = None,
    prompt_name: Optional[str] = None,
) -> Results:
    """The ``k`` vectors of ``ex`` nearest each query: through its index when it has one, else by an exact scan (see
    the module's docstring).

    Args:
        ex: a finished extraction (token/word level: each piece's vector is a candidate).
        queries: a text, texts (sentence level; embedded with ``ex.embed``: ``encoder`` or the manifest's model,
            ``transform``, ``batch_size``), or float vectors [Q, D] / [D].
        k: hits per query (more than the vectors: every one, ranked).
        metric: cosine | dot (default: dot for vectors extracted with normalize=True, where it equals cosine; else
            cosine).
        rescore, rescore_multiplier: codes: rescore the ``rescore_multiplier * k`` best of the first stage with the
            float query (default 4x); no effect on float vectors.
        ranges: int8/uint8 extractions: the calibration ranges they were quantized with.
        verify: check every shard file's sha256 against the manifest first (reads the corpus twice).
        exact: scan the shards even when the folder has an index.
        ef_search: the index's search-time breadth (default: its record's, 64; at least k).
        prompt, prompt_name: the text queries' prompt (default: as ``Extraction.embed`` decides from the manifest:
            the model's "query" prompt for a corpus embedded with a document prompt by name).

    Returns:
        ``Results``: a list per query of ``Hit(rank, row, id, score, text, position, piece)``, best first;
        ``.to_dict()``; ``.index_record``: the index record used (None: exact).

    Raises:
        InputError: k < 1, an unfinished extraction, queries of another dimension, text queries at token/word level,
            missing ranges, an index of another metric.
        OutputError: the extraction changed or is damaged, or its index is stale or not its own (before the scan
            when it shows in the folder).
    """
    from hubembed._corpus import index as ann  # it imports this module

    check_extraction(ex, verify)
    p = plan(ex, k, metric, rescore, rescore_multiplier, ranges)
    if not isinstance(exact, bool):
        raise InputError(f"exact={exact!r}; valid: True or False")
    if ef_search is not None:
        ann.check_int("ef_search", ef_search)
    record = None if exact else ann.usable(ex)
    ef = ann.check_plan(ex, p, record, rescore, ef_search) if record else 0
    if record and p.k >= record["vectors"]:
        record = None  # every vector asked for: the scan gives them all, ranked
    q, texts = query_vectors(queries)
    if texts is not None and ex.level != "sentence":
        raise InputError(
            f"{ex.out} holds {ex.level}-level vectors (one per {ex.level[:-1]} of a text): give query vectors "
            f"(e.g. ex[0].vectors[2], or ex.embed(texts)[0].vectors: the texts' {ex.level} embedded as the rows "
            f"were); a text has no one {ex.level[:-1]} vector"
        )
    if q is None:
        options = dict(encoder=encoder, transform=transform, batch_size=batch_size, prompt=prompt)
        q = _embed(ex, texts or [], {**options, "prompt_name": prompt_name})
    if not len(q):
        return Results([], texts, p.metric, p.precision, p.rescore, record)
    _check_dim(p, q, ex)
    if record:
        best, counts = ann.search(ex, p, q, record, ef)
        _complete_short(ex, p, q, best, min(p.k, record["vectors"]))
    else:
        best, counts = exact_best(ex, p, q)
    return _results(ex, p, best, counts, texts, record, ef or None)


def exact_best(ex: Extraction, p: Plan, q: np.ndarray) -> Tuple[Best, List[int]]:
    """The exact scan's top list of each query (codes: rescored), and the vectors of each shard."""
    best, counts = scan(ex, p, q)
    if p.rescore:
        rescore_candidates(ex, p, q, best)
    return best, counts


def _complete_short(ex: Extraction, p: Plan, q: np.ndarray, best: Best, n: int) -> None:
    """Queries for which the graph found fewer than ``n`` vectors (it cannot reach some, e.g. among many identical
    ones) get the exact scan's top ``n`` instead: an index never returns fewer hits than asked."""
    short = np.nonzero((best.rows >= 0).sum(axis=1) < n)[0]
    if len(short):
        rows, scores = exact_best(ex, p, q[short])[0].ranked(n)
        best.rows[short], best.scores[short] = rows, scores


def dumps(results: Results) -> str:
    """``results`` as JSON (``hubembed search --json``)."""
    return json.dumps(results.to_dict(), ensure_ascii=False, indent=1)
