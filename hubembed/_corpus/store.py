"""Write and read an extraction on disk: numbered shards + ``manifest.json``.

Layout of an output folder::

    manifest.json             what made it (model, weights fingerprint, spec, versions), the input,
                              every finished shard (rows, first row, sha256 of each file), totals
    part-00000.npy            vectors [rows, D] (float32 or float16), memory-mappable
    part-00000.ids.json       the ids of those rows, in order
    (or part-00000.parquet / part-00000.tfrecord: ids and vectors in one file; token- and
    word-level output too: see ``hubembed._corpus.shards``)

Every file is written to a temporary name, flushed to disk and renamed into place; the
manifest is rewritten (the same way) after each shard. A run killed at any moment leaves
the manifest describing only complete shards, so a resumed run continues after the last
one and the result equals an uninterrupted run. At resume, every listed shard's checksum
is verified; the first that fails, and everything after it, is redone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from hubembed._corpus import dataset as tf_dataset
from hubembed._corpus import shards as shard_formats
from hubembed._load import load as load_encoder
from hubembed._pipeline import prompts as prompts_mod
from hubembed._pipeline import quantize
from hubembed._pipeline.graph import ExportedEmbedder
from hubembed._pipeline.spec import EmbedSpec
from hubembed._pipeline.texts import Text
from hubembed._pipeline.transform import TransformLike
from hubembed._util import sha256_file, write_atomic
from hubembed.encoder import Encoder
from hubembed.errors import InputError, OutputError

if TYPE_CHECKING:
    from hubembed._corpus.search import Results  # it imports this module

log = logging.getLogger("hubembed")
MANIFEST = "manifest.json"
INDEX_FILE = "index.faiss"  # the approximate index (hubembed._corpus.index), recorded in the manifest
FORMAT_VERSION = 1


# A shard as read: sentence vectors [rows, D] (memory-mapped for npy), or per-text Pieces.
Shard = Union[np.ndarray, List[shard_formats.Pieces]]

RESUME_HINT = "the extraction can be resumed with --resume once the cause is fixed (finished shards are kept)"


def _write_atomic(path: str, data: bytes) -> None:
    write_atomic(path, data, RESUME_HINT)


# Extensions of a single vectors file: an output folder named so may be a user expecting one file: said, not refused.
FILE_LIKE = (".npy", ".npz", ".parquet", ".tfrecord", ".pkl", ".h5")


def check_folder(out: str, resume: bool) -> Optional[dict]:
    """What an extraction refuses about its output folder, checked before any model loads: other files in it,
    or an extraction already there without ``resume``. Returns the existing manifest (None: a new extraction).

    Raises:
        OutputError: the folder cannot be used, saying why and what to do.
    """
    if not os.path.isdir(out):
        if os.path.exists(out):
            raise OutputError(f"output folder {out} is a file; give a folder")
        ext = os.path.splitext(out.rstrip("/"))[1].lower()
        if ext in FILE_LIKE:
            log.warning(
                "%s is made a folder: an extraction is a folder of shards and a manifest, not one %s file "
                "(read it with hubembed.open_extraction; ex.vectors() gives one array)",
                out,
                ext,
            )
        return None
    if not os.path.exists(os.path.join(out, MANIFEST)):
        stray = [e for e in os.listdir(out) if not e.endswith(".tmp") and not _ours(e)]
        if stray:
            raise OutputError(
                f"output folder {out} holds other files ({', '.join(sorted(stray)[:5])}); give an empty or new folder"
            )
        return None
    old = read_manifest(out)
    if not resume:
        raise OutputError(
            f"output folder {out} already holds an extraction ({old.get('rows', 0)} rows); "
            f"resume it with --resume, or give another folder"
        )
    return old


def shard_name(index: int) -> str:
    return f"part-{index:05d}"


class ShardStore:
    """An extraction folder being written (or resumed)."""

    def __init__(self, out: str, header: dict, *, resume: bool = False) -> None:
        self.out = out
        self.header = header  # model, spec, input, versions: what must match to resume
        self.shards: List[dict] = []
        self.skipped: List[list] = []
        self.index: Optional[dict] = None  # the approximate index's record (hubembed._corpus.index)
        self._prepare(resume)

    # -- opening -------------------------------------------------------------
    def _prepare(self, resume: bool) -> None:
        os.makedirs(self.out, exist_ok=True)
        old = check_folder(self.out, resume)
        if old is None:
            self._clean(keep=set())
            if os.path.exists(os.path.join(self.out, INDEX_FILE)):  # an index left without its extraction
                os.remove(os.path.join(self.out, INDEX_FILE))
            return
        self.index = old.get("index")  # kept on resume: checked against the shards when a search uses it
        refuse_resume(self.out, _differences(old.get("header", {}), self.header))
        for shard in old.get("shards", []):
            if not self._intact(shard):
                break
            self.shards.append(shard)
        self.skipped = [s for s in old.get("skipped", []) if self.shards and s[0] <= self.shards[-1]["last_line"]]
        self._clean(keep={s[k] for s in self.shards for k in s["sha256"]})
        self._write_manifest(complete=False)

    def _intact(self, shard: dict) -> bool:
        for key in shard["sha256"]:
            p = os.path.join(self.out, shard[key])
            if not os.path.exists(p) or sha256_file(p) != shard["sha256"][key]:
                return False
        return True

    def _clean(self, keep: set) -> None:
        """Remove temporary files and shards the manifest does not list (a run killed mid-shard)."""
        for e in os.listdir(self.out):
            if e.endswith(".tmp") or (e.startswith("part-") and e not in keep):
                os.remove(os.path.join(self.out, e))

    # -- writing -------------------------------------------------------------
    @property
    def rows_done(self) -> int:
        return sum(s["rows"] for s in self.shards)

    @property
    def lines_done(self) -> int:
        return self.shards[-1]["last_line"] if self.shards else 0

    def write_shard(
        self,
        blobs: Dict[str, bytes],
        rows: int,
        last_line: int,
        skipped: Iterable[Sequence[Any]] = (),  # (line, reason) of the rows dropped
        input_sha256: Optional[str] = None,
    ) -> dict:
        """Write one shard's files ({suffix: bytes}, from ``shards.render``) atomically, then the manifest."""
        shard, files = shard_entry(len(self.shards), self.rows_done, rows, last_line, blobs, input_sha256)
        for name, data in files.items():
            _write_atomic(os.path.join(self.out, name), data)
        self.shards.append(shard)
        self.skipped.extend([list(s) for s in skipped])
        self._write_manifest(complete=False)
        return shard

    def finish(self, summary: Optional[dict] = None) -> dict:
        return self._write_manifest(complete=True, summary=summary)

    def _write_manifest(self, complete: bool, summary: Optional[dict] = None) -> dict:
        m = manifest(self.header, self.shards, self.skipped, complete, summary)
        if self.index is not None:
            m["index"] = self.index
        _write_atomic(os.path.join(self.out, MANIFEST), manifest_bytes(m))
        return m


def shard_entry(
    index: int, first_row: int, rows: int, last_line: int, blobs: Dict[str, bytes], input_sha256: Optional[str] = None
) -> Tuple[dict, Dict[str, bytes]]:
    """The manifest entry of a shard and its files {name: bytes} (shared with the Beam pipeline)."""
    name = shard_name(index)
    keys = {suffix: (suffix[1:-5] + "_file" if suffix.endswith(".json") else "file") for suffix in blobs}  # ids_file
    entry = {
        **{keys[sf]: name + sf for sf in blobs},
        "index": index,
        "first_row": int(first_row),
        "rows": int(rows),
        "last_line": int(last_line),
        "sha256": {keys[sf]: hashlib.sha256(b).hexdigest() for sf, b in blobs.items()},
    }
    if input_sha256:
        entry["input_sha256"] = input_sha256
    return entry, {name + sf: b for sf, b in blobs.items()}


def manifest(
    header: dict, shards: List[dict], skipped: List[list], complete: bool, summary: Optional[dict] = None
) -> dict:
    m = {
        "format": "hubembed-extraction",
        "format_version": FORMAT_VERSION,
        "header": header,
        "complete": complete,
        "rows": sum(s["rows"] for s in shards),
        "shards": shards,
        "skipped": skipped,
    }
    if summary:
        m["summary"] = summary
    return m


def manifest_bytes(m: dict) -> bytes:
    return json.dumps(m, indent=1, sort_keys=True).encode("utf-8")


def _ours(name: str) -> bool:
    return name in (MANIFEST, INDEX_FILE) or name.startswith("part-")


def refuse_resume(out: str, diff: List[Tuple[str, Any, Any]]) -> None:
    """The error for resuming ``out`` with other settings (``diff``: (key, there, now)), if any differ."""
    if diff:
        raise OutputError(
            f"cannot resume {out}: it was made with a different "
            + "; ".join(f"{k} ({a!r} there, {b!r} now)" for k, a, b in diff)
        )


# What a header leaves out when it holds the default (recorded only when used: older records stay as they were).
_UNRECORDED = {"spec.precision": "float32", "keep_text": False}


def known_differences(old: dict, known: dict, prefix: str = "") -> List[Tuple[str, Any, Any]]:
    """(key, old, new) for every leaf of ``known`` (what is known before the model loads: part of a header) that
    ``old`` (a header) records otherwise."""
    out: List[Tuple[str, Any, Any]] = []
    for k in sorted(known):
        a, b = old.get(k, _UNRECORDED.get(prefix + k)), known[k]
        if isinstance(b, dict):
            out += known_differences(a if isinstance(a, dict) else {}, b, prefix + k + ".")
        elif a != b:
            out.append((prefix + k, a, b))
    return out


def _differences(old: dict, new: dict, prefix: str = "") -> List[Tuple[str, Any, Any]]:
    """(key, old, new) for every leaf that differs, ignoring library versions."""
    out: List[Tuple[str, Any, Any]] = []
    for k in sorted(set(old) | set(new)):
        if k == "versions":
            continue
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, prefix + k + ".")
        elif a != b:
            out.append((prefix + k, a, b))
    return out


def read_manifest(out: str) -> dict:
    path = os.path.join(out, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            m = json.load(f)
    except FileNotFoundError:
        raise InputError(f"{out} is not a hubembed extraction (no {MANIFEST})") from None
    except (OSError, json.JSONDecodeError) as e:
        raise OutputError(f"{path} cannot be read ({e})") from None
    if m.get("format") != "hubembed-extraction":
        raise InputError(f"{path} is not a hubembed extraction manifest")
    return m


class Extraction:
    """An extraction on disk, read lazily: by row or id, shard by shard (npy memory-mapped).

    Sentence level: ``ex[row]`` is a vector, ``ex.vectors()`` all of them. Token/word level:
    ``ex[row]`` is a ``shards.Pieces`` (text, pieces, spans, vectors).

    >>> ex = hubembed.open_extraction("out")        # doctest: +SKIP
    >>> ex[0], ex.by_id("17"), len(ex), ex.spec     # doctest: +SKIP
    """

    def __init__(self, out: str, verify: bool = False) -> None:
        self.out = out
        self.manifest = read_manifest(out)
        self.shards = self.manifest["shards"]
        if verify:
            for s in self.shards:
                for key in s["sha256"]:
                    if sha256_file(os.path.join(out, s[key])) != s["sha256"][key]:
                        raise OutputError(f"{out}/{s[key]} does not match its checksum in the manifest")
        self._starts = np.array([s["first_row"] for s in self.shards], np.int64)
        self._cache: Dict[int, Shard] = {}
        self._ids: Optional[Dict[str, int]] = None

    @property
    def header(self) -> dict:
        return self.manifest["header"]

    @property
    def record(self) -> dict:
        """The manifest's spec record: the spec resolved for the model, level, format, dtype, dim..."""
        return self.header.get("spec", {})

    @property
    def spec(self) -> EmbedSpec:
        """The ``hubembed.EmbedSpec`` the vectors were made with; embedding with it (``enc.embed(texts,
        spec=ex.spec)``) refuses a model whose weights fingerprint or sequence length differ from this one's."""

        rec = self.record
        spec = EmbedSpec.from_dict(rec).with_source(
            {
                "out": self.out,
                "model": self.header.get("model"),
                "weights_sha256": self.header.get("weights_sha256"),
                "seq_length": rec.get("seq_length"),
                "transform": rec.get("transform"),
            },
        )
        return spec

    @property
    def level(self) -> str:
        return self.record.get("level", "sentence")

    @property
    def format(self) -> str:
        return self.record.get("format", "npy")

    def embed(
        self,
        texts: Sequence[Text],
        *,
        encoder: Optional[Encoder] = None,
        transform: TransformLike = None,
        ranges: Optional[quantize.RangesLike] = None,
        batch_size: Optional[int] = None,
        max_tokens: Optional[int] = -1,
        precision: Optional[str] = None,
        prompt: Optional[str] = None,
        prompt_name: Optional[str] = None,
    ) -> Union[np.ndarray, List[Any]]:
        """Embed ``texts`` (queries) exactly as this corpus was embedded, to compare them with its vectors.

        Args:
            texts: strings, or (a, b) pairs.
            encoder: a loaded ``Encoder``; default: the manifest's model, loaded with its sequence length.
            transform: the fitted transform the extraction applied, if it applied one (a manifest records its
                sha256, not its parameters).
            ranges: the int8/uint8 calibration ranges it was quantized with, if it was (likewise).
            batch_size, max_tokens: as ``Encoder.embed`` (default: its defaults).
            precision: another than the extraction's: "float32" gives a quantized corpus's queries unquantized.
            prompt, prompt_name: the queries' prompt; default: the model's "query" prompt for a corpus embedded with
                a document prompt by name ("document", "passage", "corpus"), else the corpus's own prompt
                (``hubembed._pipeline.prompts.query_spec``).

        Returns:
            [N, D] float32, as the extraction's vectors (which are float16 on disk with ``dtype="float16"``); token
            and word levels: a ``TokenEmbeddings`` / ``WordEmbeddings`` per text (``.vectors``), as the rows.

        Raises:
            InputError: another model's weights, another sequence length, or a missing or different transform.
        """
        if self.level != "sentence" and (transform, ranges, precision) != (None, None, None):
            raise InputError(
                f"{self.out} holds {self.level}-level output: transform=, ranges= and precision= apply to sentence "
                f"vectors only"
            )
        spec = self.spec if transform is None else self.spec.replace(transform=transform)
        spec = spec if ranges is None else spec.replace(ranges=ranges)
        if precision is not None:
            spec = spec.replace(precision=precision, ranges=spec.ranges if precision in quantize.CALIBRATED else None)
        spec = prompts_mod.query_spec(spec, self.record, prompt, prompt_name)
        model: Union[Encoder, ExportedEmbedder]  # what hubembed.load gives
        if encoder is None:
            rec = self.record
            model = load_encoder(
                self.header["model"],
                seq_length=rec.get("seq_length"),
                backend="garden" if rec.get("backend") == "garden" else "auto",
                prompts=rec.get("prompts"),
            )
        else:
            model = encoder
        kw: Dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}  # embed()'s keywords
        if max_tokens != -1:
            kw["max_tokens"] = max_tokens
        if self.level != "sentence":
            return embed_pieces(self, model, texts, spec, kw)
        return model.embed(texts, spec=spec, **kw)

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    def __len__(self) -> int:
        return int(self.manifest["rows"])

    def shard(self, i: int) -> Shard:
        """Shard i: [rows, D] vectors (sentence level; memory-mapped for npy) or a list of Pieces.

        The last shard read is kept (one shard in memory at a time for parquet and tfrecord).
        """
        if i not in self._cache:
            if self.format != "npy":
                self._cache.clear()
            self._cache[i] = shard_formats.read(self.format, self.level, os.path.join(self.out, self.shards[i]["file"]))
        return self._cache[i]

    def __getitem__(self, row: Union[int, slice]) -> Any:
        """A row (sentence level: its vector; else its ``Pieces``), or a slice of rows (stacked vectors [n, D], or a
        list of ``Pieces``)."""
        n = len(self)
        if isinstance(row, slice):
            items = [self[i] for i in range(*row.indices(n))]
            if self.level != "sentence":
                return items
            return np.stack(items) if items else np.zeros((0, int(self.record["dim"])), np.float32)
        if isinstance(row, bool) or not isinstance(row, (int, np.integer)):
            raise InputError(f"ex[{row!r}]: give a row number or a slice of rows")
        if not -n <= row < n:
            raise IndexError(f"row {row} of an extraction of {n} rows")
        row %= n
        i = int(np.searchsorted(self._starts, row, side="right") - 1)
        item = self.shard(i)[row - self.shards[i]["first_row"]]
        return np.asarray(item) if self.level == "sentence" else item

    @property
    def has_text(self) -> bool:
        """Whether the rows hold their texts: token and word rows always, sentence rows extracted with keep_text."""
        return self.level != "sentence" or bool(self.header.get("keep_text"))

    def texts(self) -> List[str]:
        """Every stored text, in row order (``text(row)``: one). Raises InputError: extracted without keep_text."""
        return [t for i in range(len(self.shards)) for t in shard_texts(self, i)]

    def text(self, row: int) -> str:
        return row_text(self, row)

    def __iter__(self) -> Iterator[Union[np.ndarray, shard_formats.Pieces]]:
        for i in range(len(self.shards)):
            rows = self.shard(i)
            for r in range(len(rows)):
                yield np.asarray(rows[r]) if self.level == "sentence" else rows[r]

    def ids(self) -> List[str]:
        out: List[str] = []
        for s in self.shards:
            out += shard_formats.read_ids(self.format, os.path.join(self.out, s.get("ids_file", s["file"])))
        return out

    def by_id(self, rid: object) -> Union[np.ndarray, shard_formats.Pieces]:
        """The row whose id is ``rid``.

        Raises:
            KeyError: no row has that id (as a mapping does).
            OutputError: several rows have it (an extraction made before ids were checked for repeats): use the rows'
                positions (``ex[i]``, ``ex.ids()``) instead.
        """
        if self._ids is None:
            self._ids = {}
            for i, r in enumerate(self.ids()):
                self._ids[r] = -1 if r in self._ids else i  # -1: the id repeats
        try:
            row = self._ids[str(rid)]
        except KeyError:
            raise KeyError(f"no row with id {rid!r} in {self.out}") from None
        if row < 0:
            rows = [i for i, r in enumerate(self.ids()) if r == str(rid)]
            raise OutputError(
                f"{self.out}: id {rid!r} names {len(rows)} rows ({', '.join(map(str, rows[:5]))}): by_id cannot "
                f"choose; index the rows by position (ex[i], ex.ids())"
            )
        return self[row]

    def vectors(self) -> np.ndarray:
        """Every sentence vector in one array (loads them all)."""
        if self.level != "sentence":
            raise InputError(
                f"{self.out} holds {self.level}-level output (a variable number of vectors per text); "
                f"iterate over it, or read a row: ex[i].vectors"
            )
        return (
            np.concatenate([np.asarray(self.shard(i)) for i in range(len(self.shards))])
            if self.shards
            else np.zeros((0, 0), np.float32)
        )

    def as_dataset(
        self,
        batch_size: Optional[int] = None,
        *,
        columns: tf_dataset.Columns = None,
        labels: Any = None,
        drop_remainder: bool = False,
    ) -> Any:
        """The stored rows as a ``tf.data.Dataset``, in row order, read shard by shard (``hubembed._corpus.dataset``):
        ``model.fit(ex.as_dataset(32, labels=y))`` trains a Keras head on a stored corpus.

        Args:
            batch_size: None (one row per element) or rows per batch (token/word rows padded to each batch's longest).
            columns: what ``x`` is: one column's tensor (a name) or a dict (a list of names): ``id``, ``vector``,
                ``text`` (sentence; with keep_text); ``id``, ``text``, ``tokens``/``words``, ``token_ids``, ``start``,
                ``end``, ``vectors``, ``mask`` (tokens, words). Default: ``"vector"``; ``["vectors", "mask"]``.
            labels: None, a sequence of one label per row, or a mapping id -> label: elements become ``(x, y)``.
            drop_remainder: drop a last, smaller batch.

        Returns:
            A ``tf.data.Dataset`` of ``x`` or ``(x, y)``: vectors in their stored dtype (float16 and int8/uint8/binary
            codes as stored).

        Raises:
            InputError: an incomplete extraction, bad columns, batching or labels, before anything is read.
        """
        return tf_dataset.as_dataset(self, batch_size, columns=columns, labels=labels, drop_remainder=drop_remainder)

    def dequantized(self, ranges: quantize.RangesLike) -> np.ndarray:
        """The vectors of an int8/uint8 extraction as float32 bucket middles; ``ranges``: the calibration ranges
        it was made with (a manifest records their sha256, not their values), checked against the record."""
        precision = self.record.get("precision", "float32")
        if precision not in quantize.CALIBRATED:
            raise InputError(f"{self.out} holds {precision} vectors: nothing to dequantize")
        r = quantize.Ranges.of(ranges)
        recorded = (self.record.get("ranges") or {}).get("sha256")
        if r.sha256 != recorded:
            raise InputError(
                f"ranges (sha256 {r.sha256[:16]}...) are not the ones {self.out} was quantized with "
                f"({str(recorded)[:16]}...)"
            )
        return quantize.dequantize(self.vectors(), precision, r)

    def search(self, queries: Any, k: int = 10, **options: Any) -> Results:
        """The ``k`` rows (token/word level: pieces) nearest each query (texts, or float vectors [Q, D]): a list of
        ``Hit(rank, row, id, score, text, position, piece)`` per query. Through the folder's index when it has one
        (``build_index``), else an exact scan, shard after shard. Options (``encoder``, ``metric``, ``rescore``,
        ``rescore_multiplier``, ``ranges``, ``transform``, ``batch_size``, ``verify``, ``exact``, ``ef_search``):
        ``hubembed._corpus.search.search``."""
        from hubembed._corpus import search  # it imports this module

        return search.search(self, queries, k, **options)

    def build_index(self, **options: Any) -> dict:
        """An approximate index (FAISS HNSW) of the vectors, saved in the folder and recorded in the manifest, used by
        ``search`` from then on; returns its record. Options (``metric``, ``ranges``, ``m``, ``ef_construction``,
        ``ef_search``, ``overwrite``, ``progress``): ``hubembed._corpus.index.build_index``."""
        from hubembed._corpus import index  # it imports this module

        return index.build_index(self, **options)

    def to_projector(
        self,
        logdir: str,
        *,
        name: Optional[str] = None,
        max_points: int = 10_000,
        seed: int = 0,
        ranges: Optional[quantize.RangesLike] = None,
        overwrite: bool = False,
    ) -> dict:
        """This extraction as a TensorBoard log folder for the Embedding Projector (``hubembed projector``): at most
        ``max_points`` points (a seeded uniform sample, in row order), a point per text, word piece or word; see
        ``hubembed._corpus.projector.to_projector``, which also shows several extractions side by side."""
        from hubembed._corpus import projector  # it imports this module

        return projector.to_projector(
            [self],
            logdir,
            names=None if name is None else [name],
            max_points=max_points,
            seed=seed,
            ranges=ranges,
            overwrite=overwrite,
        )

    def __repr__(self) -> str:
        h = self.header
        return (
            f"Extraction({self.out!r}, rows={len(self)}, shards={len(self.shards)}, level={self.level!r}, "
            f"format={self.format!r}, model={h.get('model')!r}, complete={self.complete})"
        )


def embed_pieces(ex: Extraction, model: Any, texts: Sequence[Text], spec: EmbedSpec, kw: Dict[str, Any]) -> Any:
    """``ex.embed`` at the token or word level: a ``TokenEmbeddings`` / ``WordEmbeddings`` per text, made as the
    extraction's rows were (its spec, and its ``subword`` rule for words)."""
    if not hasattr(model, f"embed_{ex.level}"):
        raise InputError(f"{ex.out} holds {ex.level}-level output, which {type(model).__name__} does not give")
    if ex.level == "tokens":
        return model.embed_tokens(texts, spec=spec, **kw)
    return model.embed_words(texts, spec=spec, subword=ex.record.get("subword", "first"), **kw)


def shard_texts(ex: Extraction, i: int) -> List[str]:
    """The texts shard ``i`` of ``ex`` stores, in row order.

    Raises:
        InputError: sentence rows extracted without keep_text.
        OutputError: a shard that should hold them does not.
    """
    if not ex.has_text:
        raise InputError(
            f"{ex.out} was extracted without its texts (ids and vectors only): extract it again with --keep-text "
            f"(keep_text=True) to read them; ex.ids() names the rows"
        )
    s = ex.shards[i]
    if ex.format == "npy" and "text_file" not in s:
        raise OutputError(f"{ex.out}: shard {i} lists no text file although the manifest says texts were kept")
    return shard_formats.read_texts(ex.format, os.path.join(ex.out, s.get("text_file", s["file"])))


def check_complete(ex: Extraction, then: str) -> None:
    """Raises InputError: an extraction whose run has not finished (its manifest lists only the shards written),
    saying how to finish it before ``then`` ("searching it")."""
    if not ex.complete:
        raise InputError(
            f"{ex.out} is an incomplete extraction ({len(ex)} rows in {len(ex.shards)} finished shards so far): finish "
            f"it (hubembed extract ... --resume) before {then}"
        )


def row_text(ex: Extraction, row: int) -> str:
    """``ex.text(row)``: the stored text of one row, read from its shard.

    Raises:
        InputError: a row out of range, or sentence rows extracted without keep_text.
    """
    n = len(ex)
    if isinstance(row, bool) or not isinstance(row, (int, np.integer)) or not -n <= row < n:
        raise InputError(f"row {row!r} of an extraction of {n} rows")
    row = int(row) % n
    i = int(np.searchsorted([s["first_row"] for s in ex.shards], row, side="right") - 1)
    return shard_texts(ex, i)[row - ex.shards[i]["first_row"]]


def open_extraction(out: str, verify: bool = False) -> Extraction:
    """Open an extraction folder written by ``hubembed extract`` (verify: check every shard's checksum)."""
    return Extraction(out, verify)
