"""What happened to each text of a call: tokens, windows, truncation, emptiness (never silent)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import List, Sequence

import numpy as np

log = logging.getLogger("hubembed")


@dataclass
class ExtractionInfo:
    """What happened to each text: tokens, windows, truncation, emptiness."""

    n_tokens: np.ndarray  # content tokens (without [CLS]/[SEP])
    n_windows: np.ndarray
    truncated: np.ndarray  # content tokens dropped
    empty: np.ndarray  # no content token (empty or whitespace-only text)
    spec: dict = field(default_factory=dict)

    @property
    def split_rows(self) -> List[int]:
        return np.flatnonzero(self.n_windows > 1).tolist()

    @property
    def truncated_rows(self) -> List[int]:
        return np.flatnonzero(self.truncated > 0).tolist()

    @property
    def empty_rows(self) -> List[int]:
        return np.flatnonzero(self.empty).tolist()

    def summary(self) -> str:
        n = len(self.n_tokens)
        parts = [f"{n} texts, {int(self.n_tokens.sum())} tokens"]
        if self.split_rows:
            parts.append(
                f"{len(self.split_rows)} split into windows (rows {_few(self.split_rows)}; "
                f"up to {int(self.n_windows.max())} windows, {int(self.n_tokens.max())} tokens)"
            )
        if self.truncated_rows:
            parts.append(
                f"{len(self.truncated_rows)} truncated (rows {_few(self.truncated_rows)}; "
                f"up to {int(self.truncated.max())} tokens dropped)"
            )
        if self.empty_rows:
            parts.append(f"{len(self.empty_rows)} empty (rows {_few(self.empty_rows)}: only [CLS]/[SEP])")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {
            "texts": len(self.n_tokens),
            "tokens": int(self.n_tokens.sum()),
            "split_rows": self.split_rows,
            "truncated_rows": self.truncated_rows,
            "empty_rows": self.empty_rows,
            **self.spec,
        }

    def report(self) -> None:
        """Log what was not plain (never silent)."""
        if self.truncated_rows:
            log.warning("%s", self.summary())
        elif self.split_rows or self.empty_rows:
            log.info("%s", self.summary())


def _few(rows: Sequence[int], k: int = 5) -> str:
    s = ", ".join(str(r) for r in rows[:k])
    return s + (f", ... ({len(rows)} in all)" if len(rows) > k else "")
