"""Embeddings for Spark DataFrames: a text column in, a vector column out, the model loaded once per Python worker.

    import os, sys
    os.environ["PYSPARK_PYTHON"] = sys.executable   # before the session starts (executors ignore spark.pyspark.python)
    from pyspark.sql import SparkSession
    spark = SparkSession.builder.master("local[2]").getOrCreate()

    from hubembed import spark as hspark
    df = spark.read.parquet("corpus.parquet")               # a string column "text"
    out = hspark.embed(df, "text", model="minilm", pooling="mean")   # + "vector": array<float>
    hspark.extract(df, "/shared/out", "text", id_column="id", model="minilm")   # shards + manifest.json

How it runs: ``embed`` adds a pandas UDF column (Arrow batches of the text column only; the other columns stay
in the JVM). Each Python worker process loads the model the first time it needs it and keeps it in a
module-level cache keyed by ``hubembed.load``'s arguments (``_MODELS``); Spark reuses its Python workers from
task to task (``spark.python.worker.reuse``, on by default; off, every task loads the model again), so that is
once per worker, not per task or batch. Each Arrow batch is one ``Encoder.embed`` call with the same
``EmbedSpec``, so the vectors are ``embed``'s (they do not depend on batching). ``extract`` numbers the rows in
the DataFrame's order (RDD ``zipWithIndex``, as a file's lines), puts shard i in partition i, and embeds and
writes each shard with ``mapInPandas`` (the same Arrow workers, and so the same loaded models, as ``embed``)
through ``hubembed._corpus`` (the local run's and the Beam pipeline's code); the driver writes the manifest
last: the files ``hubembed.extract`` writes.

What the workers need: hubembed (with its TensorFlow stack) installed in the Python that ``PYSPARK_PYTHON``
names, and the model reachable from every worker (a registry name, converted or downloaded into each worker's
``HUBEMBED_CACHE``, or a folder every worker can read; a relative local path is made absolute on the driver).
Everything is checked on the driver before a job starts: the spec (``EmbedSpec.make``), the columns, and
(``check=True``) one text embedded by the model loaded on the driver too, so a layer out of range is an
``InputError`` there, not a failed task. ``extract`` uses RDDs, which Spark Connect lacks: it needs a classic
session; ``embed`` uses the DataFrame API only (tested on a classic session).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

from hubembed import registry
from hubembed._corpus import extract as corpus
from hubembed._corpus import inputs, store
from hubembed._corpus.job import CorpusJob
from hubembed._hub.resolve import is_url
from hubembed._load import LoadOptions
from hubembed._pipeline import quantize
from hubembed._pipeline.batching import BATCH_SIZE, MAX_TOKENS
from hubembed._pipeline.spec import EmbedSpec
from hubembed._util import optional, write_atomic
from hubembed.errors import InputError, OutputError

try:
    import pyspark
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
except ImportError:  # pragma: no cover - the spark extra is optional
    pyspark = F = T = None

__all__ = ["embed", "extract"]

LOADS = {"count": 0}  # models this process loaded through _encoder (the tests read it through worker_column)
_MODELS: Dict[LoadOptions, Any] = {}  # load options -> Encoder, for the life of the (worker) process
_LOCK = threading.Lock()
# Spark has no unsigned byte: uint8 codes (precision uint8/ubinary) go out as short.
_ELEMENTS = {np.float32: "FloatType", np.int8: "ByteType", np.uint8: "ShortType"}


def _need_spark() -> None:
    if pyspark is None:
        optional("pyspark", "Embedding a Spark DataFrame")


def _encoder(load: LoadOptions) -> Tuple[Any, bool]:
    """The encoder of ``load``, loaded once per process. Returns (encoder, loaded now)."""
    with _LOCK:
        enc = _MODELS.get(load)
        if enc is not None:
            return enc, False
        enc = _MODELS[load] = load.load()
        LOADS["count"] += 1
        return enc, True


@dataclass(frozen=True)
class _Job:
    """What a worker needs to embed texts (pickled into the UDF): the model's load arguments, the spec with its
    transform and ranges loaded (no file is read on a worker), and the batching."""

    load: LoadOptions
    spec: EmbedSpec
    batch_size: int
    max_tokens: Optional[int]


# -- on the workers -------------------------------------------------------------------------------------------
def _vectors(job: _Job, texts) -> list:
    """A pandas Series of texts -> one cell per text (None for a null text), as Arrow takes them."""
    enc, _ = _encoder(job.load)
    keep = texts.notna().to_numpy()
    cells = [None] * len(texts)
    if keep.any():
        vecs = enc.embed(list(texts[keep]), spec=job.spec, batch_size=job.batch_size, max_tokens=job.max_tokens)
        if vecs.dtype == np.uint8:
            vecs = vecs.astype(np.int16)
        if job.spec.combine == "none" and vecs.ndim == 2:  # one layer kept apart: still a layer axis
            vecs = vecs[:, None, :]
        for i, v in zip(np.flatnonzero(keep), vecs):
            cells[i] = list(v) if v.ndim == 2 else v
    return cells


def _worker() -> Tuple[int, int]:
    """(this process's id, the models it has loaded), read in the worker (not pickled with the UDF)."""
    return os.getpid(), LOADS["count"]


def _embed_shards(job: _Job, settings: corpus.Settings, weights_sha256: str, out: str, batches):
    """mapInPandas over records (shard, row, id, text, line), shard i in partition i: each shard embedded as the
    local run embeds a chunk, its files written; yields (manifest entry as JSON, worker pid, loaded for it)."""
    import pandas as pd

    frames = [f for f in batches if len(f)]
    done = []
    if frames:
        for index, group in pd.concat(frames).groupby("shard", sort=True):
            done.append(_write_shard(job, settings, weights_sha256, out, int(index), group))
    yield pd.DataFrame(done, columns=["entry", "pid", "loaded"])


def _write_shard(job: _Job, settings: corpus.Settings, weights_sha256: str, out: str, index: int, group) -> tuple:
    enc, loaded = _encoder(job.load)
    embedder = corpus.Embedder(enc, settings, weights_sha256)
    rows = sorted(zip(group["row"].tolist(), group["id"].tolist(), group["text"].tolist(), group["line"].tolist()))
    recs = [inputs.Record(int(r), str(i), str(t), int(line)) for r, i, t, line in rows]
    entry, files = store.shard_entry(
        index, recs[0].row, len(recs), recs[-1].line, embedder.render(recs), corpus.input_digest(recs)
    )
    for name, data in files.items():
        write_atomic(os.path.join(out, name), data)
    return json.dumps(entry), os.getpid(), loaded


# -- on the driver ----------------------------------------------------------------------------------------------
def _local(path):
    """A local path that exists, made absolute (executors run in their own working directory); else as given."""
    if path is None:
        return None
    path = os.fspath(path)
    if registry.find(path) is None and not is_url(path) and os.path.exists(path):
        return os.path.abspath(path)
    return path


def _check_frame(df, column: str, id_column: Optional[str] = None, new: Tuple[str, ...] = ()) -> None:
    """The DataFrame and its columns: ``column`` holds strings, ``id_column`` exists, the new columns do not."""
    if not isinstance(df, pyspark.sql.DataFrame):
        raise InputError(f"df={type(df).__name__}; valid: a pyspark.sql.DataFrame")
    fields = {f.name: f.dataType for f in df.schema.fields}
    if column not in fields:
        raise InputError(f"column={column!r}: no such column (columns: {', '.join(fields)})")
    if not isinstance(fields[column], T.StringType):
        raise InputError(f"column={column!r} holds {fields[column].simpleString()}, not string: cast it first")
    if id_column is not None and id_column not in fields:
        raise InputError(f"id_column={id_column!r}: no such column (columns: {', '.join(fields)})")
    for name, value in new:
        if value is not None and (not isinstance(value, str) or not value or value in fields):
            raise InputError(f"{name}={value!r}: give a new column name (the DataFrame has {', '.join(fields)})")


def _check_unique_ids(df, id_column: Optional[str]) -> None:
    """Ids taken from ``id_column`` name the rows of an extraction: a repeated one is refused before the model loads
    (one small Spark job: the ids counted, at most three repeats brought back)."""
    if id_column is None:
        return
    repeats = df.groupBy(id_column).count().filter(F.col("count") > 1).limit(3).collect()
    if repeats:
        shown = ", ".join(f"{r[0]!r} ({r[1]} rows)" for r in repeats)
        raise InputError(
            f"id_column={id_column!r}: ids repeat, e.g. {shown}; the ids of {id_column!r} must be unique: they name "
            f"the rows of the extraction"
        )


def _job(load: LoadOptions, spec: EmbedSpec, batch_size: Any, max_tokens: Any) -> _Job:
    """The arguments checked that need no model (the load options were checked when made): the spec with its
    transform and ranges loaded here (shipped to the workers), the batching; local paths made absolute."""
    if spec.transform is not None:
        spec = spec.replace(transform=spec.transform_object())  # loaded once here, shipped to the workers
    if spec.ranges is not None:
        spec = spec.replace(ranges=spec.ranges_object())
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size={batch_size!r}; valid: a number of rows >= 1")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise InputError(f"max_tokens={max_tokens!r}; valid: a number of tokens >= 1, or None (rows only)")
    # the driver's CPU checked the quantize mode (LoadOptions); workers check their own when they load
    return _Job(
        load.replace(model=_local(load.model), preprocess=_local(load.preprocess)), spec, batch_size, max_tokens
    )


LOAD_KEYWORDS = ("preprocess", "seq_length", "backend", "trust", "quantize", "prompts")


def _load_options(model: Any, **keywords: Any) -> LoadOptions:
    if not isinstance(model, (str, os.PathLike)) or not os.fspath(model).strip():
        raise InputError(f"model={model!r}; valid: a handle (a registry name, a URL, a folder)")
    preprocess = keywords.get("preprocess")
    if preprocess is not None and not isinstance(preprocess, (str, os.PathLike)):
        raise InputError(f"preprocess={preprocess!r}; valid: a preprocessor handle, or None")
    return LoadOptions.make(model=os.fspath(model), **keywords)


def _vector_type(spec: EmbedSpec):
    """array<float> (array<byte>/<short> for quantized codes; array<array<..>> for combine='none')."""
    element = getattr(T, _ELEMENTS[quantize.dtype(spec.precision)])()
    vector = T.ArrayType(element)
    return T.ArrayType(vector) if spec.combine == "none" else vector


def _udf(job: _Job, worker: bool):
    """The pandas UDF: texts -> vectors, or -> struct<vector, pid, model_loads> with ``worker``."""
    import pandas as pd

    if not worker:

        def embed_texts(texts):
            return pd.Series(_vectors(job, texts), index=texts.index, dtype=object)

        embed_texts.__annotations__ = {"texts": pd.Series, "return": pd.Series}  # how pyspark picks the UDF kind
        return F.pandas_udf(embed_texts, _vector_type(job.spec))

    def embed_texts_in_worker(texts):
        vectors = _vectors(job, texts)
        pid, loads = _worker()  # after the batch: its load (if any) counted
        return pd.DataFrame({"vector": vectors, "pid": pid, "model_loads": loads}, index=texts.index)

    embed_texts_in_worker.__annotations__ = {"texts": pd.Series, "return": pd.DataFrame}
    schema = T.StructType(
        [
            T.StructField("vector", _vector_type(job.spec)),
            T.StructField("pid", T.IntegerType()),
            T.StructField("model_loads", T.IntegerType()),
        ]
    )
    return F.pandas_udf(embed_texts_in_worker, schema)


def embed(
    df,
    column: str = "text",
    *,
    model: str = "minilm",
    output_column: str = "vector",
    spec: Optional[EmbedSpec] = None,
    preprocess=None,
    seq_length: Optional[int] = None,
    backend: str = "auto",
    trust: str = "registry",
    quantize: Optional[str] = None,
    prompts: Optional[Dict[str, str]] = None,
    batch_size: int = BATCH_SIZE,
    max_tokens: Optional[int] = MAX_TOKENS,
    check: bool = True,
    worker_column: Optional[str] = None,
    **spec_keywords,
):
    """``df`` with a vector column: ``Encoder.embed`` of each text of ``column``, on the executors.

    Args:
        df: a ``pyspark.sql.DataFrame``.
        column: its string column to embed; a null text gets a null vector, an empty one is embedded (as ``embed``).
        model, preprocess, seq_length, backend, trust, quantize, prompts: as ``hubembed.load``, on every Python worker
            (once each).
        output_column: the new column: array<float> ([D] per text, equal to ``Encoder.embed``); int8 codes as
            array<byte>, uint8 codes as array<short>; with combine="none", array<array<...>> (one per layer).
        spec, **spec_keywords: the ``EmbedSpec`` or its fields (layers=, pooling=, ...), as ``Encoder.embed``.
        batch_size, max_tokens: ``Encoder.embed``'s batching inside each Arrow batch (results do not depend on it;
            rows per Arrow batch: ``spark.sql.execution.arrow.maxRecordsPerBatch``).
        check: also load the model on the driver (once per process) and embed one text there, so that what
            depends on the model (a layer out of range, a transform's width, max_tokens) fails before any job;
            False: only what needs no model is checked (the driver need not reach the model).
        worker_column: also add struct<pid, model_loads>: the Python worker that embedded the row and how many
            models it had loaded then (1: it loaded this one once).

    Returns:
        a new DataFrame (lazy, as any transformation: the embedding runs when an action needs it).

    Raises:
        MissingDependencyError: pyspark is not installed.
        InputError: bad arguments (the message names the argument), on the driver, before any Spark job.
    """
    _need_spark()
    _check_frame(df, column, new=(("output_column", output_column), ("worker_column", worker_column)))
    if output_column is None or output_column == worker_column:
        raise InputError(f"output_column={output_column!r}; valid: a new column name, other than worker_column")
    load = _load_options(
        model,
        preprocess=preprocess,
        seq_length=seq_length,
        backend=backend,
        trust=trust,
        quantize=quantize,
        prompts=prompts,
    )
    job = _job(load, EmbedSpec.make(spec, **spec_keywords), batch_size, max_tokens)
    if check:
        enc, _ = _encoder(job.load)
        enc.embed(["hubembed checks the arguments"], spec=job.spec, batch_size=batch_size, max_tokens=max_tokens)
    if worker_column is None:
        return df.withColumn(output_column, _udf(job, False)(F.col(column)))
    tmp = f"__hubembed_{output_column}"  # one UDF call per row: the struct's fields are split after it
    return (
        df.withColumn(tmp, _udf(job, True)(F.col(column)))
        .withColumn(output_column, F.col(tmp).getField("vector"))
        .withColumn(worker_column, F.col(tmp).dropFields("vector"))
        .drop(tmp)
    )


# -- extract: shards + manifest ---------------------------------------------------------------------------------
def _line(element) -> tuple:
    """((text, id?), index) -> (line, id or None, text): lines count from 1, a null text is empty (as Parquet)."""
    row, index = element
    return index + 1, (row[1] if len(row) > 1 else None), row[0] or ""


def _is_empty(line: tuple) -> bool:
    return not line[2].strip()


def _keep(line: tuple) -> bool:
    return bool(line[2].strip())


def _keyed(shard_size: int, element) -> tuple:
    """((line, id, text), row) -> (shard, (shard, row, id, text, line)), the id defaulting to the line (as a .txt)."""
    (line, rid, text), row = element
    shard = row // shard_size
    return shard, (shard, row, str(rid if rid is not None else line), text, line)


def _shard_of(shard: int) -> int:
    return shard  # partitionBy: shard i -> partition i


_RECORDS = "shard long, row long, id string, text string, line long"
_DONE = "entry string, pid int, loaded boolean"


def _records(df, column: str, id_column: Optional[str], on_empty: str, shard_size: int):
    """The DataFrame numbered as ``hubembed.extract`` numbers a file (rows in order, the empty ones skipped):
    (a DataFrame of records with shard i in partition i, skipped [line, why], the persisted lines to release)."""
    from pyspark import StorageLevel

    cols = [F.col(column)] + ([F.col(id_column).cast("string")] if id_column else [])
    lines = df.select(*cols).rdd.zipWithIndex().map(_line).persist(StorageLevel.MEMORY_AND_DISK)
    empty = [] if on_empty == "keep" else sorted(lines.filter(_is_empty).map(lambda r: r[0]).collect())
    if empty and on_empty == "fail":
        lines.unpersist()
        raise InputError(f"column {column!r}: row {empty[0]} (1-based) is empty (use on_empty='skip' or 'keep')")
    kept = lines.filter(_keep) if empty else lines
    n_shards = max(1, math.ceil(kept.count() / shard_size))
    keyed = kept.zipWithIndex().map(functools.partial(_keyed, shard_size)).partitionBy(n_shards, _shard_of)
    records = df.sparkSession.createDataFrame(keyed.values(), _RECORDS)  # narrow: the partitions stay
    return records, [[line, "empty"] for line in empty], lines


def _prepare_out(out) -> str:
    """The output folder: local (every executor writes its shards there: a shared mount on a cluster), new or
    empty, checked before the model loads."""
    out = os.fspath(out)
    if "://" in out:
        raise InputError(
            f"out={out!r}: hubembed.spark.extract writes through the local file system; give a folder every "
            f"executor can write (a shared mount), or write vectors with embed() and df.write"
        )
    out = os.path.abspath(os.path.expanduser(out))
    if os.path.exists(os.path.join(out, store.MANIFEST)):
        raise OutputError(
            f"output folder {out} already holds an extraction; a Spark run does not resume: give another folder "
            f"(or run hubembed.extract on a file to resume locally)"
        )
    store.ShardStore(out, {}, resume=False)  # the local run's checks: a new or empty folder
    return out


def extract(
    df,
    out: str,
    column: str = "text",
    *,
    id_column: Optional[str] = None,
    model: str = "minilm",
    preprocess=None,
    seq_length: Optional[int] = None,
    backend: str = "auto",
    trust: str = "registry",
    quantize: Optional[str] = None,
    prompts: Optional[Dict[str, str]] = None,
    level: str = "sentence",
    format: Optional[str] = None,
    subword: str = "first",
    dtype: str = "float32",
    batch_size: int = BATCH_SIZE,
    max_tokens: Optional[int] = MAX_TOKENS,
    spec: Optional[EmbedSpec] = None,
    shard_size: Optional[int] = None,
    on_empty: str = "skip",
    keep_text: bool = False,
    **spec_keywords,
) -> dict:
    """Embed ``df``'s ``column`` into shards + manifest under ``out``: ``hubembed.extract``'s files, from a DataFrame.

    Rows are numbered in the DataFrame's order (partition by partition; make it deterministic, e.g. read it from
    files, or give ``id_column``); a DataFrame of a text file's lines gives the shard files ``hubembed.extract``
    gives for that file. Each shard is embedded and written by one task; the driver writes the manifest last.

    Args:
        df, column: a ``pyspark.sql.DataFrame`` (classic, not Spark Connect) and its string column.
        out: a new or empty local folder every executor can write (a shared mount on a cluster).
        id_column: a column carried as the row's id (as a string); default: the 1-based row number.
        on_empty: skip (default) | keep | fail, for null, empty and whitespace-only texts.
        Other arguments: as ``hubembed.extract`` (the feature cache is off: a worker's disk is its own; no resume:
            rerun into an empty folder).

    Returns:
        the manifest, with the run's summary (``python_workers_this_run``: the worker processes that embedded
        shards; ``model_loads_this_run``: how many of them loaded the model for it, at most one each).

    Raises:
        MissingDependencyError: pyspark is not installed.
        InputError: bad arguments, before any Spark job; on_empty="fail" and an empty text.
        OutputError: the folder holds other files or an extraction, or a write failed.
    """
    _need_spark()
    _check_frame(df, column, id_column)
    _check_unique_ids(df, id_column)
    if on_empty not in inputs.ON_EMPTY:
        raise InputError(f"on_empty={on_empty!r}; valid: {', '.join(inputs.ON_EMPTY)}")
    load = _load_options(
        model,
        preprocess=preprocess,
        seq_length=seq_length,
        backend=backend,
        trust=trust,
        quantize=quantize,
        prompts=prompts,
    )
    corpus_job = CorpusJob.from_arguments(
        locals(), skip=("df", "load", "model", *LOAD_KEYWORDS), options=load, out=os.fspath(out), cache=False
    )
    job = _job(load, corpus_job.settings.spec, batch_size, max_tokens)
    settings = dataclasses.replace(corpus_job.settings, spec=job.spec)
    out = _prepare_out(out)
    local = corpus.Embedder(_encoder(job.load)[0], settings)  # the header: weights fingerprint, resolved spec
    source = {"format": "spark", "column": column, "id_column": id_column, "on_empty": on_empty}
    header = dict(corpus.make_header(local, source, "-"), input=source)
    start = time.perf_counter()
    records, skipped, lines = _records(df, column, id_column, on_empty, settings.shard_size)
    try:  # in the Arrow workers embed() uses: the same per-worker models
        write = functools.partial(_embed_shards, job, settings, local.weights_sha256, out)
        done = [(json.loads(r.entry), r.pid, r.loaded) for r in records.mapInPandas(write, _DONE).collect()]
    finally:
        lines.unpersist()
    return _write_manifest(out, header, done, skipped, time.perf_counter() - start)


def _write_manifest(out: str, header: dict, done, skipped, seconds: float) -> dict:
    entries = sorted((entry for entry, _, _ in done), key=lambda e: e["index"])
    if [e["index"] for e in entries] != list(range(len(entries))):
        raise OutputError(f"{out}: shards {[e['index'] for e in entries]} are not consecutive")
    rows = sum(e["rows"] for e in entries)
    summary = {
        "rows": rows,
        "rows_this_run": rows,
        "shards": len(entries),
        "skipped": len(skipped),
        "runner": "spark",
        "python_workers_this_run": len({pid for _, pid, _ in done}),
        "model_loads_this_run": sum(bool(loaded) for _, _, loaded in done),
        "seconds_this_run": round(seconds, 3),
        "rows_per_second_this_run": round(rows / seconds, 1) if seconds > 0 else None,
    }
    m = store.manifest(header, entries, skipped, True, summary)
    write_atomic(os.path.join(out, store.MANIFEST), store.manifest_bytes(m))
    return m
