"""An extraction as a ``tf.data.Dataset`` (``Extraction.as_dataset``), and the ``tf.Example`` description of its
TFRecord shards (``feature_spec``, public as ``hubembed.tfdata.feature_spec``).

Reading: row order, shard after shard, a shard opened when its first row is asked for (tf.data's own prefetch,
injected by default, may fetch a block ahead), so memory stays bounded by a shard whatever the corpus size:

    npy       ``Dataset.from_generator``: each shard memory-mapped, read in blocks of ``BLOCK`` rows
    parquet   ``Dataset.from_generator``: one shard read at a time (``shards.read``), released before the next
    tfrecord  ``TFRecordDataset`` over the shard files, one after the other, each record parsed with ``feature_spec``
              in a parallel map (no Python per row)

(A generator is Python: npy and parquet datasets run in this process, not on tf.data service workers; TFRecord
datasets are TensorFlow ops only.)

Elements (``columns`` chooses ``x``; ``labels`` adds ``y``): ``x`` is one column's tensor when ``columns`` is a name,
a dict {name: tensor} when it is a list; ``(x, y)`` with ``labels``, which is what ``keras.Model.fit`` takes.

    sentence   id: string []; vector: [D] (or [k, H], npy with combine="none") in the stored dtype (float32, float16,
               or the int8/uint8/binary codes of ``precision``); text: string [] (extracted with keep_text).
               Default x: vector
    tokens     id, text: string []; tokens: string [n]; token_ids, start, end: int32 [n]; vectors: [n, D]; mask: bool
               [n] (True for every piece; False where ``padded_batch`` pads). Default x: {"vectors", "mask"} (the
               input of a masked pooling, e.g. ``hubembed.keras.MaskedMeanPooling``)
    words      the same, with words for tokens and no token_ids

Batching (``batch_size``): sentence rows with ``Dataset.batch``; token and word rows with ``Dataset.padded_batch``
(each batch padded to its longest row: zeros, empty strings, ``mask`` False). Labels: one per row, all of one shape
(a class, a number, a fixed-size array): a sequence aligned with the rows, or a mapping id -> label that covers
every id. Cardinality is asserted (``len(ex)`` rows: ``fit`` knows its steps); no shuffling and no prefetch is added
(``.shuffle(n)``, ``.prefetch(tf.data.AUTOTUNE)`` as usual).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from hubembed._corpus import shards as shard_formats
from hubembed._util import require_tensorflow
from hubembed.errors import InputError

if TYPE_CHECKING:
    from hubembed._corpus.store import Extraction

BLOCK = 1024  # npy/parquet sentence rows handed to tf.data at a time (then unbatched)
COLUMNS = {
    "sentence": ("id", "vector"),
    "tokens": ("id", "text", "tokens", "token_ids", "start", "end", "vectors", "mask"),
    "words": ("id", "text", "words", "start", "end", "vectors", "mask"),
}
DEFAULT_COLUMNS: Dict[str, Union[str, Tuple[str, ...]]] = {
    "sentence": "vector",
    "tokens": ("vectors", "mask"),
    "words": ("vectors", "mask"),
}
INT_COLUMNS = ("token_ids", "start", "end")  # int32 [n], whatever the shard stores (TFRecord: int64)
Columns = Union[str, Sequence[str], None]


def _tf() -> Any:
    require_tensorflow("tf.data of an extraction (as_dataset, feature_spec)")
    import tensorflow as tf

    return tf


# -- checking the arguments, before any work ----------------------------------------------------------------------
def check_columns(ex: Extraction, columns: Columns) -> Tuple[Tuple[str, ...], bool]:
    """(the column names, whether ``x`` is one tensor rather than a dict).

    Raises:
        InputError: a name the level does not have, a repeat, no name, or not names at all.
    """
    valid = COLUMNS[ex.level] + (("text",) if ex.level == "sentence" and ex.has_text else ())
    columns = DEFAULT_COLUMNS[ex.level] if columns is None else columns
    single = isinstance(columns, str)
    names = (columns,) if isinstance(columns, str) else tuple(columns) if isinstance(columns, (list, tuple)) else None
    if names is None or not names or not all(isinstance(c, str) for c in names):
        raise InputError(f"columns={columns!r}; valid: a column name, or a list of them, of {', '.join(valid)}")
    unknown = [c for c in names if c not in valid]
    if unknown:
        raise InputError(
            f"columns: {', '.join(map(repr, unknown))} not in a {ex.level}-level extraction; valid: {', '.join(valid)}"
        )
    if len(set(names)) < len(names):
        raise InputError(f"columns={columns!r} names a column twice")
    return names, single


def check_batching(batch_size: Any, drop_remainder: Any) -> None:
    """Raises InputError: a batch size that is neither None nor an integer >= 1, or drop_remainder without one."""
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1
    ):
        raise InputError(f"batch_size={batch_size!r}; valid: None (one row per element) or an integer >= 1")
    if not isinstance(drop_remainder, bool):
        raise InputError(f"drop_remainder={drop_remainder!r}; valid: True or False")
    if drop_remainder and batch_size is None:
        raise InputError("drop_remainder=True drops a last, smaller batch: give batch_size too")


def label_array(ex: Extraction, labels: Any) -> Optional[np.ndarray]:
    """The labels, one per row in row order: ``labels`` as given (a sequence aligned with the rows), or looked up by
    id (a mapping id -> label; ids compared as strings, as ``ex.by_id`` compares them). None: no labels.

    Raises:
        InputError: another number of labels than rows, ids a mapping lacks, labels of different shapes.
    """
    if labels is None:
        return None
    if isinstance(labels, Mapping):
        by_id = {str(k): v for k, v in labels.items()}
        ids = ex.ids()
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise InputError(
                f"labels: no label for {len(missing)} of the {len(ids)} ids of {ex.out} "
                f"({', '.join(map(repr, missing[:5]))}{', ...' if len(missing) > 5 else ''})"
            )
        labels = [by_id[i] for i in ids]
    elif isinstance(labels, (str, bytes)) or not hasattr(labels, "__len__"):
        raise InputError(f"labels={labels!r:.60}; valid: a sequence of one label per row, or a mapping id -> label")
    try:
        y = np.asarray(labels)
    except ValueError as e:  # numpy refuses ragged nesting
        raise InputError(f"labels: one label per row, all of one shape ({e})") from None
    if y.dtype == object or y.ndim == 0:
        raise InputError("labels: one label per row, all of one shape and type (numbers, strings, fixed-size arrays)")
    if len(y) != len(ex):
        raise InputError(f"labels: {len(y)} labels for the {len(ex)} rows of {ex.out}; give one per row, in row order")
    return y


# -- the rows ------------------------------------------------------------------------------------------------------
def _vector_spec(ex: Extraction) -> Tuple[Tuple[int, ...], np.dtype]:
    """One stored vector's shape and dtype: an npy shard's header (combine="none" keeps [k, H]), else the record."""
    if ex.format == "npy" and ex.shards:
        first = np.load(os.path.join(ex.out, ex.shards[0]["file"]), mmap_mode="r")  # the header only
        return tuple(first.shape[1:]), first.dtype
    dtype = "float32" if ex.format == "tfrecord" else ex.record.get("dtype", "float32")
    return (int(ex.record["dim"]),), np.dtype(dtype)


def row_signature(ex: Extraction, names: Sequence[str]) -> Dict[str, Any]:
    """{column: tf.TensorSpec} of one row."""
    tf = _tf()
    shape, dtype = _vector_spec(ex)
    ragged_int = tf.TensorSpec([None], tf.int32)
    specs = {
        "id": tf.TensorSpec([], tf.string),
        "text": tf.TensorSpec([], tf.string),
        "vector": tf.TensorSpec(shape, tf.as_dtype(dtype)),
        "tokens": tf.TensorSpec([None], tf.string),
        "words": tf.TensorSpec([None], tf.string),
        "token_ids": ragged_int,
        "start": ragged_int,
        "end": ragged_int,
        "vectors": tf.TensorSpec([None, *shape], tf.as_dtype(dtype)),
        "mask": tf.TensorSpec([None], tf.bool),
    }
    return {k: specs[k] for k in names}


def _utf8(values: Sequence[str]) -> np.ndarray:
    return np.array([v.encode("utf-8") for v in values], dtype=object).reshape(len(values))


def _shard_path(ex: Extraction, shard: dict, key: str = "file") -> str:
    return os.path.join(ex.out, shard.get(key, shard["file"]))


def _sentence_blocks(ex: Extraction, names: Sequence[str], dtype: np.dtype) -> Iterator[Dict[str, np.ndarray]]:
    """Blocks of at most BLOCK sentence rows, shard after shard; a shard is opened when its first row is asked for."""
    for s in ex.shards:
        vectors = shard_formats.read(ex.format, "sentence", _shard_path(ex, s)) if "vector" in names else None
        ids = shard_formats.read_ids(ex.format, _shard_path(ex, s, "ids_file")) if "id" in names else None
        texts = shard_formats.read_texts(ex.format, _shard_path(ex, s, "text_file")) if "text" in names else None
        for a in range(0, int(s["rows"]), BLOCK):
            block: Dict[str, np.ndarray] = {}
            if ids is not None:
                block["id"] = _utf8(ids[a : a + BLOCK])
            if texts is not None:
                block["text"] = _utf8(texts[a : a + BLOCK])
            if vectors is not None:
                block["vector"] = np.asarray(vectors[a : a + BLOCK], dtype)
            yield block
        del vectors, ids, texts  # released before the next shard is read


def piece_columns(p: shard_formats.Pieces, level: str) -> Dict[str, np.ndarray]:
    """Every column of one token- or word-level row (``shards.Pieces``)."""
    spans = np.asarray(p.spans).reshape(-1, 2).astype(np.int32)
    out = {
        "id": np.array(p.id.encode("utf-8"), dtype=object),
        "text": np.array(p.text.encode("utf-8"), dtype=object),
        level: _utf8(p.pieces),
        "start": spans[:, 0],
        "end": spans[:, 1],
        "vectors": np.asarray(p.vectors),
        "mask": np.ones(len(p.pieces), bool),
    }
    if level == "tokens":
        out["token_ids"] = np.asarray(p.token_ids, np.int32).reshape(-1)
    return out


def _piece_rows(ex: Extraction, names: Sequence[str]) -> Iterator[Dict[str, np.ndarray]]:
    """Token- or word-level rows, shard after shard (parquet: one shard in memory at a time)."""
    for s in ex.shards:
        rows = shard_formats.read(ex.format, ex.level, _shard_path(ex, s))
        assert isinstance(rows, list)  # token and word level: Pieces
        for p in rows:
            cols = piece_columns(p, ex.level)
            yield {k: cols[k] for k in names}
        del rows


def _generated_rows(ex: Extraction, names: Sequence[str]) -> Any:
    """npy and parquet shards through ``Dataset.from_generator`` (a new generator, from the first shard, per pass)."""
    tf = _tf()
    signature = row_signature(ex, names)
    if ex.level != "sentence":
        return tf.data.Dataset.from_generator(lambda: _piece_rows(ex, names), output_signature=signature)
    dtype = _vector_spec(ex)[1]
    blocks = {k: tf.TensorSpec([None, *v.shape], v.dtype) for k, v in signature.items()}
    ds = tf.data.Dataset.from_generator(lambda: _sentence_blocks(ex, names, dtype), output_signature=blocks)
    return ds.unbatch()


def _tfrecord_rows(ex: Extraction, names: Sequence[str]) -> Any:
    """TFRecord shards read by ``TFRecordDataset`` (one file after the other), parsed with ``feature_spec``."""
    tf = _tf()
    spec = feature_spec(ex)
    files = [_shard_path(ex, s) for s in ex.shards]

    def columns(raw: Any) -> Dict[str, Any]:
        parsed = tf.io.parse_single_example(raw, spec)
        parsed["mask"] = tf.ones(tf.shape(parsed["vectors"])[:1], tf.bool) if "mask" in names else None
        return {k: tf.cast(parsed[k], tf.int32) if k in INT_COLUMNS else parsed[k] for k in names}

    raw = tf.data.TFRecordDataset(tf.constant(files, tf.string, shape=[len(files)]))
    return raw.map(columns, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def as_dataset(
    ex: Extraction,
    batch_size: Optional[int] = None,
    *,
    columns: Columns = None,
    labels: Any = None,
    drop_remainder: bool = False,
) -> Any:
    """``Extraction.as_dataset``: the stored rows as a ``tf.data.Dataset`` (see the module's docstring).

    Raises:
        InputError: an incomplete extraction, bad columns, batching or labels (before anything is read but the ids,
            which a mapping of labels is looked up by).
        MissingDependencyError: TensorFlow (or pyarrow, for parquet shards) is not installed.
    """
    names, single = check_columns(ex, columns)
    check_batching(batch_size, drop_remainder)
    from hubembed._corpus.store import check_complete  # it imports this module

    check_complete(ex, "reading it as a dataset")
    y = label_array(ex, labels)
    tf = _tf()
    rows = _tfrecord_rows(ex, names) if ex.format == "tfrecord" else _generated_rows(ex, names)
    rows = rows.apply(tf.data.experimental.assert_cardinality(len(ex)))
    x = rows.map(lambda row: row[names[0]]) if single else rows
    ds = x if y is None else tf.data.Dataset.zip((x, tf.data.Dataset.from_tensor_slices(y)))
    if batch_size is None:
        return ds
    if ex.level == "sentence":
        return ds.batch(int(batch_size), drop_remainder=drop_remainder)
    return ds.padded_batch(int(batch_size), drop_remainder=drop_remainder)


# -- TFRecord ------------------------------------------------------------------------------------------------------
def feature_spec(ex: Extraction) -> Dict[str, Any]:
    """The ``tf.Example`` features of an extraction's TFRecord shards, for ``tf.io.parse_single_example(raw,
    feature_spec(ex))`` (and ``tf.io.parse_example`` over batches of records).

    sentence: ``id`` (string []), ``vector`` (float32 [D]), ``text`` (string [], extracted with keep_text). tokens /
    words: ``id``, ``text`` (string []), ``tokens`` or ``words`` (string [n]), ``token_ids`` (tokens level),
    ``start``, ``end`` (int64 [n]), ``vectors`` (float32 [n, D]: stored flat, reshaped by the parser), ``dim`` (int64
    []). ``tf.io.RaggedFeature``s: dense ``[n, ...]`` from ``parse_single_example``, ``tf.RaggedTensor``
    ``[B, (n), ...]`` from ``parse_example``.

    Raises:
        InputError: the extraction's shards are not TFRecord.
    """
    if ex.format != "tfrecord":
        raise InputError(
            f"{ex.out} holds {ex.format} shards; feature_spec describes TFRecord shards (extract with "
            f"--format tfrecord), and ex.as_dataset() reads every format"
        )
    tf = _tf()
    dim = int(ex.record["dim"])
    if ex.level == "sentence":
        text = {"text": tf.io.FixedLenFeature([], tf.string)} if ex.has_text else {}
        return {"id": tf.io.FixedLenFeature([], tf.string), **text, "vector": tf.io.FixedLenFeature([dim], tf.float32)}
    spec = {
        "id": tf.io.FixedLenFeature([], tf.string),
        "text": tf.io.FixedLenFeature([], tf.string),
        ex.level: tf.io.RaggedFeature(tf.string),
        "start": tf.io.RaggedFeature(tf.int64),
        "end": tf.io.RaggedFeature(tf.int64),
        "vectors": tf.io.RaggedFeature(tf.float32, partitions=[tf.io.RaggedFeature.UniformRowLength(dim)]),
        "dim": tf.io.FixedLenFeature([], tf.int64),
    }
    if ex.level == "tokens":
        spec["token_ids"] = tf.io.RaggedFeature(tf.int64)
    return spec
