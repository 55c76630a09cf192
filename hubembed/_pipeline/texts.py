"""Check input rows: strings (bytes decoded as UTF-8) or (a, b) pairs, with the offending row named."""

from __future__ import annotations

import logging
import re
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union, cast

from hubembed.errors import InputError

log = logging.getLogger("hubembed")

# One checked input row: a text, or an (a, b) pair of texts.
Text = Union[str, Tuple[str, str]]


def split_pairs(texts: Sequence[Text]) -> Tuple[List[str], Optional[List[str]]]:
    """Strings -> (texts, None); (a, b) pairs -> (firsts, seconds)."""
    if texts and isinstance(texts[0], tuple):
        pairs = cast(Sequence[Tuple[str, str]], texts)  # check_texts: all pairs or none
        return [a for a, _ in pairs], [b for _, b in pairs]
    return list(cast(Sequence[str], texts)), None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(i: int, t: object, where: str = "") -> str:
    if isinstance(t, bytes):
        try:
            return t.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"row {i}{where}: bytes that are not valid UTF-8 ({e})") from None
    if not isinstance(t, str):
        raise InputError(f"row {i}{where}: expected a string, got {type(t).__name__} ({t!r:.60})")
    if _SURROGATE.search(t):
        # A lone surrogate (U+D800..U+DFFF, e.g. from a broken decode) has no UTF-8 form and TensorFlow
        # refuses the whole batch. One code point for one keeps every character offset (spans) valid.
        log.warning("row %d%s holds lone surrogate code points; embedded as U+FFFD", i, where)
        t = _SURROGATE.sub("\ufffd", t)
    return t


def _refuse_tables(texts: object) -> None:
    """A pandas DataFrame iterates over its column names (and a numpy 2-D array over rows of cells): either would
    embed the wrong strings without a word. Refused, naming the column to pass."""
    columns = getattr(texts, "columns", None)
    if columns is not None and hasattr(texts, "iloc"):
        names = [str(c) for c in columns]
        texts_like = [c for c in names if c.lower() in ("text", "texts", "sentence", "sentences", "document")]
        pick = texts_like[0] if texts_like else names[0] if names else "text"
        raise InputError(
            f"texts is a DataFrame (columns: {', '.join(names)}); iterating it gives the column names, not the "
            f"rows: pass one column, e.g. df[{pick!r}] (or df[{pick!r}].tolist())"
        )
    ndim = getattr(texts, "ndim", None)
    if isinstance(ndim, int) and ndim > 1:
        raise InputError(
            f"texts is a {ndim}-D array (shape {getattr(texts, 'shape', '?')}); pass a 1-D list of strings"
        )


def check_texts(texts: Optional[Iterable[Any]], pairs: bool = True) -> List[Text]:
    """Validate input rows: strings (bytes decoded as UTF-8), or (a, b) pairs where allowed."""
    if isinstance(texts, (str, bytes)):
        raise InputError("texts must be a list of strings, not one string (wrap it: [text])")
    if texts is None:
        raise InputError("texts is None; pass a list of strings")
    _refuse_tables(texts)
    texts = list(texts)
    is_pair = [isinstance(t, (tuple, list)) for t in texts]
    if any(is_pair):
        if not pairs:
            raise InputError("text pairs are supported by encode() and embed(), not by token or word extraction")
        if not all(is_pair):
            raise InputError(f"row {is_pair.index(False)}: mix of single texts and (a, b) pairs")
        out: List[Text] = []
        for i, t in enumerate(texts):
            if len(t) != 2:
                raise InputError(f"row {i}: a pair must have 2 texts, got {len(t)}")
            out.append((_text(i, t[0], " (first of pair)"), _text(i, t[1], " (second of pair)")))
        return out
    return [_text(i, t) for i, t in enumerate(texts)]
