"""Approximate search for large extractions (``Extraction.build_index``, ``hubembed index``): a FAISS HNSW graph of
the extraction's vectors, saved in its folder and recorded in its manifest; ``Extraction.search`` uses it when present.

>>> ex = hubembed.open_extraction("out/")                                   # doctest: +SKIP
>>> ex.build_index()                                                        # doctest: +SKIP
>>> ex.search(["a film about cats"], k=10)                                  # doctest: +SKIP  (now through the index)

Why FAISS's ``IndexHNSWFlat``: measured against FAISS IVF-flat and hnswlib on 406,516 real token vectors
(docs/retrieval.md, ``benchmarks/bench_ann.py``), both HNSW libraries reach recall@10 >= 0.95 at 70-170x the exact
scan; IVF-flat needs a training pass and only reaches 0.95 at 10x. FAISS is the maintained one of the two with wheels
for every Python hubembed supports (``pip install 'hubembed[ann]'``), and its index keeps the vectors themselves, so a
hit's score is the exact score of the float query against that vector (no second pass over the shards).

What the index holds: a vector per row (sentence level) or per word piece / word (token and word levels), in the
order ``search.stored_shards`` numbers them; float32 as stored, int8/uint8 codes as their bucket middles (the
calibration ranges are checked against the manifest), binary codes as +-1 signs, scaled to length 1 for ``cosine``.
A hit's score is what an exact search with rescoring gives that vector.

Never silently stale: the manifest's ``index`` record holds the index file's sha256 and a digest of every shard's
checksums. A search refuses the index (saying to rebuild it, ``hubembed index OUT --overwrite``, or to search
without it, ``exact=True`` / ``--exact``) when the shards are not the ones it was built from, when the file is missing,
is not the file the record names (another extraction's index copied in), or is there without a record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from hubembed._corpus import search as exact
from hubembed._corpus.store import INDEX_FILE, MANIFEST, Extraction, manifest_bytes, read_manifest
from hubembed._util import optional, sha256_file, write_atomic
from hubembed.errors import InputError, OutputError

log = logging.getLogger("hubembed")

M = 32  # HNSW neighbours per node (docs/retrieval.md)
EF_CONSTRUCTION = 80
EF_SEARCH = 64  # recall@10 0.966 on 788,936 word vectors at 44x hubembed's exact search (docs/retrieval.md)
KIND = "IndexHNSWFlat"
LARGEST = 2**31 - 1  # FAISS's int parameters
_LOADED: Dict[Tuple[str, str], Any] = {}  # (file, sha256) -> faiss index: a session's searches load it once


def _faiss() -> Any:
    return optional("faiss", "Approximate search (hubembed index, Extraction.build_index)")


def shards_digest(ex: Extraction) -> str:
    """One sha256 over every shard's checksums, in order (what an index was built from)."""
    listed = [[int(s["rows"]), s["sha256"]] for s in ex.shards]
    return hashlib.sha256(json.dumps([ex.level, listed], sort_keys=True).encode()).hexdigest()


def _path(ex: Extraction) -> str:
    return os.path.join(ex.out, INDEX_FILE)


def _rebuild_hint(ex: Extraction) -> str:
    return "rebuild it (`ex.build_index(overwrite=True)`) or search without it (`exact=True`)"


def usable(ex: Extraction) -> Optional[dict]:
    """The manifest's index record when the index is there and was built from these shards; None without one.

    Raises:
        OutputError: an index that cannot be trusted (stale, missing, unrecorded), saying what to do.
    """
    record, there = ex.manifest.get("index"), os.path.exists(_path(ex))
    if record is None:
        if there:
            raise OutputError(
                f"{_path(ex)} is not recorded in {ex.out}'s manifest (left from an earlier extraction, or copied "
                f"from another): {_rebuild_hint(ex)}"
            )
        return None
    if not there:
        raise OutputError(f"{ex.out}'s manifest records an index, but {_path(ex)} is missing: {_rebuild_hint(ex)}")
    if record.get("shards_digest") != shards_digest(ex):
        raise OutputError(
            f"{ex.out}'s index is stale: it was built from other shards than the folder holds now (they were "
            f"extracted again or resumed since): {_rebuild_hint(ex)}"
        )
    if os.path.getsize(_path(ex)) != record.get("bytes"):
        raise OutputError(
            f"{_path(ex)} is not the index {ex.out}'s manifest records ({os.path.getsize(_path(ex))} bytes, "
            f"recorded {record.get('bytes')}; another extraction's?): {_rebuild_hint(ex)}"
        )
    return record


# -- building --------------------------------------------------------------------------------------------------------
def check_int(name: str, value: Any) -> int:
    """An integer parameter of FAISS's: 1 .. 2**31 - 1."""
    value = exact._positive(name, value)
    if value > LARGEST:
        raise InputError(f"{name}={value}; valid: 1..{LARGEST}")
    return value


def _check_params(m: Any, ef_construction: Any, ef_search: Any) -> Dict[str, int]:
    exact._positive("m", m)
    check_int("ef_construction", ef_construction)
    check_int("ef_search", ef_search)
    if m < 4 or m > 256:
        raise InputError(f"m={m}; valid: 4..256 (HNSW neighbours per vector; default {M})")
    return {"M": int(m), "efConstruction": int(ef_construction), "efSearch": int(ef_search)}


def _index_rows(p: exact.Plan, stored: np.ndarray) -> np.ndarray:
    """What the index holds for stored vectors [n, W]: float32 (codes: bucket middles or signs), unit length for
    cosine."""
    x = exact._rows_as_floats(p, stored) if p.precision in exact.CODES else np.asarray(stored, np.float32)
    x = exact._unit(x) if p.metric == "cosine" else x
    return np.ascontiguousarray(x, np.float32)


def _check_existing(ex: Extraction, overwrite: Any) -> None:
    if not isinstance(overwrite, bool):
        raise InputError(f"overwrite={overwrite!r}; valid: True or False")
    if not overwrite and ("index" in ex.manifest or os.path.exists(_path(ex))):
        raise OutputError(
            f"{ex.out} already has an index ({INDEX_FILE}): rebuild it (`ex.build_index(overwrite=True)`), or "
            f"remove it (`hubembed index {ex.out} --remove`)"
        )


def build_index(
    ex: Extraction,
    *,
    metric: Optional[str] = None,
    ranges: Any = None,
    m: int = M,
    ef_construction: int = EF_CONSTRUCTION,
    ef_search: int = EF_SEARCH,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Build the HNSW index of ``ex``'s vectors, save it as ``OUT/index.faiss`` and record it in the manifest.

    Args:
        metric: cosine | dot, what searches through it score by (default: as ``search``: dot for normalized
            vectors, else cosine).
        ranges: int8/uint8 extractions: the calibration ranges they were quantized with.
        m, ef_construction: the graph's neighbours per vector and build-time breadth (FAISS's M, efConstruction).
        ef_search: the default search-time breadth (at least k is used; ``search(ef_search=)`` changes it).
        overwrite: replace an index already there.
        progress: a tqdm bar over the shards.

    Returns:
        The manifest's ``index`` record (file, bytes, sha256, params, vectors, build seconds, ...).

    Raises:
        InputError: bad arguments, an unfinished extraction. OutputError: an index already there (without
        ``overwrite``), a damaged folder. MissingDependencyError: faiss-cpu not installed.
    """
    exact.check_extraction(ex, verify=False)
    params = _check_params(m, ef_construction, ef_search)
    _check_existing(ex, overwrite)
    p = exact.plan(ex, 1, metric, True, 1, ranges)
    faiss = _faiss()
    if p.metric == "dot" and not ex.record.get("normalize"):
        log.warning(
            "an inner-product graph over vectors of different lengths: HNSW finds less of the true top k for dot "
            "than for cosine; check its recall against exact=True on some queries (or extract with --normalize)"
        )
    started = time.perf_counter()
    index, counts = _add_shards(faiss, ex, p, params, progress)
    built = time.perf_counter() - started
    record = {
        "file": INDEX_FILE,
        "library": "faiss",
        "library_version": faiss.__version__,
        "kind": KIND,
        "params": params,
        "metric": p.metric,
        "dim": int(index.d),
        "vectors": int(index.ntotal),
        "vectors_per_shard": counts,
        "shards_digest": shards_digest(ex),
        "build_seconds": round(built, 2),
    }
    _save(ex, faiss, index, record)
    return record


def _add_shards(faiss: Any, ex: Extraction, p: exact.Plan, params: Dict[str, int], progress: bool) -> Any:
    from tqdm.auto import tqdm

    if p.precision in ("binary", "ubinary"):
        p.dim = 8 * p.width  # every stored bit (a query of fewer dimensions is padded with zeros: ``search``)
    index = None
    counts: List[int] = []
    bar = tqdm(total=len(ex.shards), unit="shard", desc="index", disable=not progress, leave=False)
    with bar:
        for _, stored in exact.stored_shards(ex, p):
            x = _index_rows(p, stored)
            if index is None:
                index = faiss.IndexHNSWFlat(x.shape[1], params["M"], faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = params["efConstruction"]
            if len(x):
                index.add(x)
            counts.append(len(x))
            bar.update(1)
    if index is None or index.ntotal == 0:
        raise InputError(f"{ex.out} holds no vectors: nothing to index")
    return index, counts


def _save(ex: Extraction, faiss: Any, index: Any, record: dict) -> None:
    """The index file (FAISS's writer into a temporary file, fsync, rename), then the manifest naming it with its
    size and sha256 (a run killed between the two leaves a file the manifest does not record: refused by ``usable``,
    never used)."""
    if read_manifest(ex.out) != ex.manifest:
        raise OutputError(f"{ex.out} changed while its index was built: open it again and rebuild")
    _LOADED.clear()
    tmp = f"{_path(ex)}.{os.getpid()}.tmp"  # .tmp: removed by a resume or a new extraction if left
    try:
        faiss.write_index(index, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        record.update(bytes=os.path.getsize(tmp), sha256=sha256_file(tmp))
        os.replace(tmp, _path(ex))
    except (OSError, RuntimeError) as e:  # faiss raises RuntimeError on a failed write
        if os.path.exists(tmp):
            os.remove(tmp)
        raise OutputError(f"writing {_path(ex)} failed: {e}") from e
    m = {**ex.manifest, "index": record}
    write_atomic(os.path.join(ex.out, MANIFEST), manifest_bytes(m))
    ex.manifest = m


def remove_index(ex: Extraction) -> bool:
    """Remove ``ex``'s index and its record (True: there was one)."""
    if not isinstance(ex, Extraction):
        raise InputError(f"an Extraction (hubembed.open_extraction(out)), not {type(ex).__name__}")
    if read_manifest(ex.out) != ex.manifest:
        raise OutputError(f"{ex.out} changed since it was opened (its manifest differs): open it again")
    had = "index" in ex.manifest or os.path.exists(_path(ex))
    if "index" in ex.manifest:
        m = {k: v for k, v in ex.manifest.items() if k != "index"}
        write_atomic(os.path.join(ex.out, MANIFEST), manifest_bytes(m))
        ex.manifest = m
    _LOADED.clear()
    try:
        if os.path.exists(_path(ex)):
            os.remove(_path(ex))
    except OSError as e:
        raise OutputError(f"removing {_path(ex)} failed: {e.strerror or e}") from e
    return had


# -- searching -------------------------------------------------------------------------------------------------------
def load(ex: Extraction, record: dict) -> Any:
    """The faiss index of ``record``, read once per session and file; its bytes checked against the record."""
    key = (os.path.realpath(_path(ex)), record["sha256"])
    if key not in _LOADED:
        faiss = _faiss()
        if sha256_file(_path(ex)) != record["sha256"]:
            raise OutputError(
                f"{_path(ex)} is not the index {ex.out}'s manifest records (its sha256 differs; another extraction's, "
                f"or changed): {_rebuild_hint(ex)}"
            )
        _LOADED.clear()  # one index at a time: they are as large as the corpus
        index = faiss.read_index(_path(ex))  # FAISS's own reader: 20-40x faster than deserialize_index on bytes
        if index.ntotal != record["vectors"] or index.d != record["dim"]:
            raise OutputError(f"{_path(ex)} does not hold the vectors its record says: {_rebuild_hint(ex)}")
        _LOADED[key] = index
    return _LOADED[key]


def check_plan(ex: Extraction, p: exact.Plan, record: dict, rescore: bool, ef_search: Any) -> int:
    """The search-time breadth; refuses what the index cannot give (another metric, first-stage code scores)."""
    if record["metric"] != p.metric:
        raise InputError(
            f"{ex.out}'s index scores by {record['metric']}, not {p.metric}: search with metric="
            f"{record['metric']!r}, or without the index (`exact=True`), or rebuild it for {p.metric} "
            f"(`ex.build_index(overwrite=True, metric='{p.metric}')`)"
        )
    if p.precision in exact.CODES and not rescore:
        raise InputError(
            "rescore=False scores the codes as they are, which only an exact scan does: add `exact=True`; the index "
            "scores the float query against the codes' bucket middles or signs"
        )
    ef = record["params"]["efSearch"] if ef_search is None else check_int("ef_search", ef_search)
    return min(max(int(ef), min(p.k, int(record["vectors"]))), LARGEST)


def search(ex: Extraction, p: exact.Plan, q: np.ndarray, record: dict, ef: int) -> Tuple[exact.Best, List[int]]:
    """The k best of each query through the index (scores: the float query's against the indexed vectors), as the
    exact scan's running top list; and the vectors of each shard."""
    faiss = _faiss()
    index = load(ex, record)
    q = exact._unit(q) if p.metric == "cosine" else q
    n = min(p.k, int(index.ntotal))
    params = faiss.SearchParametersHNSW()
    params.efSearch = ef
    width = q.shape[1]
    q = np.pad(q, ((0, 0), (0, index.d - width))) if width < index.d else q  # binary: bits past D pad the codes
    scores, found = index.search(np.ascontiguousarray(q, np.float32), n, params=params)
    scores = np.where(found >= 0, scores, -np.inf).astype(np.float32)  # -1: fewer found (``search`` completes them)
    if width < index.d and p.metric == "cosine":
        scores *= np.sqrt(index.d / width)  # the signs' length over D bits, not all 8W (as the exact rescoring)
    return exact.Best(scores, found.astype(np.int64)), list(record["vectors_per_shard"])
