"""The file formats of one extraction shard: render a chunk to bytes, read it back.

Levels and formats (``hubembed extract --tokens/--words --format``):

    level      npy                        parquet                              tfrecord
    sentence   part-N.npy [rows, D]       part-N.parquet: id, vector           part-N.tfrecord: id, vector
               + part-N.ids.json          (fixed_size_list<float>[D])          (float list [D])
               (+ part-N.text.json)       (+ text)                             (+ text)
    tokens     -                          id, text, tokens, token_ids, start,  id, text, tokens, token_ids,
                                          end, vectors (list<fixed_size_list>) start, end, vectors (flat), dim
    words      -                          id, text, words, start, end, vectors same, with words

``start``/``end`` are character offsets (Unicode code points) into ``text``:
``text[start[i]:end[i]]`` is the token's (or word's) surface form. Sentence rows keep their text with
``keep_text`` (``Chunk.texts``): a JSON list aligned with the ids (npy), a ``text`` column or feature (parquet,
tfrecord); token and word rows always hold theirs. Rendering returns bytes
(``{suffix: bytes}``) so that the local store and the Beam workers write them the same way.
TFRecord float lists are float32, so ``--dtype float16`` goes with npy or parquet.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union, cast

import numpy as np
from numpy.typing import ArrayLike

from hubembed._pipeline.tokens import TokenEmbeddings, WordEmbeddings
from hubembed._util import optional
from hubembed.errors import InputError, OutputError

LEVELS = ("sentence", "tokens", "words")
SHARD_FORMATS = ("npy", "parquet", "tfrecord")
SUFFIX = {"npy": ".npy", "parquet": ".parquet", "tfrecord": ".tfrecord"}

# One text's output at the tokens level (TokenEmbeddings) or the words level (WordEmbeddings).
Item = Union[TokenEmbeddings, WordEmbeddings]


def default_format(level: str) -> str:
    return "npy" if level == "sentence" else "parquet"


def check(level: str, fmt: str, dtype: str, combine: str) -> None:
    """Refuse combinations that cannot be written, saying what can."""
    if level not in LEVELS:
        raise InputError(f"level={level!r}; valid: {', '.join(LEVELS)}")
    if fmt not in SHARD_FORMATS:
        raise InputError(f"format={fmt!r}; valid: {', '.join(SHARD_FORMATS)}")
    if fmt == "npy" and level != "sentence":
        raise InputError(
            f"{level}-level output has a different number of vectors per text; npy holds one array "
            f"per shard: use --format parquet or tfrecord"
        )
    if fmt == "tfrecord" and dtype != "float32":
        raise InputError("TFRecord float lists are float32; for float16 use --format npy or parquet")
    if combine == "none" and fmt != "npy":
        raise InputError(
            f"combine='none' gives [k, H] per vector; {fmt} stores flat vectors: use combine='concat' "
            f"(the same numbers, k*H wide) or --format npy"
        )


@dataclass
class Chunk:
    """What one shard holds: ids and sentence vectors [N, D], or per-text token/word embeddings."""

    ids: List[str]
    vectors: Optional[np.ndarray] = None  # sentence level
    texts: Optional[List[str]] = None  # sentence level, kept (keep_text): stored with the vectors
    items: List[Item] = field(default_factory=list)  # TokenEmbeddings (tokens level) / WordEmbeddings (words)

    def __len__(self) -> int:
        return len(self.ids)


# -- rendering -----------------------------------------------------------------
def render(fmt: str, level: str, chunk: Chunk, dtype: str) -> Dict[str, bytes]:
    """{file suffix: bytes} of one shard."""
    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(chunk.vectors, dtype), allow_pickle=False)
        out = {".npy": buf.getvalue(), ".ids.json": json.dumps([str(i) for i in chunk.ids]).encode("utf-8")}
        if chunk.texts is not None:
            out[".text.json"] = json.dumps(chunk.texts).encode("utf-8")
        return out
    if fmt == "parquet":
        return {".parquet": _parquet(level, chunk, dtype)}
    return {".tfrecord": _tfrecord(level, chunk)}


def _names(it: Item, level: str) -> List[str]:
    """An item's tokens (tokens level: a TokenEmbeddings) or words (words level: a WordEmbeddings)."""
    return cast(TokenEmbeddings, it).tokens if level == "tokens" else cast(WordEmbeddings, it).words


def _token_ids(it: Item) -> np.ndarray:
    """The word-piece ids of a tokens-level item (a TokenEmbeddings)."""
    return cast(TokenEmbeddings, it).ids


def _pyarrow() -> Tuple[ModuleType, ModuleType]:
    pa = optional("pyarrow", "Parquet output")
    import pyarrow.parquet as pq

    return pa, pq


def _fixed(pa: ModuleType, flat: np.ndarray, dim: int) -> Any:  # a pyarrow FixedSizeListArray (no stubs)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), dim)


def _parquet(level: str, chunk: Chunk, dtype: str) -> bytes:
    pa, pq = _pyarrow()
    ids = pa.array([str(i) for i in chunk.ids], pa.string())
    if level == "sentence":
        v = np.ascontiguousarray(chunk.vectors, dtype)
        text = {} if chunk.texts is None else {"text": pa.array(chunk.texts, pa.string())}
        table = pa.table({"id": ids, **text, "vector": _fixed(pa, v, v.shape[1])})
    else:
        name = "tokens" if level == "tokens" else "words"
        pieces = [_names(it, level) for it in chunk.items]
        counts = np.array([len(p) for p in pieces], np.int32)
        offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
        dim = chunk.items[0].vectors.shape[-1] if chunk.items else 0
        flat = (
            np.concatenate([np.asarray(it.vectors, dtype).reshape(-1, dim) for it in chunk.items])
            if chunk.items
            else np.zeros((0, 0), dtype)
        )
        spans = (
            np.concatenate([np.asarray(it.spans, np.int32).reshape(-1, 2) for it in chunk.items])
            if chunk.items
            else np.zeros((0, 2), np.int32)
        )
        cols = {
            "id": ids,
            "text": pa.array([it.text for it in chunk.items], pa.string()),
            name: pa.ListArray.from_arrays(offsets, pa.array([p for ps in pieces for p in ps], pa.string())),
        }
        if level == "tokens":
            tid: ArrayLike = (
                np.concatenate([np.asarray(_token_ids(it), np.int32) for it in chunk.items]) if chunk.items else []
            )
            cols["token_ids"] = pa.ListArray.from_arrays(offsets, pa.array(tid, pa.int32()))
        cols["start"] = pa.ListArray.from_arrays(offsets, pa.array(spans[:, 0]))
        cols["end"] = pa.ListArray.from_arrays(offsets, pa.array(spans[:, 1]))
        cols["vectors"] = pa.ListArray.from_arrays(offsets, _fixed(pa, flat, dim))
        table = pa.table(cols)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _tfrecord(level: str, chunk: Chunk) -> bytes:
    import tensorflow as tf

    # tf.train.Feature protos (TensorFlow has no stubs).
    def b(values: Iterable[str]) -> Any:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode("utf-8") for v in values]))

    def i(values: Iterable[Any]) -> Any:  # ints or numpy integers
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(x) for x in values]))

    def f(values: ArrayLike) -> Any:
        return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(values, np.float32).reshape(-1)))

    fd, tmp = tempfile.mkstemp(suffix=".tfrecord")
    os.close(fd)
    try:
        with tf.io.TFRecordWriter(tmp) as w:
            for n, rid in enumerate(chunk.ids):
                if level == "sentence":
                    feats = {"id": b([str(rid)]), "vector": f(cast(np.ndarray, chunk.vectors)[n])}  # sentence: set
                    if chunk.texts is not None:
                        feats["text"] = b([chunk.texts[n]])
                else:
                    it = chunk.items[n]
                    spans = np.asarray(it.spans).reshape(-1, 2)
                    feats = {
                        "id": b([str(rid)]),
                        "text": b([it.text]),
                        level: b(_names(it, level)),
                        "start": i(spans[:, 0]),
                        "end": i(spans[:, 1]),
                        "vectors": f(it.vectors),
                        "dim": i([np.asarray(it.vectors).shape[-1]]),
                    }
                    if level == "tokens":
                        feats["token_ids"] = i(_token_ids(it))
                w.write(
                    tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString(deterministic=True)
                )
        with open(tmp, "rb") as fh:
            return fh.read()
    finally:
        os.remove(tmp)


# -- reading -------------------------------------------------------------------
@dataclass
class Pieces:
    """One text's token- or word-level embeddings as read back from a shard."""

    id: str
    text: str
    pieces: List[str]  # word pieces (tokens level) or words
    spans: np.ndarray  # [n, 2] character [start, end) into text
    vectors: np.ndarray  # [n, D]
    token_ids: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.pieces)


def files(fmt: str, base: str) -> Dict[str, str]:
    """Manifest keys -> file names of shard ``base`` (e.g. part-00000)."""
    if fmt == "npy":
        return {"file": base + ".npy", "ids_file": base + ".ids.json"}
    return {"file": base + SUFFIX[fmt]}


def read(fmt: str, level: str, path: str) -> Union[np.ndarray, List[Pieces]]:
    """A shard: sentence level -> [rows, D] array (memory-mapped for npy); else a list of Pieces."""
    if fmt == "npy":
        return np.load(path, mmap_mode="r")
    if fmt == "parquet":
        _, pq = _pyarrow()
        table = pq.read_table(path, memory_map=True)
        if level == "sentence":
            col = table.column("vector").combine_chunks()
            return col.values.to_numpy(zero_copy_only=False).reshape(len(col), -1)
        name = level
        flat = table.column("vectors").combine_chunks()
        dim = flat.type.value_type.list_size
        out = []
        for r in range(table.num_rows):
            row = {k: table.column(k)[r].as_py() for k in table.column_names if k != "vectors"}
            vec = flat[r].values.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
            out.append(
                Pieces(
                    row["id"],
                    row["text"],
                    row[name],
                    np.array([row["start"], row["end"]]).T.reshape(-1, 2),
                    vec,
                    np.array(row["token_ids"], np.int32) if "token_ids" in row else None,
                )
            )
        return out
    return _read_tfrecord(level, path)


def _read_tfrecord(level: str, path: str) -> Union[np.ndarray, List[Pieces]]:
    import tensorflow as tf

    vecs, out = [], []
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
        ex = tf.train.Example.FromString(raw).features.feature
        if level == "sentence":
            vecs.append(np.array(ex["vector"].float_list.value, np.float32))
            continue
        dim = ex["dim"].int64_list.value[0]
        text = lambda k: [v.decode("utf-8") for v in ex[k].bytes_list.value]  # noqa: E731
        spans = np.array([ex["start"].int64_list.value, ex["end"].int64_list.value]).T.reshape(-1, 2)
        out.append(
            Pieces(
                text("id")[0],
                text("text")[0],
                text(level),
                spans,
                np.array(ex["vectors"].float_list.value, np.float32).reshape(-1, dim),
                np.array(ex["token_ids"].int64_list.value, np.int32) if level == "tokens" else None,
            )
        )
    if level == "sentence":
        return np.stack(vecs) if vecs else np.zeros((0, 0), np.float32)
    return out


def release(fmt: str) -> None:
    """Give the memory of shards read and dropped back to the system: Arrow's allocator keeps freed blocks for
    reuse, so a reader going through many parquet shards would otherwise grow with them."""
    if fmt == "parquet":
        _pyarrow()[0].default_memory_pool().release_unused()


def read_ids(fmt: str, path: str) -> List[str]:
    """The ids of a shard, without reading its vectors where the format allows."""
    if fmt == "npy":
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    if fmt == "parquet":
        _, pq = _pyarrow()
        return pq.read_table(path, columns=["id"]).column("id").to_pylist()
    import tensorflow as tf

    return [
        tf.train.Example.FromString(raw).features.feature["id"].bytes_list.value[0].decode("utf-8")
        for raw in tf.data.TFRecordDataset(path).as_numpy_iterator()
    ]


def read_texts(fmt: str, path: str) -> List[str]:
    """The texts of a shard that stores them (``path``: an npy shard's ``text_file``, else the shard), without its
    vectors where the format allows.

    Raises:
        OutputError: the shard holds no text.
    """
    if fmt == "npy":
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    if fmt == "parquet":
        _, pq = _pyarrow()
        if "text" not in pq.read_schema(path).names:
            raise OutputError(f"{path} holds no text column")
        return pq.read_table(path, columns=["text"]).column("text").to_pylist()
    import tensorflow as tf

    out = []
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
        feats = tf.train.Example.FromString(raw).features.feature
        if "text" not in feats:
            raise OutputError(f"{path} holds no text feature")
        out.append(feats["text"].bytes_list.value[0].decode("utf-8"))
    return out


def read_vectors(fmt: str, level: str, path: str) -> Tuple[int, np.ndarray]:
    """(rows, the shard's vectors [n, ...] in row order): a vector per row at sentence level (npy memory-mapped), each
    row's word pieces' or words' in turn at the token and word levels (parquet: only that column is read)."""
    if fmt == "parquet" and level != "sentence":
        _, pq = _pyarrow()
        table = pq.read_table(path, columns=["vectors"], memory_map=True)
        fixed = table.column("vectors").combine_chunks().flatten()  # rows -> vectors (offsets respected)
        return table.num_rows, fixed.flatten().to_numpy(zero_copy_only=False).reshape(len(fixed), fixed.type.list_size)
    stored = read(fmt, level, path)
    if isinstance(stored, list):  # Pieces
        parts = [np.asarray(x.vectors).reshape(len(x), -1) for x in stored if len(x)]
        return len(stored), (np.concatenate(parts) if parts else np.zeros((0, 0), np.float32))
    return len(stored), stored


def pieces_at(fmt: str, level: str, path: str, vectors: np.ndarray) -> Tuple[int, List[Tuple[int, str, str, int, str]]]:
    """(rows, [(row, id, text, position, piece)]) of a token- or word-level shard's vectors at positions ``vectors``
    (numbered as ``read_vectors`` gives them). Parquet: the pieces' counts, then only the rows asked for.

    Raises:
        OutputError: a position past the shard's vectors.
    """
    if fmt == "parquet":
        pa, pq = _pyarrow()
        import pyarrow.compute as pc

        table = pq.read_table(path, columns=["id", "text", level])
        counts = pc.list_value_length(table.column(level)).to_numpy(zero_copy_only=False)

        def fetch(rows: List[int]) -> List[Tuple[str, str, List[str]]]:
            sub = table.take(pa.array(rows, pa.int64()))
            return list(zip(*(sub.column(c).to_pylist() for c in ("id", "text", level))))

    else:
        stored = read(fmt, level, path)
        assert isinstance(stored, list)
        counts = np.array([len(p) for p in stored], np.int64)

        def fetch(rows: List[int]) -> List[Tuple[str, str, List[str]]]:
            return [(stored[r].id, stored[r].text, stored[r].pieces) for r in rows]

    ends = np.cumsum(counts)
    if len(vectors) and (not len(ends) or vectors.max() >= ends[-1]):
        raise OutputError(f"{path} holds fewer vectors than its manifest entry says")
    at = np.searchsorted(ends, vectors, side="right")
    wanted = sorted(set(at.tolist()))
    got = dict(zip(wanted, fetch(wanted)))
    out = []
    for v, r in zip(vectors.tolist(), at.tolist()):
        rid, text, pieces = got[r]
        pos = v - int(ends[r]) + len(pieces)
        out.append((r, rid, text, pos, pieces[pos]))
    return len(counts), out
