"""``hubembed.load`` and the ``Encoder``: handle -> loaded encoder + paired preprocessor.

>>> enc = hubembed.load("minilm")                       # doctest: +SKIP
>>> enc.embed(["a sentence", "another one"]).shape      # doctest: +SKIP
(2, 384)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from hubembed import batching, inspection, pairing, resolve, tokens
from hubembed import layers as layer_spec
from hubembed import pooling as pooling_mod
from hubembed.backends import HubBackend
from hubembed.errors import InputError
from hubembed.extraction import ExtractionInfo, LayerPlan, TextTokens, layer_plan, pool_text, text_tokens
from hubembed.layers import LayerSpec

log = logging.getLogger("hubembed")

SUBWORD = ("first", "last", "mean", "max", "first_last")


@dataclass
class EncoderOutputs:
    """Outputs for N texts, padded to the longest of them (numpy).

    pooled [N, H] (None if not exported); sequence [N, S, H] (the last layer);
    layers [L, N, S, H] (None if not exported); mask [N, S] (1 = real token,
    [CLS]/[SEP] included); token_ids [N, S]; type_ids [N, S]; info (windows,
    truncation, empty texts). A text longer than the window is stitched from
    overlapping windows, so S can exceed seq_length.
    """

    pooled: Optional[np.ndarray]
    sequence: np.ndarray
    layers: Optional[np.ndarray]
    mask: np.ndarray
    token_ids: np.ndarray
    type_ids: np.ndarray
    info: ExtractionInfo


@dataclass
class TokenEmbeddings:
    """One text's content tokens (no [CLS]/[SEP]) with their character spans and vectors."""

    text: str
    tokens: List[str]
    ids: np.ndarray
    spans: np.ndarray      # [n, 2] character [start, end) in text
    vectors: np.ndarray    # [n, H'] (or [n, k, H] with combine="none")
    n_windows: int = 1
    truncated: int = 0


@dataclass
class WordEmbeddings:
    """One text's words (as the BERT basic tokenizer splits them) with spans and vectors."""

    text: str
    words: List[str]
    spans: np.ndarray      # [n, 2] character [start, end) in text; text[s:e] == words[i]
    vectors: np.ndarray    # [n, H'] ([n, 2H'] for subword="first_last")
    n_windows: int = 1
    truncated: int = 0


class Encoder:
    """A loaded Hub encoder with its paired preprocessor.

    >>> enc = hubembed.load("minilm")                                    # doctest: +SKIP
    >>> enc.embed(["a sentence"], layers="-4:", combine="mean", pooling="mean").shape   # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, handle: str, obj, signature: inspection.Signature, preprocessor, seq_length: int):
        self.handle = handle
        self.obj = obj
        self.signature = signature
        self.preprocessor = preprocessor
        self.seq_length = seq_length
        self.backend = HubBackend(obj, signature.format)
        self._word_tokenizer = None

    def __repr__(self) -> str:
        s = self.signature
        return (f"Encoder({self.handle!r}, format={s.format}, layers={s.num_layers}, hidden={s.hidden_size}, "
                f"preprocessor={self.preprocessor.source!r})")

    # -- shared steps ------------------------------------------------------
    def _rows(self, texts, *, long: str, stride: Optional[int], word_ids=None):
        firsts, seconds = _split_pairs(texts)
        ids = word_ids if word_ids is not None else tokens.token_ids(self.preprocessor, firsts)
        pair_ids = tokens.token_ids(self.preprocessor, seconds) if seconds is not None else None
        rows, n_windows, truncated = batching.make_rows(ids, self.seq_length, long=long, stride=stride,
                                                        pairs=pair_ids)
        n_tok = np.array([len(a) for a in ids], np.int64)
        if pair_ids is not None:
            n_tok += np.array([len(b) for b in pair_ids], np.int64)
        info = ExtractionInfo(n_tok, n_windows, truncated, n_tok == 0)
        return rows, info

    def _plan(self, layers, combine, weights, gamma, pooling=None) -> LayerPlan:
        return layer_plan(self.signature, layers, combine, weights, gamma, pooling)

    def _stream(self, rows, info, plan, batch_size, max_tokens):
        return text_tokens(self, rows, info.n_windows, info.truncated, plan, batch_size=batch_size,
                           max_tokens=max_tokens)

    def spec(self, **kwargs) -> dict:
        """What produced a result: model, preprocessor, versions and the extraction arguments."""
        from hubembed import __version__

        return {"model": self.handle, "format": self.signature.format, "preprocessor": self.preprocessor.source,
                "seq_length": self.seq_length, "hubembed": __version__, **kwargs}

    # -- public API --------------------------------------------------------
    def encode(self, texts: Sequence, *, batch_size: int = 32, max_tokens: Optional[int] = None,
               long: str = "window", stride: Optional[int] = None) -> EncoderOutputs:
        """Every output for ``texts`` (strings, or (a, b) pairs), in order, padded to the longest."""
        texts = _check_texts(texts)
        L, H = self.signature.num_layers, self.signature.hidden_size
        all_layers = list(range(L)) if self.signature.has_encoder_outputs else [L - 1]
        plan = LayerPlan(all_layers, layer_spec.Combine.make("none", len(all_layers)),
                         need_pooled=self.signature.has_pooled_output)
        rows, info = self._rows(texts, long=long, stride=stride)
        results: List[Optional[TextTokens]] = [None] * len(texts)
        for t, tt in self._stream(rows, info, plan, batch_size, max_tokens):
            results[t] = tt
        S = max((len(r.ids) for r in results), default=0)
        N = len(texts)
        layers = np.zeros((len(all_layers), N, S, H), np.float32)
        ids, mask, types = (np.zeros((N, S), np.int32) for _ in range(3))
        for t, r in enumerate(results):
            n = len(r.ids)
            layers[:, t, :n] = r.vectors
            ids[t, :n], mask[t, :n], types[t, :n] = r.ids, 1, r.type_ids
        pooled = np.stack([r.pooled for r in results]) if plan.need_pooled and N else (
            np.zeros((0, H), np.float32) if plan.need_pooled else None)
        info.spec = self.spec(layers="all", long=long, stride=stride)
        info.report()
        return EncoderOutputs(pooled, layers[-1], layers if self.signature.has_encoder_outputs else None,
                              mask, ids, types, info)

    def embed(self, texts: Sequence, *, layers: LayerSpec = -1, combine: str = "mean", pooling: str = "mean",
              weights=None, gamma: float = 1.0, special_tokens: bool = True, normalize: bool = False,
              batch_size: int = 32, max_tokens: Optional[int] = None, long: str = "window",
              stride: Optional[int] = None, return_info: bool = False):
        """One vector per text: [N, D] (D = H, 2H for mean_max, k*H for concat; [N, k, H] for combine="none").

        texts: strings, or (a, b) pairs. layers/combine: see ``hubembed.layers``. pooling: one of
        ``hubembed.pooling.POOLINGS``. special_tokens: whether [CLS]/[SEP] count in mean/max/....
        Long texts are split into windows overlapping by ``stride`` tokens (default half a window)
        and stitched (``long="truncate"`` cuts instead); ``return_info=True`` also returns what
        happened to each text (``ExtractionInfo``). Results do not depend on batch_size or neighbours.
        """
        pooling_mod.check(pooling)
        texts = _check_texts(texts)
        plan = self._plan(layers, combine, weights, gamma, pooling)
        width = pooling_mod.width(pooling, plan.combine.width(self.signature.hidden_size, len(plan.indices)))
        shape = (width,) if combine != "none" or len(plan.indices) == 1 else (len(plan.indices), width)
        rows, info = self._rows(texts, long=long, stride=stride)
        out = np.zeros((len(texts),) + shape, np.float32)
        for t, tt in self._stream(rows, info, plan, batch_size, max_tokens):
            out[t] = pool_text(tt, plan, pooling, special_tokens)
        if normalize:
            out = pooling_mod.l2_normalize(out)
        info.spec = self.spec(**plan.describe(), pooling=pooling, special_tokens=special_tokens,
                              normalize=normalize, long=long, stride=stride)
        info.report()
        return (out, info) if return_info else out

    def _words(self, texts):
        if self._word_tokenizer is None:
            self._word_tokenizer = tokens.word_tokenizer_for(self)
            if self._word_tokenizer is None:
                raise InputError(f"{self.handle}: word and token spans need a WordPiece vocab file, and neither "
                                 f"the encoder nor its preprocessor exports one")
        return self._word_tokenizer.words(texts)

    def embed_tokens(self, texts: Sequence[str], *, layers: LayerSpec = -1, combine: str = "mean",
                     weights=None, gamma: float = 1.0, batch_size: int = 32, max_tokens: Optional[int] = None,
                     long: str = "window", stride: Optional[int] = None) -> List[TokenEmbeddings]:
        """Per text: its WordPiece tokens (no [CLS]/[SEP]), their character spans and vectors."""
        return self._token_embeddings(texts, layers, combine, weights, gamma, batch_size, max_tokens, long,
                                      stride)[0]

    def _token_embeddings(self, texts, layers, combine, weights, gamma, batch_size, max_tokens, long, stride):
        texts = _check_texts(texts, pairs=False)
        plan = self._plan(layers, combine, weights, gamma)
        words = self._words(texts)
        rows, info = self._rows(texts, long=long, stride=stride, word_ids=[w.ids for w in words])
        out: List[Optional[TokenEmbeddings]] = [None] * len(texts)
        for t, tt in self._stream(rows, info, plan, batch_size, max_tokens):
            w = words[t]
            n = len(tt.ids) - 2  # content tokens kept (after truncation)
            vec = plan.combine.apply(tt.vectors)[1:1 + n]
            out[t] = TokenEmbeddings(texts[t], self._word_tokenizer.piece_strings(w.ids[:n]), w.ids[:n],
                                     w.piece_spans[:n], vec, tt.n_windows, tt.truncated)
        info.spec = self.spec(**plan.describe(), long=long, stride=stride)
        info.report()
        return out, words

    def embed_words(self, texts: Sequence[str], *, subword: str = "first", layers: LayerSpec = -1,
                    combine: str = "mean", weights=None, gamma: float = 1.0, batch_size: int = 32,
                    max_tokens: Optional[int] = None, long: str = "window",
                    stride: Optional[int] = None) -> List[WordEmbeddings]:
        """Per text: its words with character spans, each a vector made from its sub-word pieces.

        subword: first | last | mean | max | first_last ([first, last], 2x wide).
        """
        if subword not in SUBWORD:
            raise InputError(f"subword={subword!r}; valid: {', '.join(SUBWORD)}")
        tok, words = self._token_embeddings(texts, layers, combine, weights, gamma, batch_size, max_tokens,
                                            long, stride)
        return [_to_words(te, w, subword) for te, w in zip(tok, words)]


def _to_words(te: TokenEmbeddings, w, subword: str) -> WordEmbeddings:
    n = len(te.ids)
    piece_word = w.piece_word[:n]
    n_words = int(piece_word.max()) + 1 if n else 0
    vecs = []
    for k in range(n_words):
        pieces = te.vectors[piece_word == k]
        if subword == "first":
            vecs.append(pieces[0])
        elif subword == "last":
            vecs.append(pieces[-1])
        elif subword == "mean":
            vecs.append(pieces.mean(axis=0))
        elif subword == "max":
            vecs.append(pieces.max(axis=0))
        else:
            vecs.append(np.concatenate([pieces[0], pieces[-1]], axis=-1))
    width = te.vectors.shape[1:] if subword != "first_last" else (2 * te.vectors.shape[-1],)
    spans = w.word_spans[:n_words]
    return WordEmbeddings(te.text, [te.text[s:e] for s, e in spans], spans,
                          np.stack(vecs) if vecs else np.zeros((0,) + tuple(width), np.float32),
                          te.n_windows, te.truncated)


def _split_pairs(texts):
    """Strings -> (texts, None); (a, b) pairs -> (firsts, seconds)."""
    if texts and isinstance(texts[0], tuple):
        return [a for a, _ in texts], [b for _, b in texts]
    return list(texts), None


def _text(i: int, t, where: str = "") -> str:
    if isinstance(t, bytes):
        try:
            return t.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"row {i}{where}: bytes that are not valid UTF-8 ({e})") from None
    if not isinstance(t, str):
        raise InputError(f"row {i}{where}: expected a string, got {type(t).__name__} ({t!r:.60})")
    return t


def _check_texts(texts, pairs: bool = True) -> list:
    """Validate input rows: strings (bytes decoded as UTF-8), or (a, b) pairs where allowed."""
    if isinstance(texts, (str, bytes)):
        raise InputError("texts must be a list of strings, not one string (wrap it: [text])")
    if texts is None:
        raise InputError("texts is None; pass a list of strings")
    texts = list(texts)
    is_pair = [isinstance(t, (tuple, list)) for t in texts]
    if any(is_pair):
        if not pairs:
            raise InputError("text pairs are supported by encode() and embed(), not by token or word extraction")
        if not all(is_pair):
            raise InputError(f"row {is_pair.index(False)}: mix of single texts and (a, b) pairs")
        out = []
        for i, t in enumerate(texts):
            if len(t) != 2:
                raise InputError(f"row {i}: a pair must have 2 texts, got {len(t)}")
            out.append((_text(i, t[0], " (first of pair)"), _text(i, t[1], " (second of pair)")))
        return out
    return [_text(i, t) for i, t in enumerate(texts)]


def _load_encoder(handle: str):
    r = resolve.resolve(handle)
    obj = resolve.load(r.path, handle)
    sig = inspection.read_signature(obj, r.path, handle, r.entry)
    return r, obj, sig


def load(handle: str, *, preprocess=None, seq_length: Optional[int] = None) -> Encoder:
    """Load an encoder by handle with its paired preprocessor.

    handle: a registry name ("minilm"), a tfhub.dev handle, a Kaggle model URL or a
    local folder. preprocess: a preprocessor handle to use instead of the pairing.
    seq_length: the longest packed sequence (default: the model's max positions, at most 512).
    """
    r, obj, sig = _load_encoder(handle)
    pre = pairing.pair(r, sig, preprocess)
    sig.preprocessor = dict(pre.describe(), paired_by=pre.paired_by)
    limit = sig.max_positions or 512
    if seq_length is None:
        seq_length = min(limit, 512)
    if not isinstance(seq_length, int) or not (3 <= seq_length <= limit):
        raise InputError(f"seq_length={seq_length!r}; valid: 3..{limit} (the encoder's max positions)")
    return Encoder(handle, obj, sig, pre, seq_length)


def inspect(handle: str, *, preprocess=None) -> inspection.Signature:
    """What an encoder exports, its paired preprocessor, and what can be extracted."""
    return load(handle, preprocess=preprocess).signature
