"""Read a corpus as a stream of records: (row, id, text), whatever the file format.

Formats: ``.txt`` (one text a line; id = line number, 1-based), ``.jsonl`` (``field``,
optional ``id_field``), ``.csv`` / ``.tsv`` (``column`` by name, with a header row; or by
0-based position, e.g. ``column="0"``, for a file without a header), ``.parquet``
(``column``, optional ``id_column``; needs pyarrow) and ``-`` for standard input (one text a line).

Nothing is read into memory whole. Bad rows are reported by line number: bytes that are
not UTF-8 (``on_bad="fail"`` stops with the line numbers, ``"skip"`` drops and counts them)
and empty or whitespace-only texts (``on_empty="skip"`` by default, ``"keep"`` embeds them,
``"fail"``). ``Reader.skipped`` lists what was dropped and why.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import IO, Callable, Dict, Iterator, List, Optional, Tuple

from hubembed._util import optional
from hubembed.errors import InputError

log = logging.getLogger("hubembed")

INPUT_FORMATS = ("txt", "jsonl", "csv", "tsv", "parquet")
LABEL_ROWS = 100  # rows looked at to warn that the text column holds only numbers
ON_BAD = ("fail", "skip")
ON_EMPTY = ("skip", "keep", "fail")

# (1-based line, the id the row gives or None, the text or None for a bad row); an id is any JSON or Parquet
# value (str() of it is kept).
RawRow = Tuple[int, object, Optional[str]]


@dataclass
class Record:
    row: int  # 0-based position among the records kept
    id: str  # the id carried to the output (line number by default)
    text: str
    line: int  # 1-based line (or row) of the input it came from


@dataclass
class Reader:
    """A corpus to stream. ``records()`` yields Records; ``skipped`` holds (line, reason) of dropped rows."""

    path: str
    format: str
    column: Optional[str] = None
    id_column: Optional[str] = None
    on_bad: str = "fail"
    on_empty: str = "skip"
    skipped: List[Tuple[int, str]] = field(default_factory=list)
    opener: Optional[Callable[[str], IO[bytes]]] = None  # path -> binary file; Beam passes FileSystems.open
    _labels_warned: bool = False

    def _open(self) -> IO[bytes]:
        return self.opener(self.path) if self.opener else open(self.path, "rb")

    def __post_init__(self) -> None:
        if self.on_bad not in ON_BAD:
            raise InputError(f"on_bad={self.on_bad!r}; valid: {', '.join(ON_BAD)}")
        if self.on_empty not in ON_EMPTY:
            raise InputError(f"on_empty={self.on_empty!r}; valid: {', '.join(ON_EMPTY)}")
        if self.format in ("jsonl", "csv", "tsv", "parquet") and not self.column:
            what = "field" if self.format == "jsonl" else "column"
            raise InputError(
                f"{self.path}: a .{self.format} input needs the {what} that holds the text (--{what} NAME)"
            )

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "format": self.format,
            "column": self.column,
            "id_column": self.id_column,
            "on_bad": self.on_bad,
            "on_empty": self.on_empty,
        }

    def check_columns(self) -> None:
        """Read the first record of a file (not standard input, which cannot be read twice): what is wrong with the
        columns asked for (a name the header lacks, a position line 1 does not have, a header read as data) is
        raised now, before any slow work."""
        if self.path == "-":
            return
        first: Dict[str, int] = {}  # id -> line: read to the end when ids come from the input (they must not repeat)
        for record in self.records():  # the first rows: the label warning too
            if self.id_column is None:
                if record.row + 1 >= LABEL_ROWS:
                    break
                continue
            self.check_id(first, record)

    def check_id(self, first: Dict[str, int], record: Record) -> None:
        """Refuse an id given by the input that an earlier row already had (``first``: id -> line, updated).

        Raises:
            InputError: the id repeats (both lines named).
        """
        line = first.setdefault(record.id, record.line)
        if line != record.line:
            raise InputError(
                f"{self.path}: line {record.line}: id {record.id!r} repeats line {line}'s (the ids of "
                f"{self.id_column!r} must be unique: they name the rows of the extraction)"
            )

    # -- the stream ----------------------------------------------------------
    def records(self) -> Iterator[Record]:
        """Every kept record, in file order; ``row`` counts kept records from 0."""
        self.skipped = []
        row = 0
        numbers: List[str] = []  # the first texts, while every one is a number (a label column?)
        for line, rid, text in self._raw():
            if text is None:
                continue  # a bad row, already handled
            if not text.strip():
                if self.on_empty == "fail":
                    raise InputError(f"{self.path}: line {line} is empty (use on_empty='skip' or 'keep')")
                if self.on_empty == "skip":
                    self.skipped.append((line, "empty"))
                    continue
            if row < LABEL_ROWS and (row == len(numbers)) and _is_number(text):
                numbers.append(text.strip())
                if len(numbers) == LABEL_ROWS:
                    self._warn_labels(numbers)
            yield Record(row, str(rid if rid is not None else line), text, line)
            row += 1
        if 0 < len(numbers) == row < LABEL_ROWS:
            self._warn_labels(numbers)

    def _warn_labels(self, numbers: List[str]) -> None:
        if self._labels_warned:
            return
        self._labels_warned = True
        shown = ", ".join(sorted(set(numbers), key=numbers.index)[:5])
        where = f"column {self.column!r}" if self.column is not None else "every line"
        log.warning(
            "%s: %s holds only numbers in its first %d rows (%s): it looks like labels, not text; is the text in "
            "another column?",
            self.path,
            where,
            len(numbers),
            shown,
        )

    def _bad(self, line: int, why: str) -> None:
        if self.on_bad == "fail":
            raise InputError(f"{self.path}: line {line}: {why} (use on_bad='skip' to drop such rows)")
        self.skipped.append((line, why))

    def _raw(self) -> Iterator[RawRow]:
        """(line number, id or None, text or None for a bad row)."""
        if self.format == "parquet":
            yield from self._parquet()
            return
        for line, raw in self._lines():
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                self._bad(line, f"not valid UTF-8 (byte {e.start}: {raw[e.start : e.start + 1]!r})")
                yield line, None, None
                continue
            text = text.rstrip("\r\n")
            if self.format == "txt":
                yield line, None, text
            elif self.format == "jsonl":
                yield (line,) + self._json(line, text)
            else:
                yield from self._table_row(line, text)

    def _lines(self) -> Iterator[Tuple[int, bytes]]:
        if self.path == "-":
            stream = sys.stdin.buffer
            for i, raw in enumerate(stream, 1):
                yield i, raw
            return
        with self._open() as f:
            for i, raw in enumerate(f, 1):
                yield i, raw

    def _json(self, line: int, text: str) -> Tuple[object, Optional[str]]:
        if not text.strip():
            return None, ""
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            self._bad(line, f"not valid JSON ({e.msg})")
            return None, None
        if not isinstance(obj, dict) or self.column not in obj:
            keys = ", ".join(sorted(obj)) if isinstance(obj, dict) else type(obj).__name__
            raise InputError(f"{self.path}: line {line} has no field {self.column!r} (it has: {keys})")
        if self.id_column and self.id_column not in obj:
            raise InputError(f"{self.path}: line {line} has no id field {self.id_column!r}")
        value = obj[self.column]
        if not isinstance(value, str):
            self._bad(line, f"field {self.column!r} is {type(value).__name__}, not a string")
            return None, None
        return (obj[self.id_column] if self.id_column else None), value

    def _table_row(self, line: int, text: str) -> Iterator[RawRow]:
        delim = "\t" if self.format == "tsv" else ","
        column = str(self.column)  # set for a table (__post_init__); by position, a digit string (or an int)
        by_position = column.isdigit() and (self.id_column is None or str(self.id_column).isdigit())
        if by_position:  # no header: columns by 0-based position
            values = next(csv.reader(io.StringIO(text), delimiter=delim), [])
            if not values:
                yield line, None, ""
                return
            want = max(int(column), int(self.id_column or 0))
            if len(values) <= want:
                if line == 1:  # the first row decides what the columns are: a wrong column, not a bad row
                    raise InputError(
                        f"{self.path}: line 1 has {len(values)} field(s) (columns 0..{len(values) - 1} by position), "
                        f"column {want} asked for: choose a column that exists"
                    )
                self._bad(line, f"{len(values)} fields, column {want} asked for")
                yield line, None, None
                return
            if line == 1:
                self._check_not_a_header(values, int(column))
            yield line, (values[int(self.id_column)] if self.id_column else None), values[int(column)]
            return
        if line == 1:
            self._header = next(csv.reader(io.StringIO(text), delimiter=delim))
            for name in filter(None, (self.column, self.id_column)):
                if name not in self._header:
                    raise InputError(
                        f"{self.path}: no column {name!r} in the header (columns: {', '.join(self._header)}); "
                        f"no header row? name the column by its 0-based position (--column 0)"
                    )
            return
        values = next(csv.reader(io.StringIO(text), delimiter=delim), [])
        if not values:
            yield line, None, ""
            return
        if len(values) != len(self._header):
            self._bad(line, f"{len(values)} fields, the header has {len(self._header)}")
            yield line, None, None
            return
        row = dict(zip(self._header, values))
        yield line, (row[self.id_column] if self.id_column else None), row[column]

    def _check_not_a_header(self, values: List[str], column: int) -> None:
        """Columns by position read line 1 as data: refuse it when it is plainly a header, i.e. a column that holds
        numbers further down (a label) holds a word here (the next line is peeked)."""
        with self._open() as f:
            f.readline()
            second = f.readline().decode("utf-8", "replace").rstrip("\r\n")
        delim = "\t" if self.format == "tsv" else ","
        below = next(csv.reader(io.StringIO(second), delimiter=delim), [])
        if len(below) != len(values):
            return
        numeric = [i for i, v in enumerate(below) if _is_number(v) and not _is_number(values[i]) and i != column]
        if numeric and not _is_number(values[column]):
            raise InputError(
                f"{self.path}: line 1 looks like a header ({', '.join(values)}): column {numeric[0]} holds "
                f"{values[numeric[0]]!r} there and numbers below. Name the text column instead: "
                f"--column {values[column]}"
            )

    def _parquet(self) -> Iterator[RawRow]:
        optional("pyarrow", "Reading Parquet input")
        import pyarrow.parquet as pq

        f = pq.ParquetFile(self._open() if self.opener else self.path)
        names = f.schema_arrow.names
        for name in filter(None, (self.column, self.id_column)):
            if name not in names:
                raise InputError(f"{self.path}: no column {name!r} (columns: {', '.join(names)})")
        cols = [self.column] + ([self.id_column] if self.id_column else [])
        line = 0
        for batch in f.iter_batches(columns=cols, batch_size=4096):
            texts = batch.column(self.column).to_pylist()
            ids = batch.column(self.id_column).to_pylist() if self.id_column else [None] * len(texts)
            for t, i in zip(texts, ids):
                line += 1
                if t is not None and not isinstance(t, str):
                    self._bad(line, f"column {self.column!r} holds {type(t).__name__}, not text")
                    yield line, None, None
                    continue
                yield line, i, t or ""


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def open_input(
    path: str,
    *,
    column: Optional[str] = None,
    id_column: Optional[str] = None,
    fmt: Optional[str] = None,
    on_bad: str = "fail",
    on_empty: str = "skip",
    opener: Optional[Callable[[str], IO[bytes]]] = None,
) -> Reader:
    """A Reader for ``path`` ("-": standard input); the format comes from the extension unless ``fmt``.

    ``opener``: how to open ``path`` (binary) when it is not a local file, e.g. Beam's
    ``FileSystems.open`` for gs:// paths; local paths are checked here first.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(
            f"input: a file path (or '-' for standard input), got {type(path).__name__} ({path!r:.60}); to embed "
            f"texts in memory use hubembed.load(model).embed(texts)"
        )
    path = os.fspath(path)
    if path != "-" and "://" not in path:
        if not os.path.exists(path):
            raise InputError(f"input {path!r} does not exist")
        if os.path.isdir(path):
            raise InputError(f"input {path!r} is a folder; give a file ({', '.join('.' + f for f in INPUT_FORMATS)})")
        if not os.access(path, os.R_OK):
            raise InputError(f"input {path!r} is not readable")
    if fmt is None:
        ext = "txt" if path == "-" else os.path.splitext(path)[1].lower().lstrip(".")
        fmt = {"text": "txt", "json": "jsonl", "ndjson": "jsonl"}.get(ext, ext)
    if fmt not in INPUT_FORMATS:
        raise InputError(
            f"input {path!r}: unknown format {fmt!r}; valid: {', '.join(INPUT_FORMATS)} "
            f"(by extension, or --input-format)"
        )
    return Reader(path, fmt, column, id_column, on_bad, on_empty, opener=opener)
