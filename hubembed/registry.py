"""The handle registry: plain data (``data/registry.json``) and look-ups over it.

Code looks entries up and never branches on handle strings.

>>> from hubembed import registry
>>> registry.get("minilm").layers
6
>>> registry.get("small_bert/bert_en_uncased_L-4_H-512_A-8").preprocess
'bert_en_uncased_preprocess'
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Optional

from hubembed.errors import UnknownModelError


@dataclass(frozen=True)
class Entry:
    """One registry row: an encoder or a preprocessor."""

    name: str
    kind: str  # "encoder" | "preprocessor"
    handle: str
    version: int
    casing: str
    tokenizer: str
    family: Optional[str] = None
    architecture: Optional[str] = None
    layers: Optional[int] = None
    hidden_size: Optional[int] = None
    preprocess: Optional[str] = None
    seq_length: Optional[int] = None  # the length it was trained with, where shorter than max_positions (minilm)
    max_positions: Optional[int] = None  # its position embeddings: the longest seq_length (checked before loading)
    source: Optional[dict] = None
    weights_sha256: Optional[str] = None  # hubembed._hub.fingerprint.weights_fingerprint of the loaded model: pinned
    prompts: Optional[dict] = None  # named prompts the model was trained with ({"query": "query: ", ...}), if any
    note: Optional[str] = None
    extra: dict = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        """True for models hubembed builds locally (no download)."""
        return self.handle.startswith("hubembed://")

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if v is not None and k != "extra"}
        d.update(self.extra)
        return d


@functools.lru_cache(maxsize=1)
def _table() -> dict:
    text = resources.files("hubembed").joinpath("data/registry.json").read_text("utf-8")
    data = json.loads(text)
    known = set(Entry.__dataclass_fields__) - {"extra"}
    rows = {}
    for row in data["models"]:
        extra = {k: v for k, v in row.items() if k not in known}
        rows[row["name"]] = Entry(**{k: v for k, v in row.items() if k in known}, extra=extra)
    return {"default": data["default"], "rows": rows}


def names(kind: Optional[str] = None) -> list:
    """All registry names (of one kind, if given), sorted."""
    return sorted(n for n, e in _table()["rows"].items() if kind is None or e.kind == kind)


def default_name() -> str:
    return _table()["default"]


def _normalise_handle(handle: str) -> str:
    """A tfhub.dev handle without scheme, trailing slash, query or version."""
    h = handle.strip().split("?")[0].rstrip("/")
    h = re.sub(r"^https?://", "", h)
    h = re.sub(r"/\d+$", "", h)
    return h.lower()


def find(name_or_handle: str) -> Optional[Entry]:
    """The entry for a registry name or a known tfhub.dev handle (any version), else None."""
    rows = _table()["rows"]
    if name_or_handle in rows:
        return rows[name_or_handle]
    key = _normalise_handle(name_or_handle)
    for entry in rows.values():
        if _normalise_handle(entry.handle) == key:
            return entry
    return None


def get(name: str) -> Entry:
    """The entry for a registry name; an error suggesting close names if there is none."""
    entry = find(name)
    if entry is not None:
        return entry
    close = difflib.get_close_matches(name, names(), n=4, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"'{name}' is not a registry name, a URL or an existing local folder.{hint} "
        f"See `hubembed.registry.names()` for the {len(names('encoder'))} known encoders; "
        f"a tfhub.dev handle (https://tfhub.dev/<publisher>/<model>/<version>), a Kaggle model URL "
        f"or a local SavedModel folder also work."
    )
