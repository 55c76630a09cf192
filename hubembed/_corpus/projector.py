"""TensorBoard's Embedding Projector: extractions as a TensorBoard log folder, and as the two TSV files that
projector.tensorflow.org loads (``hubembed projector``, ``Extraction.to_projector``, ``to_projector``).

Layout of a log folder (``tensorboard --logdir LOGDIR``, then the Projector tab)::

    projector_config.pbtxt        a ProjectorConfig: one embedding per extraction, its metadata file
    checkpoint, embeddings.ckpt-1.*   a tf.train.Checkpoint: one [points, D] float32 variable per extraction
    NAME/metadata.tsv             a header row, then one row per point (id, text, stored columns...)
    NAME/vectors.tsv              the same points' vectors, tab-separated (projector.tensorflow.org: "Load")
    hubembed_projector.json       what was written: each extraction's full point count, the sample, the rule

The projector loads every point into the browser, so a large extraction is shown as a sample: at most
``max_points`` points, a uniform sample without replacement (``numpy.random.default_rng(seed).choice``), kept in
row order. The same rule picks the same positions of two extractions of one corpus (same count, same seed). A
point is a text (sentence level) or a word piece / word (token / word level; metadata: the token or word, its
text, id and character span). Codes: int8/uint8 are dequantized with the calibration ranges (``ranges=``, checked
against the manifest's sha256); binary/ubinary are unpacked into +-1 per bit (the stored signs, exactly: squared
Euclidean distance is 4x the Hamming distance, so the projector's neighbours are the Hamming neighbours).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union, cast

import numpy as np

from hubembed._corpus import shards as shard_formats
from hubembed._corpus.store import Extraction, check_complete, open_extraction
from hubembed._pipeline import quantize
from hubembed._util import require_tensorflow, versions
from hubembed.errors import InputError, OutputError, missing

DEFAULT_MAX_POINTS = 10_000
RECORD = "hubembed_projector.json"
CONFIG = "projector_config.pbtxt"  # tensorboard.plugins.projector.metadata.PROJECTOR_FILENAME
CHECKPOINT = "embeddings.ckpt"
TEXT_CHARS = 500  # a longer text is cut (with "...") in metadata.tsv: every label goes to the browser
SAMPLE_RULE = (
    "a uniform sample without replacement of min(points, max_points) point positions, "
    "numpy.random.default_rng(seed).choice(points, max_points, replace=False), kept in row order"
)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")
RESERVED = ("read", "restore", "save", "save_counter", "sync", "write")  # tf.train.Checkpoint's own attributes
ExtractionLike = Union[str, "os.PathLike[str]", Extraction]


@dataclass
class Source:
    """One extraction to show, checked: its name in the log folder and how its vectors become float32."""

    ex: Extraction
    name: str
    precision: str = "float32"
    ranges: Optional[quantize.Ranges] = None


@dataclass
class Points:
    """The sampled points of one extraction: float32 vectors and their metadata columns, in order."""

    total: int
    vectors: np.ndarray
    columns: Dict[str, List[str]] = field(default_factory=dict)


# -- checks (before anything is read) -------------------------------------------------------------------------------
def check_logdir(logdir: str, overwrite: bool) -> None:
    """Refuse a log folder that is a file, holds other files, or holds a projector log without ``overwrite``."""
    if not isinstance(logdir, (str, os.PathLike)) or not str(logdir):
        raise InputError(f"logdir={logdir!r}: a folder path")
    if not os.path.exists(logdir):
        return
    if not os.path.isdir(logdir):
        raise OutputError(f"log folder {logdir} is a file; give a folder (new, empty, or a projector log to replace)")
    entries = os.listdir(logdir)
    if entries and RECORD not in entries:
        raise OutputError(
            f"log folder {logdir} holds other files ({', '.join(sorted(entries)[:5])}); give a new or empty folder "
            f"(TensorBoard reads everything under its --logdir)"
        )
    if entries and not overwrite:
        raise OutputError(
            f"log folder {logdir} already holds a projector log; replace it with overwrite=True (--overwrite), "
            f"or give another folder"
        )


def check_sample(max_points: Any, seed: Any) -> None:
    if isinstance(max_points, bool) or not isinstance(max_points, (int, np.integer)) or max_points <= 0:
        raise InputError(f"max_points={max_points!r}: a positive number of points (the projector loads them all)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed={seed!r}: a non-negative integer")


def _open(item: ExtractionLike) -> Extraction:
    ex = item if isinstance(item, Extraction) else open_extraction(os.fspath(item))
    check_complete(ex, "showing it")
    if len(ex) == 0:
        raise InputError(f"{ex.out} holds no rows: nothing to show")
    return ex


def _names(exs: Sequence[Extraction], names: Optional[Sequence[str]]) -> List[str]:
    """The given names (checked), or each folder's name made safe, numbered where two are the same."""
    if names is not None:
        names = [names] if isinstance(names, str) else list(names)
        if len(names) != len(exs):
            raise InputError(f"names={names!r}: one per extraction ({len(exs)})")
        bad = [n for n in names if not isinstance(n, str) or not NAME.match(n)]
        if bad:
            raise InputError(f"names={bad!r}: letters, digits, _ and - (not first), a folder and a tensor name each")
        if len(set(names)) != len(names):
            raise InputError(f"names={names!r}: each extraction needs its own")
        return names
    out: List[str] = []
    for ex in exs:
        base = re.sub(r"[^A-Za-z0-9_-]+", "_", os.path.basename(os.path.normpath(os.path.abspath(ex.out))))
        base = base.lstrip("_-") or "extraction"
        name, n = base, 1
        while name in out:
            n += 1
            name = f"{base}-{n}"
        out.append(name)
    return out


def _source(ex: Extraction, name: str, ranges: Optional[quantize.RangesLike]) -> Source:
    precision = ex.record.get("precision", "float32")
    if precision not in quantize.CALIBRATED:
        return Source(ex, name, precision)
    if ranges is None:
        raise InputError(
            f"{ex.out} holds {precision} codes: give the calibration ranges it was quantized with, ranges= (a "
            f"hubembed.quantize.Ranges or its saved .npz), to show them as float32 bucket middles"
        )
    r = quantize.Ranges.of(ranges)
    recorded = (ex.record.get("ranges") or {}).get("sha256")
    if r.sha256 != recorded:
        raise InputError(
            f"ranges (sha256 {r.sha256[:16]}...) are not the ones {ex.out} was quantized with ({str(recorded)[:16]}...)"
        )
    return Source(ex, name, precision, r)


def sources(
    extractions: Union[ExtractionLike, Sequence[ExtractionLike]],
    names: Optional[Sequence[str]] = None,
    ranges: Union[None, quantize.RangesLike, Mapping[str, quantize.RangesLike]] = None,
) -> List[Source]:
    """The extractions opened and checked (complete, not empty, codes that can be shown), named."""
    if isinstance(extractions, (str, os.PathLike, Extraction)):
        extractions = [extractions]
    if not isinstance(extractions, Sequence) or not len(extractions):
        raise InputError("extractions: one or more extraction folders (or Extraction objects)")
    exs = [_open(e) for e in extractions]
    named = _names(exs, names)
    per = ranges if isinstance(ranges, Mapping) else {n: ranges for n in named}
    unknown = sorted(set(per) - set(named))
    if unknown:
        raise InputError(f"ranges for {unknown}: no extraction of that name (names: {', '.join(named)})")
    return [_source(ex, n, per.get(n)) for ex, n in zip(exs, named)]


# -- the sample -----------------------------------------------------------------------------------------------------
def sample_positions(total: int, max_points: int, seed: int) -> np.ndarray:
    """Which of ``total`` points are shown: all of them, or ``max_points`` (SAMPLE_RULE), ascending."""
    if total <= max_points:
        return np.arange(total, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(total, size=max_points, replace=False)).astype(np.int64)


def _float32(src: Source, codes: np.ndarray) -> np.ndarray:
    """Stored vectors [n, ...] -> float32 [n, D]: codes dequantized or unpacked, a layer axis flattened."""
    codes = np.asarray(codes)
    if src.precision in quantize.CALIBRATED:
        x = quantize.dequantize(codes, src.precision, src.ranges)
    elif src.precision in ("binary", "ubinary"):
        u = (codes.astype(np.int16) + 128).astype(np.uint8) if src.precision == "binary" else codes.astype(np.uint8)
        x = np.unpackbits(u, axis=-1).astype(np.float32) * 2 - 1
    else:
        x = codes.astype(np.float32)
    return x.reshape(len(x), -1)


def _clean(value: Any) -> str:
    """A metadata cell: one line, no tab, at most TEXT_CHARS characters."""
    s = re.sub(r"[\t\r\n\x0b\x0c\x85\u2028\u2029]+", " ", "" if value is None else str(value))
    return s if len(s) <= TEXT_CHARS else s[: TEXT_CHARS - 3] + "..."


def _shard_path(ex: Extraction, i: int, key: str = "file") -> str:
    s = ex.shards[i]
    return os.path.join(ex.out, s.get(key, s["file"]))


def stored_columns(ex: Extraction, i: int, local: np.ndarray) -> Dict[str, List[Any]]:
    """Sentence level: the columns shard ``i`` stores besides ids and vectors (a text, labels...), at rows ``local``.

    Parquet: every column of scalar values; TFRecord: every feature of one value; npy: each JSON list file the
    shard's manifest entry names as ``<column>_file`` (``text_file``: part-00000.text.json).
    """
    out: Dict[str, List[Any]] = {}
    skip = ("id", "vector", "vectors")
    if ex.format == "parquet":
        _, pq = shard_formats._pyarrow()
        schema = pq.read_schema(_shard_path(ex, i))
        names = [f.name for f in schema if f.name not in skip and not _nested(f.type)]
        if names:
            table = pq.read_table(_shard_path(ex, i), columns=names)
            out = {n: [table.column(n)[int(r)].as_py() for r in local] for n in names}
    elif ex.format == "tfrecord":
        out = _tfrecord_columns(_shard_path(ex, i), local, skip)
    else:
        for key, fname in ex.shards[i].items():
            if key.endswith("_file") and key != "ids_file" and str(fname).endswith(".json"):
                with open(os.path.join(ex.out, fname), encoding="utf-8") as f:
                    values = json.load(f)
                out[key[: -len("_file")]] = [values[int(r)] for r in local]
    return out


def _nested(t: Any) -> bool:  # a pyarrow DataType (no stubs)
    return bool(getattr(t, "num_fields", 0)) or "list" in str(t) or "struct" in str(t) or "map" in str(t)


def _tfrecord_columns(path: str, local: np.ndarray, skip: Sequence[str]) -> Dict[str, List[Any]]:
    import tensorflow as tf

    wanted = set(int(r) for r in local)
    rows: Dict[int, Dict[str, Any]] = {}
    for r, raw in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
        if r in wanted:
            feats = tf.train.Example.FromString(raw).features.feature
            row = {}
            for k, f in feats.items():
                kind = f.WhichOneof("kind")
                values = list(getattr(f, kind).value) if kind else []
                if k not in skip and len(values) == 1:
                    row[k] = values[0].decode("utf-8", "replace") if isinstance(values[0], bytes) else values[0]
            rows[r] = row
    names = list(dict.fromkeys(k for row in rows.values() for k in row))
    return {n: [rows[int(r)].get(n, "") for r in local] for n in names}


# -- the points -----------------------------------------------------------------------------------------------------
def _shard_rows(ex: Extraction, rows: np.ndarray) -> List[tuple]:
    """(shard index, the rows of ``rows`` in it (ascending), their positions in the shard) per shard touched."""
    out = []
    for i, s in enumerate(ex.shards):
        first = int(s["first_row"])
        inside = rows[(rows >= first) & (rows < first + int(s["rows"]))]
        if len(inside):
            out.append((i, inside, inside - first))
    return out


def sentence_points(src: Source, max_points: int, seed: int) -> Points:
    """A point per text: the sampled rows' vectors; metadata: a stored text first, the id, stored columns, the row."""
    ex = src.ex
    rows = sample_positions(len(ex), max_points, seed)
    vectors, ids, stored = [], [], []
    for i, _, local in _shard_rows(ex, rows):
        vectors.append(_float32(src, np.asarray(ex.shard(i))[local]))
        shard_ids = shard_formats.read_ids(ex.format, _shard_path(ex, i, "ids_file"))
        ids += [shard_ids[int(r)] for r in local]
        stored.append((len(local), stored_columns(ex, i, local)))
    names = list(dict.fromkeys(k for _, cols in stored for k in cols))
    extra = {n: [v for size, cols in stored for v in cols.get(n, [""] * size)] for n in names}
    columns: Dict[str, List[Any]] = {}
    if "text" in extra:  # the projector labels points by the first column of words (ids are often numbers)
        columns["text"] = extra.pop("text")
    columns["id"] = ids
    columns.update(extra)
    columns["row" if "row" not in columns else "position"] = [int(r) for r in rows]
    return Points(len(ex), np.concatenate(vectors), _strings(columns))


def _strings(columns: Dict[str, List[Any]]) -> Dict[str, List[str]]:
    return {k: [_clean(v) for v in vs] for k, vs in columns.items()}


def piece_counts(ex: Extraction) -> np.ndarray:
    """Token / word level: the pieces (word pieces or words) of every row, read without the vectors where possible."""
    counts = []
    for i in range(len(ex.shards)):
        if ex.format == "parquet":
            _, pq = shard_formats._pyarrow()
            import pyarrow.compute as pc

            col = pq.read_table(_shard_path(ex, i), columns=[ex.level]).column(ex.level)
            counts.append(pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64))
        else:
            counts.append(np.array([len(p) for p in ex.shard(i)], np.int64))
    return np.concatenate(counts) if counts else np.zeros(0, np.int64)


def piece_points(src: Source, max_points: int, seed: int) -> Points:
    """A point per word piece (tokens level) or word (words level); metadata: it, its text's id and text, its span."""
    ex = src.ex
    counts = piece_counts(ex)
    starts = np.concatenate([[0], np.cumsum(counts)])
    picked = sample_positions(int(starts[-1]), max_points, seed)
    rows = np.searchsorted(starts, picked, side="right") - 1
    within = picked - starts[rows]
    unit = "token" if ex.level == "tokens" else "word"
    cols: Dict[str, List[Any]] = {
        unit: [],
        "id": [],
        "text": [],
        "start": [],
        "end": [],
        "row": [],
        unit + "_index": [],
    }
    vectors = []
    for i, inside, local in _shard_rows(ex, np.unique(rows)):
        shard = ex.shard(i)
        for r, lr in zip(inside, local):
            p = cast(shard_formats.Pieces, shard[int(lr)])
            js = within[rows == r]
            vectors.append(_float32(src, np.asarray(p.vectors)[js]))
            for j in js:
                cols[unit].append(p.pieces[j])
                cols["id"].append(p.id)
                cols["text"].append(p.text)
                cols["start"].append(int(p.spans[j][0]))
                cols["end"].append(int(p.spans[j][1]))
                cols["row"].append(int(r))
                cols[unit + "_index"].append(int(j))
    dim = int(ex.record.get("dim") or 0)
    return Points(
        int(starts[-1]), np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32), _strings(cols)
    )


# -- writing --------------------------------------------------------------------------------------------------------
def _projector_api() -> Any:
    """tensorboard.plugins.projector (TensorBoard's own API: ProjectorConfig, visualize_embeddings)."""
    require_tensorflow("A TensorBoard projector log (its checkpoint)")
    try:
        return importlib.import_module("tensorboard.plugins.projector")
    except ImportError as e:
        raise missing("tensorboard", "'hubembed[projector]'", "A TensorBoard projector log") from e


def tensor_name(attribute: str) -> str:
    """The checkpoint key of a ``tf.train.Checkpoint`` attribute: the name the projector's tensor menu shows."""
    return f"{attribute}/.ATTRIBUTES/VARIABLE_VALUE"


def _attribute(name: str, points: Points) -> str:
    """The checkpoint attribute of an extraction: its name, and the sample when it is one (the menu shows both)."""
    if len(points.vectors) < points.total:
        return f"{name}-sample-{len(points.vectors)}-of-{points.total}"
    return name + "_" if name in RESERVED else name


def _write_tsv(folder: str, name: str, points: Points) -> None:
    os.makedirs(os.path.join(folder, name))
    np.savetxt(os.path.join(folder, name, "vectors.tsv"), points.vectors, fmt="%.7g", delimiter="\t")
    cols = list(points.columns)
    with open(os.path.join(folder, name, "metadata.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(cols) + "\n")  # a header row: more than one column
        for values in zip(*(points.columns[c] for c in cols)):
            f.write("\t".join(values) + "\n")


def _entry(src: Source, points: Points, attribute: str) -> dict:
    ex = src.ex
    return {
        "name": src.name,
        "tensor_name": tensor_name(attribute),
        "extraction": os.path.abspath(ex.out),
        "model": ex.header.get("model"),
        "level": ex.level,
        "precision": src.precision,
        "rows": len(ex),
        "points_total": points.total,
        "points": len(points.vectors),
        "sampled": len(points.vectors) < points.total,
        "dim": int(points.vectors.shape[1]),
        "metadata": f"{src.name}/metadata.tsv",
        "vectors": f"{src.name}/vectors.tsv",
        "metadata_columns": list(points.columns),
    }


def _write(folder: str, shown: List[tuple], record: dict) -> None:
    """The log folder's files into ``folder``: TSVs, the checkpoint, the projector config, the record."""
    projector = _projector_api()
    import tensorflow as tf

    for src, points, _ in shown:
        _write_tsv(folder, src.name, points)
    variables = {attr: tf.Variable(points.vectors, trainable=False) for _, points, attr in shown}
    tf.train.Checkpoint(**variables).save(os.path.join(folder, CHECKPOINT))
    config = projector.ProjectorConfig()
    for src, _, attr in shown:
        embedding = config.embeddings.add()
        embedding.tensor_name = tensor_name(attr)
        embedding.metadata_path = f"{src.name}/metadata.tsv"  # relative to the config file
    projector.visualize_embeddings(folder, config)
    with open(os.path.join(folder, RECORD), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, sort_keys=True)


def to_projector(
    extractions: Union[ExtractionLike, Sequence[ExtractionLike]],
    logdir: str,
    *,
    names: Optional[Sequence[str]] = None,
    max_points: int = DEFAULT_MAX_POINTS,
    seed: int = 0,
    ranges: Union[None, quantize.RangesLike, Mapping[str, quantize.RangesLike]] = None,
    overwrite: bool = False,
) -> dict:
    """Write extractions, side by side, as a TensorBoard log folder for the Embedding Projector.

    ``tensorboard --logdir LOGDIR`` shows them in its Projector tab (one tensor per extraction); each
    ``LOGDIR/NAME/vectors.tsv`` and ``metadata.tsv`` load into projector.tensorflow.org as they are.

    Args:
        extractions: extraction folders (or ``Extraction`` objects), complete; or one.
        logdir: the log folder: new, empty, or a projector log written before (with ``overwrite``).
        names: one per extraction (letters, digits, _ and -): its folder and tensor name; default: each folder's
            name (numbered where two are the same).
        max_points: at most this many points per extraction (the projector loads them all into the browser): a
            uniform sample without replacement, seeded by ``seed``, in row order (module docstring). A point is a
            text, a word piece (tokens level) or a word (words level).
        ranges: int8/uint8 extractions: the calibration ranges they were quantized with (one for all, or
            {name: ranges}); their codes are shown as the buckets' middles.
        overwrite: replace a projector log already in ``logdir``.

    Returns:
        The record written to ``LOGDIR/hubembed_projector.json``: per extraction its tensor name, points shown and
        in all, metadata columns, files; the sample rule, max_points and seed.

    Raises:
        InputError: not an extraction, an incomplete or empty one, bad names, max_points or seed, int8/uint8 codes
            without their ranges. OutputError: ``logdir`` is a file, holds other files, or (without ``overwrite``)
            a projector log; a failed write. All checked before any vector is read.
    """
    check_sample(max_points, seed)
    check_logdir(logdir, overwrite)
    srcs = sources(extractions, names, ranges)
    _projector_api()
    shown = []
    for src in srcs:
        read = sentence_points if src.ex.level == "sentence" else piece_points
        points = read(src, int(max_points), int(seed))
        if not len(points.vectors):
            raise InputError(f"{src.ex.out} holds no {src.ex.level} (its texts are empty): nothing to show")
        shown.append((src, points, _attribute(src.name, points)))
    record = {
        "format": "hubembed-projector",
        "format_version": 1,
        "logdir": os.path.abspath(logdir),
        "sample": {"rule": SAMPLE_RULE, "max_points": int(max_points), "seed": int(seed)},
        "embeddings": [_entry(src, points, attr) for src, points, attr in shown],
        "versions": versions("tensorflow", "tensorboard"),
    }
    _into_place(logdir, overwrite, lambda folder: _write(folder, shown, record))
    return record


def _into_place(logdir: str, overwrite: bool, write: Any) -> None:
    """Write a new folder beside ``logdir`` (``write(folder)``), then put it in ``logdir``'s place."""
    parent = os.path.dirname(os.path.abspath(logdir))
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(logdir))}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise OutputError(f"cannot write beside {logdir}: {e.strerror or e}") from None
    try:
        write(tmp)
        check_logdir(logdir, overwrite)  # still what it was when checked
        if os.path.isdir(logdir):
            shutil.rmtree(logdir)  # empty, or a projector log (overwrite)
        os.replace(tmp, logdir)
    except OSError as e:
        raise OutputError(f"writing the projector log {logdir} failed: {e.strerror or e}") from None
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
