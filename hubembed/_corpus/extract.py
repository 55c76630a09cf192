"""Embed a whole corpus to disk: streaming, sharded, resumable, with progress.

    hubembed extract corpus.txt -o out/ --model minilm --pooling mean
    hubembed.extract("corpus.txt", "out/", model="minilm")

The corpus is read as a stream (``hubembed._corpus.inputs``) and embedded ``shard_size`` texts at a
time (length-sorted batches within each chunk, as ``Encoder.embed``); each chunk becomes one
shard (``hubembed._corpus.shards``: npy, Parquet or TFRecord; sentence, token or word level) written
atomically, followed by the manifest (``hubembed._corpus.store``). Memory is bounded by one chunk,
whatever the corpus size. With ``resume=True`` a run continues after the last complete shard
of an earlier run (killed at any point), and the result equals an uninterrupted run: chunks
fall on the same boundaries, so every batch is the same; the finished shards' input is
re-read and checked against their fingerprints. Sentence vectors go through a content-hash
cache (``hubembed._corpus.featurecache``): a text seen before with the same weights and spec, or
repeated in the chunk, is not encoded again. ``Settings`` + ``Embedder`` are shared with
the Beam pipeline (``hubembed.beam``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple, Union

import numpy as np

from hubembed._corpus import featurecache, inputs, shards, store
from hubembed._corpus.job import DTYPES, CorpusJob, Settings  # noqa: F401 (DTYPES, Settings: public here)
from hubembed._pipeline.batching import BATCH_SIZE, MAX_TOKENS
from hubembed._pipeline.graph import ExportedEmbedder
from hubembed._pipeline.spec import EmbedSpec
from hubembed._util import loaded, versions
from hubembed.encoder import Encoder
from hubembed.errors import FormatError, InputError, OutputError

log = logging.getLogger("hubembed")


def _versions() -> dict:
    # What computed the vectors: TensorFlow, or LiteRT alone (an int8 model run without TensorFlow).
    return versions(*loaded("tensorflow", "ai_edge_litert"), "numpy")


def _count_lines(path: str) -> Optional[int]:
    if path == "-" or path.endswith(".parquet"):
        return None
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


class Embedder:
    """Turns chunks of records into shard bytes with one encoder (and its feature cache)."""

    def __init__(self, encoder: Encoder, settings: Settings, weights_sha256: Optional[str] = None) -> None:
        self.encoder, self.s = encoder, settings
        self.weights_sha256 = weights_sha256 or encoder.weights_sha256
        self.record, self.dim = self._describe()
        self.cache: Optional[featurecache.FeatureCache] = None
        if self.s.level == "sentence" and self.s.cache:
            root = self.s.cache if isinstance(self.s.cache, str) else featurecache.default_root()
            self.cache = featurecache.FeatureCache(root, self.weights_sha256, self.record)
        self.stats = {"encoded": 0, "from_cache": 0, "duplicates": 0}

    def _describe(self) -> Tuple[dict, int]:
        """The spec resolved for this encoder (what the manifest and the cache key record), and the width of a
        vector: from the spec and the signature (arguments are checked here, before any text is read)."""
        enc, s = self.encoder, self.s
        hidden = enc.signature.hidden_size
        if hidden is None:  # the vector width below needs it (it failed there before, with a TypeError)
            raise FormatError(f"{enc.handle}: its signature gives no hidden size; extract needs the vectors' width")
        context = {k: v for k, v in enc.context().items() if k not in ("model", "hubembed")}
        if s.level == "sentence":
            enc.check_spec_source(s.spec)
            transform = s.spec.transform_object()
            plan = enc.plan(s.spec)
            return s.spec.record(plan, transform, **context), int(s.spec.shape(plan, hidden, transform)[-1])
        spec = s.spec.for_tokens()
        plan = enc.plan(spec)
        record = spec.token_record(plan, **context)
        width = plan.combine.width(hidden, len(plan.indices))
        if s.level == "words":
            record["subword"] = s.subword
            width *= 2 if s.subword == "first_last" else 1
        return record, int(width)

    def _pieces(self, texts: List[str]) -> List[shards.Item]:
        kw: Dict[str, Any] = dict(
            batch_size=self.s.batch_size, max_tokens=self.s.max_tokens, spec=self.s.spec.for_tokens()
        )
        if self.s.level == "tokens":
            return list(self.encoder.embed_tokens(texts, **kw))
        return list(self.encoder.embed_words(texts, subword=self.s.subword, **kw))

    def vectors(self, texts: List[str]) -> np.ndarray:
        """Sentence vectors: each distinct text encoded once, cached texts not at all."""
        keys = [featurecache.text_key(t) for t in texts]
        first: Dict[bytes, str] = {}
        for k, t in zip(keys, texts):
            first.setdefault(k, t)
        found = self.cache.get(first) if self.cache is not None else {}
        todo = [k for k in first if k not in found]
        if todo:
            new = self.encoder.embed(
                [first[k] for k in todo], spec=self.s.spec, batch_size=self.s.batch_size, max_tokens=self.s.max_tokens
            )
            if self.cache is not None:
                self.cache.put(todo, new)
            found.update(zip(todo, new))
        self.stats["encoded"] += len(todo)
        self.stats["from_cache"] += len(first) - len(todo)
        self.stats["duplicates"] += len(texts) - len(first)
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)

    def chunk(self, records: List[inputs.Record]) -> shards.Chunk:
        ids, texts = [r.id for r in records], [r.text for r in records]
        if self.s.level == "sentence":
            return shards.Chunk(ids, vectors=self.vectors(texts), texts=texts if self.s.keep_text else None)
        self.stats["encoded"] += len(texts)
        return shards.Chunk(ids, items=self._pieces(texts))

    def render(self, records: List[inputs.Record]) -> Dict[str, bytes]:
        fmt = self.s.format
        assert fmt is not None  # Settings.__post_init__ resolves the default format
        return shards.render(fmt, self.s.level, self.chunk(records), self.s.stored_dtype)


def input_digest(records: Iterable[inputs.Record]) -> str:
    """sha256 over the ids and texts of a shard's records: resume checks the input did not change."""
    h = hashlib.sha256()
    for r in records:
        h.update(r.id.encode("utf-8", "surrogatepass") + b"\0" + r.text.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


def make_header(embedder: Embedder, source: dict, input_path: str) -> dict:
    """The manifest's header: the model, its weights fingerprint and preprocessor, the resolved spec, the input
    (``source``: how it was read) and the versions."""
    s = embedder.s
    kept = {"keep_text": True} if s.keep_text and s.level == "sentence" else {}  # recorded when used
    return {
        **kept,
        "model": embedder.encoder.handle,
        "weights_sha256": embedder.weights_sha256,
        "preprocessor": embedder.encoder.preprocessor.source,
        "spec": {
            **embedder.record,
            "level": s.level,
            "format": s.format,
            "dtype": s.stored_dtype,
            "dim": embedder.dim,
            "shard_size": s.shard_size,
        },
        "input": {**source, "path": os.path.abspath(input_path) if input_path != "-" else "-"},
        "versions": _versions(),
    }


def extract(
    input_path: str,
    out: str,
    *,
    model: str = "minilm",
    encoder: Optional[Encoder] = None,
    level: str = "sentence",
    format: Optional[str] = None,
    subword: str = "first",
    dtype: str = "float32",
    batch_size: int = BATCH_SIZE,
    max_tokens: Optional[int] = MAX_TOKENS,
    spec: Optional[EmbedSpec] = None,
    shard_size: Optional[int] = None,
    resume: bool = False,
    cache: Union[bool, str] = True,
    keep_text: bool = False,
    column: Optional[str] = None,
    id_column: Optional[str] = None,
    input_format: Optional[str] = None,
    on_bad: str = "fail",
    on_empty: str = "skip",
    quiet: bool = False,
    preprocess: Optional[str] = None,
    seq_length: Optional[int] = None,
    backend: str = "auto",
    trust: str = "registry",
    quantize: Optional[str] = None,
    **spec_keywords: Any,
) -> dict:
    """Embed every text of ``input_path`` into shards under ``out``, resumably.

    Args:
        input_path: a .txt (a text a line), .jsonl, .csv, .tsv or .parquet file, or "-" (standard input).
        out: the output folder (new, empty, or one to resume).
        model, preprocess, seq_length, backend, trust, quantize: as ``hubembed.load``; ``encoder``: an already loaded
            ``Encoder`` instead.
        level: sentence (one vector per text, as ``Encoder.embed``) | tokens (``embed_tokens``) | words
            (``embed_words`` with ``subword``).
        format: npy (sentence level) | parquet | tfrecord (``hubembed._corpus.shards``).
        spec: the ``EmbedSpec`` (token and word vectors use its layer part), or ``**spec_keywords``: its fields
            (layers=, combine=, weights=, gamma=, pooling=, special_tokens=, normalize=, attention_layer=,
            long=, stride=, transform=; a fitted ``Whitening`` or its path, sentence level only).
        dtype: float32 | float16 on disk.
        batch_size, max_tokens: as ``Encoder.embed``.
        shard_size: texts per shard, and in memory at once (default 10000; 1000 for tokens/words).
        resume: continue an interrupted run (its model, weights, spec and input must match).
        cache: sentence vectors by text content (True: ``$HUBEMBED_CACHE/features``; a folder; False: off).
        keep_text: store each text with its vector (sentence level: ``part-N.text.json`` beside npy shards, a
            ``text`` column or feature in parquet and tfrecord; ``ex.texts()``, search results); token and word
            rows always hold their text.
        column, id_column, input_format, on_bad, on_empty: how the input is read (``hubembed._corpus.inputs``).
        quiet: no progress bar.

    Returns:
        the final manifest (a dict; ``open_extraction(out)`` reads the result).

    Raises:
        InputError: bad arguments or input rows (before any text is embedded).
        OutputError: the folder holds other files or another extraction, or a write failed (finished shards
            are kept; ``resume=True`` continues).
    """
    # Every option checked here; a loaded encoder's own model and window are what the spec is checked against.
    given = {} if encoder is None else {"model": encoder.handle, "seq_length": getattr(encoder, "seq_length", None)}
    job = CorpusJob.from_arguments(locals(), skip=("input_path", "encoder", "given"), **given)
    return run(job, input_path, encoder)


def run(job: CorpusJob, input_path: str, encoder: Optional[Encoder] = None) -> dict:
    """Run ``job`` over ``input_path`` on this machine (``encoder``: already loaded; default ``job.load.load()``)."""
    reader = inputs.open_input(input_path, **job.source.reader_args())
    reader.check_columns()  # a wrong column or a header read as data: before the model loads
    old = store.check_folder(job.out, job.resume)  # before the model loads
    if old is not None:  # a resume with other settings: refused before the model loads, as far as they are known
        known = job.known_header(reader.to_dict(), input_path, encoder.handle if encoder is not None else None)
        store.refuse_resume(job.out, store.known_differences(old.get("header", {}), known))
    if encoder is None:
        job.load.check_prompt(job.settings.spec)  # a prompt name the model does not have: before it loads
        loaded = job.load.load()
        if isinstance(loaded, ExportedEmbedder):  # it has no signature, layers or tokens (this failed later before)
            raise InputError(
                f"{loaded.path} is a hubembed export (strings -> {loaded.dim}-dim vectors, the spec baked in), not an "
                f"encoder: extract cannot use it. Extract with the model it was exported from: "
                f"model={loaded.record.get('model')!r}"
            )
        encoder = loaded
    embedder = Embedder(encoder, job.settings)
    st = store.ShardStore(job.out, make_header(embedder, reader.to_dict(), input_path), resume=job.resume)
    if st.shards:
        log.info("resuming %s after %d rows (%d shards intact)", job.out, st.rows_done, len(st.shards))
    return _run(embedder, reader, st, job.quiet)


def _check_done(st: store.ShardStore, shard_i: int, records: List[inputs.Record]) -> None:
    """At resume: the records of finished shard ``shard_i`` must be the ones it was made from."""
    want = st.shards[shard_i].get("input_sha256")
    if want and input_digest(records) != want:
        s = st.shards[shard_i]
        raise OutputError(
            f"{st.out}: the input changed since the interrupted run (the texts or ids of shard "
            f"{shard_i}, rows {s['first_row']}..{s['first_row'] + s['rows'] - 1}, differ); "
            f"start a new extraction, or restore the input"
        )


def _progress(path: str, total: Optional[int], done_lines: int, quiet: bool) -> Any:
    """A tqdm bar over input lines (on stderr; none with quiet)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=done_lines if total else 0,
        unit=" lines",
        disable=quiet,
        dynamic_ncols=True,
        desc=f"extract {os.path.basename(path)}",
        smoothing=0.1,
    )


def _run(embedder: Embedder, reader: inputs.Reader, st: store.ShardStore, quiet: bool) -> dict:
    start = time.perf_counter()
    shard_size = embedder.s.shard_size
    done_lines, done_rows = st.lines_done, st.rows_done
    total = _count_lines(reader.path) if reader.path != "-" else None
    bar = _progress(reader.path, total, done_lines, quiet)
    chunk: List[inputs.Record] = []
    n_new, last_line = 0, done_lines
    done_chunk: List[inputs.Record] = []  # records of finished shards, re-read at resume to check the input
    done_i = 0
    recorded: Set[int] = set()  # skipped lines already listed in the manifest

    def new_skips(up_to: float) -> List[Tuple[int, str]]:
        out = [s for s in reader.skipped if done_lines < s[0] <= up_to and s[0] not in recorded]
        recorded.update(s[0] for s in out)
        return out

    def flush() -> None:
        nonlocal chunk, n_new
        blobs = embedder.render(chunk)
        st.write_shard(blobs, len(chunk), chunk[-1].line, new_skips(chunk[-1].line), input_digest(chunk))
        n_new += len(chunk)
        bar.set_postfix(rows=st.rows_done, shards=len(st.shards))
        chunk = []

    ids: Dict[str, int] = {}  # standard input cannot be checked before the run: its ids are checked as they come
    try:
        for rec in reader.records():
            if reader.path == "-" and reader.id_column is not None:
                reader.check_id(ids, rec)
            if rec.line <= done_lines:
                done_chunk.append(rec)
                if len(done_chunk) == st.shards[done_i]["rows"]:
                    _check_done(st, done_i, done_chunk)
                    done_chunk, done_i = [], done_i + 1
                continue
            if rec.row != done_rows + n_new + len(chunk):
                raise OutputError(
                    f"{st.out}: the input changed since the interrupted run (row {rec.row} at line "
                    f"{rec.line}); start a new extraction"
                )
            chunk.append(rec)
            if total:
                bar.update(rec.line - last_line)
            last_line = rec.line
            if len(chunk) == shard_size:
                flush()
        if chunk:
            flush()
        if total:
            bar.update(max(0, total - last_line))
    finally:  # an error is printed on a line of its own, not on the bar's
        bar.close()
    seconds = time.perf_counter() - start
    st.skipped.extend([list(s) for s in new_skips(float("inf"))])
    _check_something_read(reader, st)
    return _finish(embedder, st, n_new, seconds)


def _check_something_read(reader: inputs.Reader, st: store.ShardStore) -> None:
    """An input every row of which was dropped as bad is an error (nothing is written: the advice to skip bad rows
    must not produce an empty extraction); an input with no text at all is warned about.

    Raises:
        InputError: no row was kept and some were bad (the first reason and line, and how many).
    """
    if st.rows_done:
        return
    bad = [s for s in st.skipped if s[1] != "empty"]
    if bad:
        raise InputError(
            f"{reader.path}: every row was dropped ({len(bad)} bad, e.g. line {bad[0][0]}: {bad[0][1]}), so nothing "
            f"was extracted: check the column (and the format) you asked for"
        )
    log.warning(
        "%s: no text to embed (%d empty lines skipped): the extraction has 0 rows", reader.path, len(st.skipped)
    )


def _finish(embedder: Embedder, st: store.ShardStore, n_new: int, seconds: float) -> dict:
    """The manifest completed with the run's summary, and a one-line log of it."""
    summary = {
        "rows": st.rows_done,
        "rows_this_run": n_new,
        "shards": len(st.shards),
        "skipped": len(st.skipped),
        "seconds_this_run": round(seconds, 3),
        "rows_per_second_this_run": round(n_new / seconds, 1) if seconds > 0 else None,
        **{f"texts_{k}_this_run": v for k, v in embedder.stats.items()},
    }
    m = st.finish(summary)
    reasons: Dict[str, int] = {}
    for _, why in st.skipped:
        key = why.split(" (")[0]
        reasons[key] = reasons.get(key, 0) + 1
    skipped_text = ", ".join(f"{n} {k}" for k, n in reasons.items()) or "none"
    cached = embedder.stats["from_cache"] + embedder.stats["duplicates"]
    log.info(
        "extracted %d rows into %s (%d shards; %d this run, %.1f rows/s, %d not encoded again: "
        "cache or duplicates; skipped: %s)",
        st.rows_done,
        st.out,
        len(st.shards),
        n_new,
        summary["rows_per_second_this_run"] or 0,
        cached,
        skipped_text,
    )
    return m
