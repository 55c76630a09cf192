"""``hubembed.load`` and the ``Encoder``: handle -> loaded encoder + paired preprocessor.

>>> enc = hubembed.load("minilm")                       # doctest: +SKIP
>>> enc.embed(["a sentence", "another one"]).shape      # doctest: +SKIP
(2, 384)
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from hubembed import batching, inspection, pairing, resolve, tokens
from hubembed import layers as layer_spec
from hubembed import pooling as pooling_mod
from hubembed.backends import HubBackend
from hubembed.batching import BATCH_SIZE, MAX_TOKENS
from hubembed.errors import InputError
from hubembed.extraction import BACKENDS, ExtractionInfo, LayerPlan, TextTokens, layer_plan, pool_text, text_tokens
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
    embeddings: Optional[np.ndarray] = None  # [N, S, H]: the embedding-layer output (Model Garden backend)


@dataclass
class Internals:
    """What happens inside the encoder for N texts (the Model Garden rebuild), padded to the longest.

    layer_indices: the blocks reported; embeddings [N, S, H]; layers [k, N, S, H];
    attention [k, N, heads, S, S] (query x key; rows sum to 1 over unmasked keys) or None;
    sublayers: name -> [k, N, S, H] ([k, N, S, I] for "intermediate"), see
    ``hubembed.garden.SUBLAYERS``, or None. Texts longer than one window are truncated
    (attention spans one window); ``info`` says which.
    """

    layer_indices: List[int]
    embeddings: np.ndarray
    layers: np.ndarray
    attention: Optional[np.ndarray]
    sublayers: Optional[dict]
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

    def __init__(self, handle: str, obj, signature: inspection.Signature, preprocessor, seq_length: int, *,
                 entry=None, backend: str = "auto"):
        if backend not in BACKENDS:
            raise InputError(f"backend={backend!r}; valid: {', '.join(BACKENDS)}")
        self.handle = handle
        self.obj = obj
        self.signature = signature
        self.preprocessor = preprocessor
        self.seq_length = seq_length
        self.entry = entry
        self.backend = backend        # "auto" | "hub" | "garden"
        self.hub = HubBackend(obj, signature.format)
        self._garden = None
        self._weights_sha256: Optional[str] = None
        self._lazy = threading.RLock()  # the rebuild and the word tokenizer are built once, even by racing threads
        self._garden_reasons: set = set()
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

    def _plan(self, layers, combine, weights, gamma, pooling=None, attention_layer=None) -> LayerPlan:
        return layer_plan(self.signature, layers, combine, weights, gamma, pooling, backend=self.backend,
                          attention_layer=attention_layer)

    @property
    def weights_sha256(self) -> str:
        """The content fingerprint of the weights (``inspection.weights_fingerprint``), computed once."""
        if self._weights_sha256 is None:
            self._weights_sha256 = inspection.weights_fingerprint(self.obj)
        return self._weights_sha256

    def garden(self):
        """The Model Garden rebuild of this encoder (``hubembed.garden.GardenEncoder``), built once and
        checked against the Hub model on a probe batch."""
        with self._lazy:
            if self._garden is None:
                from hubembed import garden

                garden.require()
                ops = inspection.op_types(self.signature.path)
                self._garden = garden.rebuild(self.obj, self.signature, handle=self.handle, entry=self.entry,
                                              ops=ops, hub_backend=self.hub)
        return self._garden

    def backend_for(self, plan: LayerPlan):
        """The callable that encodes packed batches for ``plan``: the Hub model or the rebuild (early exit)."""
        if not plan.garden:
            blocks = tuple(i for i in plan.indices if i != layer_spec.EMBEDDINGS)
            return lambda ids, mask, types: self.hub(ids, mask, types, keep=blocks)
        g = self.garden()
        new = [r for r in plan.reasons if r not in self._garden_reasons]
        if new:
            log.info("hubembed: %s: using the Model Garden rebuild for %s", self.handle, "; ".join(new))
            self._garden_reasons.update(new)
        attention = plan.attention_layer is not None
        return lambda ids, mask, types: g(ids, mask, types, upto=plan.upto, attention=attention)

    def _stream(self, rows, info, plan, batch_size, max_tokens, pool=None):
        return text_tokens(self, rows, info.n_windows, info.truncated, plan, batch_size=batch_size,
                           max_tokens=max_tokens, pool=pool)

    def spec(self, **kwargs) -> dict:
        """What produced a result: model, preprocessor, versions and the extraction arguments."""
        from hubembed import __version__

        return {"model": self.handle, "format": self.signature.format, "preprocessor": self.preprocessor.source,
                "seq_length": self.seq_length, "hubembed": __version__, **kwargs}

    # -- public API --------------------------------------------------------
    def encode(self, texts: Sequence, *, batch_size: int = BATCH_SIZE, max_tokens: Optional[int] = MAX_TOKENS,
               long: str = "window", stride: Optional[int] = None) -> EncoderOutputs:
        """Every output for ``texts`` (strings, or (a, b) pairs), in order, padded to the longest.

        With the Hub backend: what the model exports (``layers`` is None without
        encoder_outputs). With ``backend="garden"``: every layer and the embedding output.
        """
        texts = _check_texts(texts)
        L, H = self.signature.num_layers, self.signature.hidden_size
        use_garden = self.backend == "garden"
        all_layers = list(range(L)) if self.signature.has_encoder_outputs or use_garden else [L - 1]
        if use_garden:
            all_layers = [layer_spec.EMBEDDINGS] + all_layers
        plan = LayerPlan(all_layers, layer_spec.Combine.make("none", len(all_layers)),
                         need_pooled=self.signature.has_pooled_output, garden=use_garden,
                         upto=L - 1 if use_garden else None)
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
        info.spec = self.spec(layers="all", long=long, stride=stride, backend="garden" if use_garden else "hub")
        info.report()
        embeddings = None
        if use_garden:
            embeddings, layers = layers[0], layers[1:]
        return EncoderOutputs(pooled, layers[-1],
                              layers if self.signature.has_encoder_outputs or use_garden else None,
                              mask, ids, types, info, embeddings)

    def internals(self, texts: Sequence, *, layers: LayerSpec = "all", attention: bool = True,
                  sublayers: bool = False, batch_size: int = 16) -> Internals:
        """Inside the encoder (Model Garden rebuild): embeddings, the chosen layers, their attention
        probabilities and sub-layer outputs, for texts (or pairs) that fit one window (longer ones are
        truncated and reported). Only the blocks up to the highest chosen layer run."""
        import tensorflow as tf

        from hubembed import garden as garden_mod

        texts = _check_texts(texts)
        L = self.signature.num_layers
        chosen = [i for i in layer_spec.resolve(layers, L) if i != layer_spec.EMBEDDINGS]
        g = self.garden()
        rows, info = self._rows(texts, long="truncate", stride=None)
        N, S = len(texts), max((r.length for r in rows), default=2)
        k = len(chosen)
        H = self.signature.hidden_size
        out_emb = np.zeros((N, S, H), np.float32)
        out_layers = np.zeros((k, N, S, H), np.float32)
        out_att = np.zeros((k, N, g.config.num_heads, S, S), np.float32) if attention else None
        out_sub = ({name: None for name in garden_mod.SUBLAYERS} if sublayers else None)
        ids_all, mask_all, types_all = (np.zeros((N, S), np.int32) for _ in range(3))
        upto = max(chosen, default=-1)
        special = self.preprocessor.special
        for idx in batching.plan(rows, batch_size=batch_size, max_tokens=None, seq_length=self.seq_length):
            ids, mask, types, _ = batching.pack([rows[i] for i in idx], special, self.seq_length)
            out = g.forward(tf.constant(ids), tf.constant(mask), tf.constant(types), upto=upto,
                            attention=attention, sublayers=sublayers)
            s = ids.shape[1]
            t = [rows[i].text for i in idx]
            ids_all[t, :s], mask_all[t, :s], types_all[t, :s] = ids, mask, types
            out_emb[t, :s] = out["embeddings"].numpy()
            for j, layer in enumerate(chosen):
                out_layers[j, t, :s] = out["layers"][layer].numpy()
                if attention:
                    out_att[j, t, :, :s, :s] = out["attention"][layer].numpy()
                if sublayers:
                    for name in garden_mod.SUBLAYERS:
                        v = out["sublayers"][name][layer].numpy()
                        if out_sub[name] is None:
                            out_sub[name] = np.zeros((k, N, S, v.shape[-1]), np.float32)
                        out_sub[name][j, t, :s] = v
        info.spec = self.spec(layers=chosen, attention=attention, sublayers=sublayers, backend="garden")
        info.report()
        return Internals(chosen, out_emb, out_layers, out_att, out_sub, mask_all, ids_all, types_all, info)

    def embed(self, texts: Sequence, *, layers: LayerSpec = -1, combine: str = "mean", pooling: str = "mean",
              weights=None, gamma: float = 1.0, special_tokens: bool = True, normalize: bool = False,
              batch_size: int = BATCH_SIZE, max_tokens: Optional[int] = MAX_TOKENS, long: str = "window",
              stride: Optional[int] = None, return_info: bool = False, attention_layer=None, transform=None):
        """One vector per text: [N, D] (D = H, 2H for mean_max, k*H for concat; [N, k, H] for combine="none").

        texts: strings, or (a, b) pairs. layers/combine: see ``hubembed.layers``. pooling: one of
        ``hubembed.pooling.POOLINGS``. special_tokens: whether [CLS]/[SEP] count in mean/max/....
        Long texts are split into windows overlapping by ``stride`` tokens (default half a window)
        and stitched (``long="truncate"`` cuts instead); ``return_info=True`` also returns what
        happened to each text (``ExtractionInfo``). Results do not depend on batch_size or neighbours.
        pooling="attention" weights tokens by the attention they receive in ``attention_layer``
        (default: the highest selected layer), through the Model Garden fallback.
        transform: a fitted ``hubembed.analysis.Whitening`` (or its saved path), applied after pooling
        and before ``normalize``.
        """
        pooling_mod.check(pooling)
        if transform is not None:
            from hubembed.analysis import as_transform

            transform = as_transform(transform)
        texts = _check_texts(texts)
        plan = self._plan(layers, combine, weights, gamma, pooling, attention_layer)
        if pooling == "pooled":  # the model's pooled_output: one H-wide vector whatever the layers
            shape = (self.signature.hidden_size,)
        else:
            width = pooling_mod.width(pooling, plan.combine.width(self.signature.hidden_size, len(plan.indices)))
            shape = (width,) if combine != "none" or len(plan.indices) == 1 else (len(plan.indices), width)
        rows, info = self._rows(texts, long=long, stride=stride)
        out = np.zeros((len(texts),) + shape, np.float32)
        for t, tt in self._stream(rows, info, plan, batch_size, max_tokens, pool=(pooling, special_tokens)):
            out[t] = pool_text(tt, plan, pooling, special_tokens)
        if transform is not None:
            out = transform(out)
        if normalize:
            out = pooling_mod.l2_normalize(out)
        info.spec = self.spec(**plan.describe(), pooling=pooling, special_tokens=special_tokens,
                              normalize=normalize, long=long, stride=stride)
        if transform is not None:
            info.spec["transform"] = transform.describe()
        info.report()
        return (out, info) if return_info else out

    def features(self, texts: Sequence, *, layers: LayerSpec = "all", poolings: Sequence[str] = ("cls", "mean"),
                 special_tokens: bool = True, batch_size: int = BATCH_SIZE, max_tokens: Optional[int] = MAX_TOKENS,
                 long: str = "window", stride: Optional[int] = None) -> Dict[str, np.ndarray]:
        """Every (layer, pooling) sentence vector in one pass: {pooling: [N, k, H]}, k = the selected layers.

        For probes and layer comparisons (``hubembed.analysis``): the encoder runs once, however many
        layers and poolings. poolings: any of cls, mean, max, mean_max, mean_sqrt_len.
        """
        allowed = ("cls", "mean", "max", "mean_max", "mean_sqrt_len")
        for p in poolings:
            if p not in allowed:
                raise InputError(f"features: pooling={p!r}; valid per layer: {', '.join(allowed)}")
        texts = _check_texts(texts)
        plan = self._plan(layers, "none", None, 1.0)
        rows, info = self._rows(texts, long=long, stride=stride)
        H, k = self.signature.hidden_size, len(plan.indices)
        out = {p: np.zeros((len(texts), k, pooling_mod.width(p, H)), np.float32) for p in poolings}
        for t, tt in self._stream(rows, info, plan, batch_size, max_tokens):
            for p in poolings:
                out[p][t] = pool_text(tt, plan, p, special_tokens).reshape(k, -1)
        info.report()
        return out

    def _words(self, texts):
        with self._lazy:
            if self._word_tokenizer is None:
                self._word_tokenizer = tokens.word_tokenizer_for(self)
            if self._word_tokenizer is None:
                raise InputError(f"{self.handle}: word and token spans need a WordPiece vocab file, and neither "
                                 f"the encoder nor its preprocessor exports one")
        return self._word_tokenizer.words(texts)

    def embed_tokens(self, texts: Sequence[str], *, layers: LayerSpec = -1, combine: str = "mean",
                     weights=None, gamma: float = 1.0, batch_size: int = BATCH_SIZE,
                     max_tokens: Optional[int] = MAX_TOKENS, long: str = "window",
                     stride: Optional[int] = None) -> List[TokenEmbeddings]:
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
                    combine: str = "mean", weights=None, gamma: float = 1.0, batch_size: int = BATCH_SIZE,
                    max_tokens: Optional[int] = MAX_TOKENS, long: str = "window",
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


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(i: int, t, where: str = "") -> str:
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
        log.warning("hubembed: row %d%s holds lone surrogate code points; embedded as U+FFFD", i, where)
        t = _SURROGATE.sub("\ufffd", t)
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


def _load_encoder(handle: str, trust: str = "registry"):
    r = resolve.resolve(handle)
    obj = resolve.load(r.path, handle, audit=resolve.needs_audit(r, trust))
    sig = inspection.read_signature(obj, r.path, handle, r.entry)
    return r, obj, sig


def load(handle: str, *, preprocess=None, seq_length: Optional[int] = None, backend: str = "auto",
         trust: str = "registry") -> Encoder:
    """Load an encoder by handle with its paired preprocessor.

    handle: a registry name ("minilm"), a tfhub.dev handle, a Kaggle model URL or a
    local folder. preprocess: a preprocessor handle to use instead of the pairing.
    seq_length: the longest packed sequence (default: the model's max positions, at most 512).
    backend: "auto" (the Hub model; the Model Garden rebuild for what it does not export),
    "hub" (never rebuild) or "garden" (always the rebuild: early exit, every layer).
    trust: "registry" (default: models outside the registry are audited first, ``inspection.audit``, and
    refused if their graph touches files, the network or Python), "audit" (audit every model) or "any".
    """
    r, obj, sig = _load_encoder(handle, trust)
    fingerprint = _check_fingerprint(handle, r, obj)
    pre = pairing.pair(r, sig, preprocess, trust)
    sig.preprocessor = dict(pre.describe(), paired_by=pre.paired_by)
    limit = sig.max_positions or 512
    if seq_length is None:
        seq_length = min(limit, 512)
    if not isinstance(seq_length, int) or not (3 <= seq_length <= limit):
        raise InputError(f"seq_length={seq_length!r}; valid: 3..{limit} (the encoder's max positions)")
    enc = Encoder(handle, obj, sig, pre, seq_length, entry=r.entry, backend=backend)
    enc._weights_sha256 = fingerprint
    return enc


def _check_fingerprint(handle: str, r, obj) -> Optional[str]:
    """Compare the weights with the registry's pin: the embedded default refuses a mismatch, others warn."""
    pin = r.entry.weights_sha256 if r.entry is not None else None
    if not pin:
        return None
    got = inspection.weights_fingerprint(obj)
    if got != pin:
        if r.entry.embedded:
            from hubembed.errors import StaleCacheError

            raise StaleCacheError(f"{handle}: the converted model in {r.path} has weights fingerprint {got[:16]}..., "
                                  f"the registry pins {pin[:16]}...: the cached conversion is damaged or stale. "
                                  f"Delete it to convert again: rm -rf {os.path.dirname(r.path)}")
        log.warning("hubembed: %s: weights fingerprint %s... differs from the registry's pin %s... (another "
                    "version of the model?)", handle, got[:16], pin[:16])
    return got


def inspect(handle: str, *, preprocess=None, trust: str = "registry") -> inspection.Signature:
    """What an encoder exports, its paired preprocessor, and what can be extracted."""
    return load(handle, preprocess=preprocess, trust=trust).signature
