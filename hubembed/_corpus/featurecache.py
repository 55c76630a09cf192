"""A content-addressed cache of sentence vectors: a text embedded once with a model and spec
is not encoded again, by any later extraction with the same model weights and spec.

One SQLite file per (weights fingerprint, spec) under ``$HUBEMBED_CACHE/features`` (default
``~/.cache/hubembed/features``), keyed by sha256 of the text's UTF-8 bytes; vectors are kept
as float32 whatever dtype the extraction writes. SQLite's own locking makes concurrent runs
safe; a run killed mid-write leaves the cache as of its last commit (one commit per shard).
``hubembed extract --no-cache`` (``cache=False``) turns it off; ``cache="DIR"`` moves it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from hubembed._util import cache_root
from hubembed.errors import OutputError


def default_root() -> str:

    return os.path.join(cache_root(), "features")


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def cache_id(weights_sha256: str, spec: dict) -> str:
    """What the vectors depend on: the weights and the extraction spec (not dtype, batching or output format)."""
    blob = json.dumps({"weights": weights_sha256, "spec": spec}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class FeatureCache:
    """text sha256 -> float32 vector, for one model and spec."""

    def __init__(self, root: str, weights_sha256: str, spec: dict) -> None:
        self.id = cache_id(weights_sha256, spec)
        self.path = os.path.join(root, self.id + ".sqlite")
        try:
            os.makedirs(root, exist_ok=True)
            self._lock = threading.Lock()  # one connection, used from whichever thread embeds
            self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self._db.execute("CREATE TABLE IF NOT EXISTS vectors (text_sha256 BLOB PRIMARY KEY, vector BLOB)")
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('about', ?)",
                (json.dumps({"weights_sha256": weights_sha256, "spec": spec}, default=str),),
            )
            self._db.commit()
        except sqlite3.Error as e:
            raise OutputError(
                f"feature cache {self.path} cannot be opened ({e}); run with --no-cache or --cache DIR"
            ) from None
        row = self._db.execute("SELECT value FROM meta WHERE key='shape'").fetchone()
        self.shape: Optional[Tuple[int, ...]] = tuple(json.loads(row[0])) if row else None

    def get(self, keys: Iterable[bytes]) -> Dict[bytes, np.ndarray]:
        keys = list(keys)
        out: Dict[bytes, np.ndarray] = {}
        if self.shape is None:
            return out
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            q = f"SELECT text_sha256, vector FROM vectors WHERE text_sha256 IN ({','.join('?' * len(part))})"
            with self._lock:
                found = self._db.execute(q, part).fetchall()
            for k, blob in found:
                out[bytes(k)] = np.frombuffer(blob, np.float32).reshape(self.shape)
        return out

    def put(self, keys: List[bytes], vectors: np.ndarray) -> None:
        if not keys:
            return
        vectors = np.asarray(vectors, np.float32)
        rows = [(k, np.ascontiguousarray(v).tobytes()) for k, v in zip(keys, vectors)]
        with self._lock:
            try:
                if self.shape is None:
                    self.shape = tuple(vectors.shape[1:])
                    self._db.execute("INSERT OR REPLACE INTO meta VALUES ('shape', ?)", (json.dumps(self.shape),))
                self._db.executemany("INSERT OR IGNORE INTO vectors VALUES (?, ?)", rows)
                self._db.commit()
            except sqlite3.Error as e:
                raise OutputError(
                    f"feature cache {self.path}: write failed ({e}); run with --no-cache, or free space"
                ) from None

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]

    def close(self) -> None:
        self._db.close()
