"""``hubembed.load`` and the ``Encoder``: handle -> loaded encoder + paired preprocessor.

>>> enc = hubembed.load("minilm")                       # doctest: +SKIP
>>> enc.embed(["a sentence", "another one"]).shape      # doctest: +SKIP
(2, 384)
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from hubembed._formats import export as export_format
from hubembed._hub import pairing, resolve
from hubembed._hub.audit import audit, op_types
from hubembed._hub.fingerprint import weights_fingerprint
from hubembed._hub.signature import Signature, read_signature
from hubembed._pipeline import batching, graph, tokens
from hubembed._pipeline import layers as layer_spec
from hubembed._pipeline import pooling as pooling_mod
from hubembed._pipeline.backends import Backend, HubBackend
from hubembed._pipeline.batching import BATCH_SIZE, MAX_TOKENS
from hubembed._pipeline.graph import ExportedEmbedder
from hubembed._pipeline.info import ExtractionInfo
from hubembed._pipeline.layers import LayerSpec
from hubembed._pipeline.run import Packing, TextTokens, pool_text, text_tokens
from hubembed._pipeline.spec import BACKENDS, QUANTIZE, EmbedSpec, LayerPlan
from hubembed._pipeline.texts import check_texts, split_pairs
from hubembed._pipeline.tokens import SUBWORD, TokenEmbeddings, WordEmbeddings, to_words  # noqa: F401 (public here)
from hubembed.errors import FormatError, InputError, StaleCacheError

log = logging.getLogger("hubembed")


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


class Encoder:
    """A loaded Hub encoder with its paired preprocessor.

    >>> enc = hubembed.load("minilm")                                    # doctest: +SKIP
    >>> enc.embed(["a sentence"], layers="-4:", combine="mean", pooling="mean").shape   # doctest: +SKIP
    (1, 384)
    """

    def __init__(
        self,
        handle: str,
        obj,
        signature: Signature,
        preprocessor,
        seq_length: int,
        *,
        entry=None,
        backend: str = "auto",
        quantize: Optional[str] = None,
    ):
        if backend not in BACKENDS:
            raise InputError(f"backend={backend!r}; valid: {', '.join(BACKENDS)}")
        check_quantize(quantize)
        self.handle = handle
        self.obj = obj
        self.signature = signature
        self.preprocessor = preprocessor
        self.seq_length = seq_length
        self.entry = entry
        self.backend = backend  # "auto" | "hub" | "garden"
        self.hub = HubBackend(obj, signature.format)
        self._garden = None
        self._weights_sha256: Optional[str] = None
        self._lazy = threading.RLock()  # the rebuild and the word tokenizer are built once, even by racing threads
        self._garden_reasons: set = set()
        self._word_tokenizer = None
        self.quantize = quantize  # None (float32), "int8" or "bf16": the compute of every call
        self._quantized: Optional[Backend] = None  # its backend, set by ``quantized_backend`` at load

    def __repr__(self) -> str:
        s = self.signature
        return (
            f"Encoder({self.handle!r}, format={s.format}, layers={s.num_layers}, hidden={s.hidden_size}, "
            f"preprocessor={self.preprocessor.source!r}"
            f"{'' if self.quantize is None else f', quantize={self.quantize!r}'})"
        )

    # -- shared steps ------------------------------------------------------
    def _rows(self, texts, *, long: str, stride: Optional[int], word_ids=None):
        firsts, seconds = split_pairs(texts)
        ids = word_ids if word_ids is not None else tokens.token_ids(self.preprocessor, firsts)
        pair_ids = tokens.token_ids(self.preprocessor, seconds) if seconds is not None else None
        rows, n_windows, truncated = batching.make_rows(ids, self.seq_length, long=long, stride=stride, pairs=pair_ids)
        n_tok = np.array([len(a) for a in ids], np.int64)
        if pair_ids is not None:
            n_tok += np.array([len(b) for b in pair_ids], np.int64)
        info = ExtractionInfo(n_tok, n_windows, truncated, n_tok == 0)
        return rows, info

    def plan(self, spec: EmbedSpec) -> LayerPlan:
        """``spec`` resolved against this encoder: its layers, and the backend that gives them.

        Raises:
            InputError: as ``EmbedSpec.plan``; or what the int8 model does not compute (``check_quantized``).
        """
        if self.quantize is None:
            return spec.plan(self.signature, self.backend)
        plan = spec.plan(self.signature, "garden" if self._quantized_source() == "garden" else self.backend)
        check_quantized(self, plan)
        return plan

    def _quantized_source(self) -> str:
        """What a quantized mode computes with: "garden" (the rebuild: bf16, TF1 modules, backend="garden") or
        "hub" (the Hub model's own graph)."""
        rebuild = self.quantize == "bf16" or self.signature.format == "tf1_hub" or self.backend == "garden"
        return "garden" if rebuild else "hub"

    @property
    def weights_sha256(self) -> str:
        """The content fingerprint of the weights (``hubembed._hub.fingerprint.weights_fingerprint``), computed once."""
        if self._weights_sha256 is None:
            self._weights_sha256 = weights_fingerprint(self.obj)
        return self._weights_sha256

    def garden(self):
        """The Model Garden rebuild of this encoder (``hubembed.garden.GardenEncoder``), built once and
        checked against the Hub model on a probe batch."""
        if self.obj is None:
            raise InputError(
                f"{self.handle} was loaded with quantize={self.quantize!r}: its float32 weights are not kept, "
                f"so the float32 Model Garden rebuild is not available (load without quantize= for it)"
            )
        with self._lazy:
            if self._garden is None:
                from hubembed import garden

                garden.require()
                ops = op_types(self.signature.path)
                self._garden = garden.rebuild(
                    self.obj, self.signature, handle=self.handle, entry=self.entry, ops=ops, hub_backend=self.hub
                )
        return self._garden

    def backend_for(self, plan: LayerPlan) -> Backend:
        """The backend that encodes packed batches for ``plan``: the Hub model or the rebuild (early exit); the
        quantized model, whatever the plan, when the encoder was loaded with ``quantize=``."""
        if self._quantized is not None:
            return self._quantized
        if not plan.garden:
            return self.hub
        g = self.garden()
        new = [r for r in plan.reasons if r not in self._garden_reasons]
        if new:
            log.info("%s: using the Model Garden rebuild for %s", self.handle, "; ".join(new))
            self._garden_reasons.update(new)
        return g

    def _stream(self, rows, info, plan, batch_size, max_tokens, pool=None):
        packing = Packing(self.preprocessor.special, self.seq_length, batch_size, max_tokens)
        return text_tokens(self.backend_for(plan), rows, info.truncated, plan, packing, pool=pool)

    def context(self) -> dict:
        """What besides the spec decides the numbers: the model, its format, preprocessor and sequence length."""
        from hubembed import __version__

        context = {
            "model": self.handle,
            "format": self.signature.format,
            "preprocessor": self.preprocessor.source,
            "seq_length": self.seq_length,
            "hubembed": __version__,
        }
        if self.quantize is not None:  # float32 records stay as they were (resumed extractions, cache keys)
            context["quantize"] = self.quantize
        return context

    def spec(self, **kwargs) -> dict:
        """What produced a result: ``context()`` and the extraction arguments ``kwargs``."""
        return {**self.context(), **kwargs}

    def check_spec_source(self, spec: EmbedSpec) -> None:
        """A spec read from an extraction (``open_extraction(out).spec``) embeds only with the same weights and
        sequence length (and its transform): anything else would give vectors that do not match the stored ones.

        Raises:
            InputError: the weights fingerprint, the sequence length or the transform differ from the extraction's.
        """
        src = spec.source
        if not src:
            return
        where = src.get("out", "the extraction")
        want = src.get("weights_sha256")
        if want and want != self.weights_sha256:
            raise InputError(
                f"{self.handle}: weights fingerprint {self.weights_sha256[:16]}... differs from the one "
                f"{where} was embedded with ({want[:16]}..., model {src.get('model')!r}): its vectors "
                f"would not be comparable; load that model"
            )
        if src.get("seq_length") and src["seq_length"] != self.seq_length:
            raise InputError(
                f"{self.handle}: seq_length {self.seq_length}, but {where} was embedded with "
                f"seq_length {src['seq_length']}: load(..., seq_length={src['seq_length']})"
            )
        spec.transform_object()  # a recorded transform must be given back, and be the same one

    def output_shape(self, spec: EmbedSpec) -> tuple:
        """The shape of one text's vector from ``embed(spec=spec)``: from the spec and the signature, without
        running the model."""
        transform = spec.transform_object()
        return spec.shape(self.plan(spec), self.signature.hidden_size, transform)

    # -- public API --------------------------------------------------------
    def encode(
        self,
        texts: Sequence,
        *,
        batch_size: int = BATCH_SIZE,
        max_tokens: Optional[int] = MAX_TOKENS,
        long: str = "window",
        stride: Optional[int] = None,
        embeddings: bool = False,
    ) -> EncoderOutputs:
        """Every output for ``texts``, in order, padded to the longest.

        With the Hub backend: what the model exports (``layers`` is None without encoder_outputs). With
        ``backend="garden"``, or when ``embeddings=True`` asks for the embedding output (which no Hub format
        exports): every layer and the embedding output, from the Model Garden rebuild.

        Args:
            texts: strings, or (a, b) pairs.
            batch_size: rows per batch at most.
            max_tokens: padded tokens per batch at most (None: rows only).
            long: "window" (overlapping windows, stitched) or "truncate".
            stride: the overlap of windows (default: half a window).
            embeddings: also return the embedding-layer output ``embeddings`` [N, S, H] (the rebuild's).

        Returns:
            ``EncoderOutputs`` (numpy): pooled, sequence, layers, mask, token_ids, type_ids, info, embeddings
            (None unless asked for or ``backend="garden"``).

        Raises:
            InputError: bad texts or arguments (the offending row or argument named); ``embeddings=True`` with
                ``backend="hub"``, which rules the rebuild out.
        """
        texts = check_texts(texts)
        EmbedSpec(long=long, stride=stride)
        plan, exported, source = self._encode_plan(bool(embeddings))
        rows, info = self._rows(texts, long=long, stride=stride)
        results: List[Optional[TextTokens]] = [None] * len(texts)
        for t, tt in self._stream(rows, info, plan, batch_size, max_tokens):
            results[t] = tt
        layers, ids, mask, types = _pad(results, len(plan.indices), self.signature.hidden_size)
        pooled = _stack_pooled(results, plan, self.signature.hidden_size)
        info.spec = self.spec(layers="all", long=long, stride=stride, backend=source)
        info.report()
        embeddings = None
        if layer_spec.EMBEDDINGS in plan.indices:  # the rebuild's: first
            embeddings, layers = layers[0], layers[1:]
        return EncoderOutputs(pooled, layers[-1], layers if exported else None, mask, ids, types, info, embeddings)

    def _encode_plan(self, embeddings: bool) -> tuple:
        """(every layer ``encode`` returns as a plan, whether the model gives the inner layers, what computes them:
        "hub" or "garden"): the Hub model's exports, the rebuild's (embedding output first), or the quantized
        model's (int8: its layers; bf16: the rebuild's)."""
        if self.quantize == "int8":
            if embeddings:
                raise InputError(_int8_refusal(["the embedding output (encode(embeddings=True))"]))
            q, L = self._quantized, self.signature.num_layers
            kept = list(range(L)) if q.num_layers else [L - 1]
            plan = LayerPlan(kept, layer_spec.Combine.make("none", len(kept)), need_pooled=q.has_pooled)
            return plan, q.num_layers > 0, self._quantized_source()
        if embeddings and self.backend == "hub":
            raise InputError(
                "embeddings=True: no Hub format exports the embedding output, so it comes from the Model Garden "
                "rebuild, which backend='hub' rules out (load with backend='auto' or 'garden')"
            )
        use_garden = self.backend == "garden" or embeddings or self.quantize == "bf16"
        exported = self.signature.has_encoder_outputs or use_garden
        return self._all_layers_plan(use_garden), exported, "garden" if use_garden else "hub"

    def _all_layers_plan(self, use_garden: bool) -> LayerPlan:
        L = self.signature.num_layers
        all_layers = list(range(L)) if self.signature.has_encoder_outputs or use_garden else [L - 1]
        if use_garden:
            all_layers = [layer_spec.EMBEDDINGS] + all_layers
        return LayerPlan(
            all_layers,
            layer_spec.Combine.make("none", len(all_layers)),
            need_pooled=self.signature.has_pooled_output,
            garden=use_garden,
            upto=L - 1 if use_garden else None,
            reasons=["the embedding output (encode(embeddings=True))"] if use_garden else [],
        )

    def internals(
        self,
        texts: Sequence,
        *,
        layers: LayerSpec = "all",
        attention: bool = True,
        sublayers: bool = False,
        batch_size: int = 16,
    ) -> Internals:
        """Inside the encoder (Model Garden rebuild) for texts (or pairs) that fit one window (longer ones are
        truncated and reported). Only the blocks up to the highest chosen layer run.

        Args:
            texts: strings, or (a, b) pairs.
            layers: the blocks to report (a layer spec, see ``hubembed._pipeline.layers``).
            attention: also the attention probabilities of those blocks.
            sublayers: also their sub-layer outputs (``hubembed.garden.SUBLAYERS``).
            batch_size: rows per batch.

        Returns:
            ``Internals``: embeddings, the chosen layers, attention, sub-layers, mask, ids, info.
        """
        texts = check_texts(texts)
        chosen = [i for i in layer_spec.resolve(layers, self.signature.num_layers) if i != layer_spec.EMBEDDINGS]
        if self.quantize == "int8":
            raise InputError(_int8_refusal(["internals (attention, sub-layers: the float32 rebuild's)"]))
        g = self._quantized if self.quantize == "bf16" else self.garden()
        rows, info = self._rows(texts, long="truncate", stride=None)
        N, S = len(texts), max((r.length for r in rows), default=2)
        acc = _InternalsBuffer(N, S, self.signature.hidden_size, chosen, g.config.num_heads, attention, sublayers)
        upto = max(chosen, default=-1)
        for idx in batching.plan(rows, batch_size=batch_size, max_tokens=None, seq_length=self.seq_length):
            packed = batching.pack([rows[i] for i in idx], self.preprocessor.special, self.seq_length)
            out = g.forward(*packed[:3], upto=upto, attention=attention, sublayers=sublayers)
            acc.add([rows[i].text for i in idx], packed, out)
        info.spec = self.spec(layers=chosen, attention=attention, sublayers=sublayers, backend="garden")
        info.report()
        return acc.result(chosen, info)

    def embed(
        self,
        texts: Sequence,
        *,
        layers: LayerSpec = -1,
        combine: str = "mean",
        pooling: str = "mean",
        weights=None,
        gamma: float = 1.0,
        special_tokens: bool = True,
        normalize: bool = False,
        batch_size: int = BATCH_SIZE,
        max_tokens: Optional[int] = MAX_TOKENS,
        long: str = "window",
        stride: Optional[int] = None,
        return_info: bool = False,
        attention_layer=None,
        transform=None,
        spec: Optional[EmbedSpec] = None,
        truncate_dim: Optional[int] = None,
        precision: str = "float32",
        ranges=None,
    ):
        """One vector per text. Results do not depend on batch_size, max_tokens or neighbours.

        Args:
            texts: strings, or (a, b) pairs; one string gives one vector ([D]).
            layers, combine, weights, gamma, pooling, special_tokens, normalize, attention_layer, long, stride,
                transform: the ``EmbedSpec`` (see there); pooling="attention" goes through the Model Garden
                fallback, transform (a fitted ``Whitening`` or its path) applies after pooling, before normalize.
            truncate_dim, precision, ranges: keep the first n dimensions (before normalize), then quantize
                (int8/uint8 with calibration ``ranges``, binary/ubinary), as sentence-transformers' ``encode``.
            spec: an ``EmbedSpec`` instead of those keywords, e.g. ``open_extraction(out).spec`` to embed
                queries exactly as a stored corpus was embedded.
            batch_size: rows per batch at most.
            max_tokens: padded tokens per batch at most (None: rows only).
            return_info: also return what happened to each text (``ExtractionInfo``).

        Returns:
            [N, D] float32 (D = H, 2H for mean_max, k*H for concat, the transform's width, truncate_dim; [N, k, H]
            for combine="none" over k layers; int8/uint8 codes, D/8 packed bytes for binary), and the
            ``ExtractionInfo`` with ``return_info=True``.

        Raises:
            InputError: bad texts or arguments, or a spec read from an extraction made with other weights.
        """
        spec = EmbedSpec.make(
            spec,
            layers=layers,
            combine=combine,
            pooling=pooling,
            weights=weights,
            gamma=gamma,
            special_tokens=special_tokens,
            normalize=normalize,
            long=long,
            stride=stride,
            attention_layer=attention_layer,
            transform=transform,
            truncate_dim=truncate_dim,
            precision=precision,
            ranges=ranges,
        )
        if isinstance(texts, (str, bytes)):  # one text -> one vector, as sentence-transformers' encode(str)
            out = self.embed([texts], spec=spec, batch_size=batch_size, max_tokens=max_tokens, return_info=return_info)
            return (out[0][0], out[1]) if return_info else out[0]
        self.check_spec_source(spec)
        transform = spec.transform_object()
        texts = check_texts(texts)
        plan = self.plan(spec)
        shape = spec.pooled_shape(plan, self.signature.hidden_size)
        spec.shape(plan, self.signature.hidden_size, transform)  # transform and truncate_dim fit: checked before work
        rows, info = self._rows(texts, long=spec.long, stride=spec.stride)
        out = np.zeros((len(texts),) + shape, np.float32)
        for t, tt in self._stream(rows, info, plan, batch_size, max_tokens, pool=(spec.pooling, spec.special_tokens)):
            out[t] = pool_text(tt, plan, spec.pooling, spec.special_tokens)
        out = spec.finish(out, transform)  # transform, truncate_dim, normalize, precision
        info.spec = spec.record(plan, transform, **self.context())
        info.report()
        return (out, info) if return_info else out

    def features(
        self,
        texts: Sequence,
        *,
        layers: LayerSpec = "all",
        poolings: Sequence[str] = ("cls", "mean"),
        special_tokens: bool = True,
        batch_size: int = BATCH_SIZE,
        max_tokens: Optional[int] = MAX_TOKENS,
        long: str = "window",
        stride: Optional[int] = None,
    ) -> Dict[str, np.ndarray]:
        """Every (layer, pooling) sentence vector in one pass: the encoder runs once, however many layers and
        poolings (for probes and layer comparisons, ``hubembed.analysis``).

        Args:
            texts: strings, or (a, b) pairs.
            layers: a layer spec; poolings: any of cls, mean, max, mean_max, mean_sqrt_len, weightedmean.
            special_tokens, long, stride: as ``EmbedSpec``; batch_size, max_tokens: as ``embed``.

        Returns:
            {pooling: [N, k, H]}, k = the selected layers.
        """
        for p in poolings:
            if p not in FEATURE_POOLINGS:
                raise InputError(f"features: pooling={p!r}; valid per layer: {', '.join(FEATURE_POOLINGS)}")
        spec = EmbedSpec(layers=layers, combine="none", special_tokens=special_tokens, long=long, stride=stride)
        texts = check_texts(texts)
        plan = self.plan(spec)
        rows, info = self._rows(texts, long=long, stride=stride)
        H, k = self.signature.hidden_size, len(plan.indices)
        out = {p: np.zeros((len(texts), k, pooling_mod.width(p, H)), np.float32) for p in poolings}
        for t, tt in self._stream(rows, info, plan, batch_size, max_tokens):
            for p in poolings:
                out[p][t] = pool_text(tt, plan, p, special_tokens).reshape(k, -1)
        info.report()
        return out

    def export(self, out: str, spec: Optional[EmbedSpec] = None, *, overwrite: bool = False, **spec_keywords) -> str:
        """Write one self-contained SavedModel that embeds as ``embed(texts, spec=spec)`` does, without hubembed.

        Its ``__call__`` and ``serving_default`` take a string tensor ``[B]`` and return float32 ``[B, D]``;
        tokenizing (the paired preprocessor's own), packing (each batch in length-sorted chunks, each padded to
        its own longest text), the encoder, the layer selection and combination, the masked pooling, the
        transform and the normalisation all run inside it. Texts longer than the window (``seq_length - 2``
        word pieces) are truncated; ``hubembed.json`` beside it says so, with the source model, its weights
        fingerprint, the spec, the dimension and the versions. Loading it takes TensorFlow and
        tensorflow-text (``import tensorflow_text`` first); ``hubembed.load(out)`` gives an ``ExportedEmbedder``.

        Args:
            out: the folder to write (new or empty; ``overwrite=True`` replaces one).
            spec: an ``EmbedSpec``, or its keywords (``layers=``, ``pooling=``, ``transform=``...), as ``embed``.
            overwrite: replace ``out`` if it exists.

        Returns:
            ``out``, as an absolute path.

        Raises:
            InputError: a spec one graph cannot express (the message says which part and why: a layer axis kept
                with ``combine="none"``, a window ``stride``) or that does not fit this encoder.
            OutputError: ``out`` exists and is not empty.
            MissingDependencyError: the spec or a TF1 Hub module needs the Model Garden rebuild, not installed.
            FormatError: the written model does not reproduce ``embed`` on probe texts, or fails the audit.
        """
        if self.quantize is not None:
            raise InputError(
                f"export: {self.handle} was loaded with quantize={self.quantize!r}; an export is one float32 "
                f"TensorFlow SavedModel (int8 TFLite cannot be part of it): load without quantize= to export"
            )
        spec, plan, transform = _export_plan(self, EmbedSpec.make(spec, **spec_keywords))
        dim = spec.shape(plan, self.signature.hidden_size, transform)[-1]
        with export_format.staged(out, overwrite) as folder:  # refuses a used folder before the slow work
            backend = self.backend_for(plan)
            variables = backend.model.variables if plan.garden else getattr(self.obj, "variables", [])
            head = graph.Head(plan, spec.pooling, spec.special_tokens, spec.normalize, transform)
            batching_ = {"max_rows": BATCH_SIZE, "max_tokens": max(MAX_TOKENS, self.seq_length)}
            root, serving = graph.build(
                self.preprocessor.module,
                backend,
                head,
                seq_length=self.seq_length,
                dim=dim,
                batching=batching_,
                variables=variables,
            )
            export_format.save(folder, root, serving)
            check = _export_check(self, folder, spec)
            export_format.write_record(folder, _export_record(self, spec, plan, transform, dim, batching_, check))
            _export_audit(folder, self.handle)
        return os.path.abspath(os.path.expanduser(out))

    def word_tokenizer(self) -> tokens.WordTokenizer:
        """The word tokenizer matching the preprocessor (its vocab file and casing), built once.

        Raises:
            InputError: neither the encoder nor its preprocessor exports a WordPiece vocab file.
        """
        with self._lazy:
            if self._word_tokenizer is None:
                self._word_tokenizer = tokens.word_tokenizer_for(self.preprocessor, self.signature)
            if self._word_tokenizer is None:
                raise InputError(
                    f"{self.handle}: word and token spans need a WordPiece vocab file, and neither "
                    f"the encoder nor its preprocessor exports one"
                )
        return self._word_tokenizer

    def embed_tokens(
        self,
        texts: Sequence[str],
        *,
        layers: LayerSpec = -1,
        combine: str = "mean",
        weights=None,
        gamma: float = 1.0,
        batch_size: int = BATCH_SIZE,
        max_tokens: Optional[int] = MAX_TOKENS,
        long: str = "window",
        stride: Optional[int] = None,
        spec: Optional[EmbedSpec] = None,
    ) -> List[TokenEmbeddings]:
        """Per text: its WordPiece tokens (no [CLS]/[SEP]), their character spans and vectors.

        Args:
            texts: strings (not pairs).
            layers, combine, weights, gamma, long, stride: as ``EmbedSpec`` (or ``spec=``: its token part).
            batch_size, max_tokens: as ``embed``.

        Returns:
            a ``TokenEmbeddings`` per text: tokens, ids, spans [n, 2], vectors [n, D].
        """
        spec = EmbedSpec.make(
            spec, layers=layers, combine=combine, weights=weights, gamma=gamma, long=long, stride=stride
        )
        return self._token_embeddings(texts, spec.for_tokens(), batch_size, max_tokens)[0]

    def _token_embeddings(self, texts, spec: EmbedSpec, batch_size, max_tokens):
        texts = check_texts(texts, pairs=False)
        plan = self.plan(spec)
        wt = self.word_tokenizer()
        words = wt.words(texts)
        rows, info = self._rows(texts, long=spec.long, stride=spec.stride, word_ids=[w.ids for w in words])
        out: List[Optional[TokenEmbeddings]] = [None] * len(texts)
        for t, tt in self._stream(rows, info, plan, batch_size, max_tokens):
            w = words[t]
            n = len(tt.ids) - 2  # content tokens kept (after truncation)
            vec = plan.combine.apply(tt.vectors)[1 : 1 + n]
            out[t] = TokenEmbeddings(
                texts[t], wt.piece_strings(w.ids[:n]), w.ids[:n], w.piece_spans[:n], vec, tt.n_windows, tt.truncated
            )
        info.spec = spec.token_record(plan, **self.context())
        info.report()
        return out, words

    def embed_words(
        self,
        texts: Sequence[str],
        *,
        subword: str = "first",
        layers: LayerSpec = -1,
        combine: str = "mean",
        weights=None,
        gamma: float = 1.0,
        batch_size: int = BATCH_SIZE,
        max_tokens: Optional[int] = MAX_TOKENS,
        long: str = "window",
        stride: Optional[int] = None,
        spec: Optional[EmbedSpec] = None,
        split_into_words: bool = False,
    ) -> List[WordEmbeddings]:
        """Per text: its words with character spans, each a vector made from its sub-word pieces.

        Args:
            texts: strings (not pairs); with ``split_into_words=True``, lists of the caller's own words (as Hugging
                Face's ``is_split_into_words``, for token-level tasks such as NER): one vector per given word,
                from the pieces of that word (joined by single spaces, which spans refer to); a word that yields
                no piece gets zeros and its index in ``no_piece``.
            subword: first | last | mean | max | first_last ([first, last], 2x wide).
            layers, combine, weights, gamma, long, stride: as ``EmbedSpec`` (or ``spec=``: its token part).
            batch_size, max_tokens: as ``embed``.

        Returns:
            a ``WordEmbeddings`` per text: words, spans [n, 2] (``text[s:e] == word``), vectors [n, D].
        """
        if subword not in SUBWORD:
            raise InputError(f"subword={subword!r}; valid: {', '.join(SUBWORD)}")
        spec = EmbedSpec.make(
            spec, layers=layers, combine=combine, weights=weights, gamma=gamma, long=long, stride=stride
        )
        if split_into_words:
            given = [tokens.join_words(_word_list(i, ws)) for i, ws in enumerate(texts)]
            tok, _ = self._token_embeddings([t for t, _ in given], spec.for_tokens(), batch_size, max_tokens)
            return [tokens.to_given_words(te, texts[i], given[i][1], subword) for i, te in enumerate(tok)]
        tok, words = self._token_embeddings(texts, spec.for_tokens(), batch_size, max_tokens)
        return [to_words(te, w, subword) for te, w in zip(tok, words)]


def _word_list(i: int, words) -> list:
    """Row i of pre-tokenized input: a list of strings."""
    if isinstance(words, (str, bytes)) or not isinstance(words, (list, tuple)):
        raise InputError(
            f"row {i}: split_into_words=True takes a list of words per text (got {type(words).__name__}); pass "
            f"plain strings without split_into_words"
        )
    bad = [w for w in words if not isinstance(w, str)]
    if bad:
        raise InputError(f"row {i}: words must be strings (got {bad[0]!r})")
    return list(words)


FEATURE_POOLINGS = ("cls", "mean", "max", "mean_max", "mean_sqrt_len", "weightedmean")


def _pad(results, k: int, H: int):
    """Per-text TextTokens -> layers [k, N, S, H], ids, mask, type ids [N, S], padded to the longest."""
    S = max((len(r.ids) for r in results), default=0)
    N = len(results)
    layers = np.zeros((k, N, S, H), np.float32)
    ids, mask, types = (np.zeros((N, S), np.int32) for _ in range(3))
    for t, r in enumerate(results):
        n = len(r.ids)
        layers[:, t, :n] = r.vectors
        ids[t, :n], mask[t, :n], types[t, :n] = r.ids, 1, r.type_ids
    return layers, ids, mask, types


def _stack_pooled(results, plan: LayerPlan, H: int) -> Optional[np.ndarray]:
    if not plan.need_pooled:
        return None
    return np.stack([r.pooled for r in results]) if results else np.zeros((0, H), np.float32)


class _InternalsBuffer:
    """``Encoder.internals``' output arrays, filled batch by batch."""

    def __init__(self, N: int, S: int, H: int, chosen, heads: int, attention: bool, sublayers: bool):
        k = len(chosen)
        self.chosen, self.attention, self.sublayers, self.shape = chosen, attention, sublayers, (k, N, S)
        self.emb = np.zeros((N, S, H), np.float32)
        self.layers = np.zeros((k, N, S, H), np.float32)
        self.att = np.zeros((k, N, heads, S, S), np.float32) if attention else None
        self.sub = {name: None for name in garden_sublayers()} if sublayers else None
        self.ids, self.mask, self.types = (np.zeros((N, S), np.int32) for _ in range(3))

    def add(self, t, packed, out) -> None:
        ids, mask, types, _ = packed
        s = ids.shape[1]
        self.ids[t, :s], self.mask[t, :s], self.types[t, :s] = ids, mask, types
        self.emb[t, :s] = out["embeddings"].numpy()
        for j, layer in enumerate(self.chosen):
            self.layers[j, t, :s] = out["layers"][layer].numpy()
            if self.attention:
                self.att[j, t, :, :s, :s] = out["attention"][layer].numpy()
            if self.sublayers:
                self._add_sublayers(j, t, s, layer, out)

    def _add_sublayers(self, j, t, s, layer, out) -> None:
        for name in self.sub:
            v = out["sublayers"][name][layer].numpy()
            if self.sub[name] is None:
                self.sub[name] = np.zeros(self.shape + (v.shape[-1],), np.float32)
            self.sub[name][j, t, :s] = v

    def result(self, chosen, info) -> Internals:
        return Internals(chosen, self.emb, self.layers, self.att, self.sub, self.mask, self.ids, self.types, info)


def garden_sublayers():
    from hubembed.garden import SUBLAYERS

    return SUBLAYERS


# -- export: the helpers of Encoder.export ------------------------------------------------------------------------
def _export_plan(enc: Encoder, spec: EmbedSpec):
    """(spec as exported, LayerPlan, transform): what one graph can express, refused otherwise with the reason,
    before anything slow runs. The export truncates long texts (``long="truncate"``), and a TF1 Hub module is
    exported through the Model Garden rebuild (its TF1 signatures cannot be saved in a TF2 SavedModel)."""
    enc.check_spec_source(spec)
    if spec.stride is not None:
        raise InputError(
            f"stride={spec.stride} sets the overlap of windows, but an export truncates each text to one window "
            f"({enc.seq_length - 2} word pieces): leave stride unset"
        )
    if spec.truncate_dim is not None or spec.precision != "float32":
        raise InputError(
            "truncate_dim and precision: an export returns the float32 vectors of the spec's pooling; truncate "
            "or quantize its outputs (hubembed.quantize.quantize), or export without them"
        )
    transform = spec.transform_object()
    spec = spec.replace(long="truncate")
    backend = enc.backend
    if enc.signature.format == "tf1_hub":
        if backend == "hub":
            raise InputError(
                f"{enc.handle} is a TF1 Hub module: its signatures cannot be saved inside a TF2 SavedModel, so an "
                f"export runs the Model Garden rebuild of it, which backend='hub' rules out; load it with "
                f"backend='auto' (default) or 'garden'"
            )
        backend = "garden"
    plan = spec.plan(enc.signature, backend)
    if plan.combine.how == "none" and len(plan.indices) > 1:
        raise InputError(
            f"combine='none' keeps the {len(plan.indices)} layers apart ([N, {len(plan.indices)}, H] per call), but "
            f"an export gives one vector per text ([B, D]): combine them (concat, mean, sum, weighted, scalar_mix)"
        )
    if plan.garden:
        from hubembed import garden

        garden.require()
    return spec, plan, transform


# Probe texts for the export's check: plain, empty, accented and CJK, and one longer than any window.
_PROBE = ["A man is playing a guitar.", "", "naïve café: 日本語, 😀!", "hello world " * 300]


def _export_check(enc: Encoder, folder: str, spec: EmbedSpec) -> dict:
    """Load the written SavedModel back, run it on probe texts and compare with ``embed``: an export that does not
    reproduce it is refused."""
    import tensorflow as tf

    level = log.level
    log.setLevel(logging.ERROR)  # the long probe's truncation is expected, not news
    try:
        want = enc.embed(_PROBE, spec=spec)
    finally:
        log.setLevel(level)
    got = tf.saved_model.load(folder)(tf.constant(_PROBE)).numpy()
    diff = float(np.abs(got - want).max()) / max(1.0, float(np.abs(want).max()))
    if not diff <= 1e-4:
        raise FormatError(
            f"the exported graph of {enc.handle} does not reproduce Encoder.embed on probe texts (max |diff| "
            f"{diff:.2e} relative, tolerance 1e-4); nothing was written"
        )
    return {"texts": len(_PROBE), "max_abs_diff": float(f"{diff:.3g}")}


def _export_record(enc: Encoder, spec: EmbedSpec, plan: LayerPlan, transform, dim: int, batching_: dict, check):
    """What ``hubembed.json`` says about an export."""
    from hubembed._util import versions

    size = enc.seq_length - 2
    return {
        "format": export_format.FORMAT,
        "model": enc.handle,
        "model_format": enc.signature.format,
        "weights_sha256": enc.weights_sha256,
        "preprocessor": enc.preprocessor.to_dict(),
        "spec": spec.record(plan, transform, **enc.context()),
        "dim": int(dim),
        "seq_length": enc.seq_length,
        "truncation": {
            "mode": "truncate",
            "max_word_pieces": size,
            "note": f"a text of more than {size} word pieces is cut to its first {size} (one window; "
            f"Encoder.embed's default, long='window', would stitch overlapping windows instead)",
        },
        "batching": {**batching_, "note": "each call is sorted by length and encoded in chunks of at most these"},
        "signatures": {"__call__ and serving_default": f"inputs: string [B] -> outputs: float32 [B, {dim}]"},
        "check": check,
        "requires": "tensorflow and tensorflow-text of the versions below (import tensorflow_text before loading)",
        "versions": versions("tensorflow", "tensorflow_text"),
    }


def _export_audit(folder: str, handle: str) -> None:
    a = audit(folder)
    if not a.ok:
        found = "; ".join(f"{f.op} in {f.where}: {f.why}" for f in a.findings[:10])
        raise FormatError(f"the export of {handle} fails hubembed's audit ({found}); nothing was written")


def _load_encoder(r: resolve.Resolved, trust: str = "registry"):
    obj = resolve.load(r.path, r.handle, audit=resolve.needs_audit(r, trust))
    sig = read_signature(obj, r.path, r.handle, r.entry)
    return r, obj, sig


def _load_export(r: resolve.Resolved, trust: str, **given) -> ExportedEmbedder:
    """An export folder loaded back: audited like any model outside the registry, then ``tf.saved_model.load``."""
    record = r.export
    fixed = {"preprocess": None, "seq_length": record.get("seq_length"), "backend": "auto", "quantize": None}
    changed = [k for k, v in given.items() if v is not None and v != fixed[k]]
    if changed:
        raise InputError(
            f"{r.handle} is a hubembed export: its preprocessing, window (seq_length {record.get('seq_length')}) "
            f"and encoder are baked in, so {', '.join(changed)} cannot be given; load the model it was exported "
            f"from ({record.get('model')!r}) for that"
        )
    obj = resolve.load(r.path, r.handle, audit=resolve.needs_audit(r, trust))
    spec = EmbedSpec.from_dict(record["spec"])
    source = {"out": r.path, "model": record.get("model"), "weights_sha256": record.get("weights_sha256")}
    recorded = {"seq_length": record["seq_length"], "transform": record["spec"].get("transform")}
    spec = spec.with_source({**source, **recorded})
    return ExportedEmbedder(r.path, obj, export_format.ExportInfo.read(r.path, record), spec)


def load(
    handle: str,
    *,
    preprocess=None,
    seq_length: Optional[int] = None,
    backend: str = "auto",
    trust: str = "registry",
    quantize: Optional[str] = None,
) -> Union[Encoder, ExportedEmbedder]:
    """Load an encoder by handle with its paired preprocessor (or a ``hubembed export`` folder: an embedder).

    Args:
        handle: a registry name ("minilm"), a tfhub.dev handle, a Kaggle model URL or a local folder.
        preprocess: a preprocessor handle to use instead of the automatic pairing.
        seq_length: the longest packed sequence, [CLS]/[SEP] included (default: the length the model was trained
            with, from the registry (minilm: 256, as sentence-transformers), else its max positions, at most 512).
        backend: "auto" (the Hub model; the Model Garden rebuild for what it does not export), "hub" (never
            rebuild) or "garden" (always the rebuild: early exit, every layer).
        trust: "registry" (default: models outside the registry are audited first, ``hubembed._hub.audit``,
            and refused if their graph touches files, the network or Python), "audit" (audit every model) or
            "any".
        quantize: None (float32), "int8" (the matrix products in int8: the encoder converted once to a
            dynamic-range quantized TFLite model, cached by its weights fingerprint, run by LiteRT; inference
            only; the float32 weights are not kept) or "bf16" (the Model Garden rebuild computing in bf16; only
            on CPUs with bf16 instructions).

    Returns:
        the ``Encoder``; for a folder written by ``Encoder.export`` / ``hubembed export``, an
        ``ExportedEmbedder`` (``embed(texts)`` -> numpy; its spec and window are baked in, it is no encoder).

    Raises:
        HandleError, UnknownModelError, ModelNotFoundError, DownloadError: the handle leads to no model.
        NotASavedModelError, FormatError: what it leads to is not a BERT-family Hub encoder.
        PreprocessorMismatchError: the preprocessor does not fit the encoder.
        UntrustedModelError: the audit flagged the graph (``trust``).
        StaleCacheError: the embedded default's converted copy does not match its pinned fingerprint.
        InputError: seq_length, backend or quantize out of range (bf16 on a CPU without it).
    """
    check_quantize(quantize)
    r = resolve.resolve(handle)
    if r.export is not None:
        return _load_export(r, trust, preprocess=preprocess, seq_length=seq_length, backend=backend, quantize=quantize)
    cached = _cached_int8(r, trust, backend) if quantize == "int8" else None
    if cached is not None:  # the int8 model of pinned weights: the float32 SavedModel is not read at all
        sig = Signature(**{**cached["signature"], "handle": r.handle, "path": r.path})
        obj, fingerprint = None, r.entry.weights_sha256
    else:
        r, obj, sig = _load_encoder(r, trust)
        fingerprint = _check_fingerprint(handle, r, obj)
    pre = pairing.pair(r, sig, preprocess, trust)
    sig.preprocessor = dict(pre.to_dict(), paired_by=pre.paired_by)
    limit = sig.max_positions or 512
    trained = r.entry.seq_length if r.entry is not None and r.entry.kind == "encoder" else None
    sig.seq_length_from = "given" if seq_length is not None else "registry" if trained else "max positions"
    if seq_length is None:
        seq_length = trained or min(limit, 512)
    if not isinstance(seq_length, int) or not (3 <= seq_length <= limit):
        raise InputError(f"seq_length={seq_length!r}; valid: 3..{limit} (the encoder's max positions)")
    sig.seq_length = seq_length
    enc = Encoder(handle, obj, sig, pre, seq_length, entry=r.entry, backend=backend, quantize=quantize)
    enc._weights_sha256 = fingerprint
    if quantize is not None:
        enc.weights_sha256  # the fingerprint, before the float32 weights go
        enc._quantized = quantized_backend(enc)
        enc.obj = enc.hub = enc._garden = None  # the quantized model is what runs: free the float32 weights
        _release_freed_memory()
    return enc


def _check_fingerprint(handle: str, r, obj) -> Optional[str]:
    """Compare the weights with the registry's pin: the embedded default refuses a mismatch, others warn."""
    pin = r.entry.weights_sha256 if r.entry is not None else None
    if not pin:
        return None
    got = weights_fingerprint(obj)
    if got != pin:
        if r.entry.embedded:
            raise StaleCacheError(
                f"{handle}: the converted model in {r.path} has weights fingerprint {got[:16]}..., "
                f"the registry pins {pin[:16]}...: the cached conversion is damaged or stale. "
                f"Delete it to convert again: rm -rf {os.path.dirname(r.path)}"
            )
        log.warning(
            "%s: weights fingerprint %s... differs from the registry's pin %s... (another version of the model?)",
            handle,
            got[:16],
            pin[:16],
        )
    return got


def inspect(handle: str, *, preprocess=None, trust: str = "registry", seq_length: Optional[int] = None) -> Signature:
    """What an encoder exports, its paired preprocessor, and what can be extracted.

    Args:
        handle, preprocess, trust, seq_length: as ``load``.

    Returns:
        the ``Signature`` (``describe()``: text; ``to_json()``: stable JSON); for a ``hubembed export`` folder,
        its ``ExportInfo`` (the same two methods; read from its files, nothing loaded).
    """
    r = resolve.resolve(handle)
    if r.export is not None:
        return export_format.ExportInfo.read(r.path, r.export)
    return load(handle, preprocess=preprocess, trust=trust, seq_length=seq_length).signature


# -- quantized compute (load(..., quantize=)) ----------------------------------------------------------------------
PROBE_TEXTS = (
    "A man is playing a guitar on the street.",
    "Stock markets fell sharply on Monday after the announcement of new tariffs.",
    "The quick brown fox jumps over the lazy dog",
    "Is this the right way to the station?",
)
_PER_LOAD = ("preprocessor", "seq_length", "seq_length_from")  # set by each load, not part of the model
MIN_AGREEMENT = 0.98  # mean token cosine of the last layer, int8 vs float32, on PROBE_TEXTS (minilm: 0.998)


def check_quantize(quantize: Optional[str]) -> None:
    """A quantize mode this machine runs well, checked before anything loads.

    Raises:
        InputError: an unknown mode; "bf16" on a CPU without bf16 instructions (TensorFlow would emulate it,
            several times slower than float32).
        MissingDependencyError: "int8" without LiteRT (the ``int8`` extra).
    """
    if quantize is None:
        return
    if quantize not in QUANTIZE:
        raise InputError(f"quantize={quantize!r}; valid: {', '.join(map(repr, QUANTIZE))} or None (float32)")
    if quantize == "int8":
        from hubembed._util import optional

        optional("ai_edge_litert.interpreter", "quantize='int8' (LiteRT runs the int8 model)")
    if quantize == "bf16":
        flags = cpu_flags()
        have = sorted(flags & {"avx512_bf16", "amx_bf16"})
        if not have:
            where = "its flags could not be read" if not flags else "no avx512_bf16 or amx_bf16 in /proc/cpuinfo"
            raise InputError(
                f"quantize='bf16': this CPU has no bf16 instructions ({where}); TensorFlow would emulate bf16, "
                f"several times slower than float32: use quantize='int8' (or float32)"
            )


def cpu_flags() -> set:
    """The CPU's feature flags (Linux: /proc/cpuinfo); empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _int8_refusal(what: List[str]) -> str:
    return (
        f"quantize='int8' computes the encoder's own outputs (its layers and pooled output) in int8; "
        f"{'; '.join(what)} would need the float32 (or bf16) Model Garden rebuild: load without quantize= for it"
    )


def check_quantized(enc: Encoder, plan: LayerPlan) -> None:
    """What the int8 model cannot give, refused with the reason (bf16 runs the rebuild: it gives everything).

    Raises:
        InputError: the embedding output, attention pooling, or (converted from the Hub model's graph) layers
            the model does not export.
    """
    if enc.quantize != "int8":
        return
    what = []
    if layer_spec.EMBEDDINGS in plan.indices:
        what.append("the embedding output (layer 'embeddings')")
    if plan.attention_layer is not None:
        what.append("pooling='attention' (attention weights)")
    if what:
        raise InputError(_int8_refusal(what))
    if plan.garden and enc._quantized_source() == "hub":  # layers the Hub model does not export
        hint = " (or load with backend='garden', quantize='int8': the rebuild, quantized, gives every layer)"
        raise InputError(_int8_refusal(list(plan.reasons)) + hint)


def quantized_backend(enc: Encoder) -> Backend:
    """The backend of ``enc.quantize``: int8, the TFLite model converted once (cached by the weights
    fingerprint) and checked against float32 on probe texts; bf16, the Model Garden rebuild computing in bf16.

    Raises:
        FormatError: the graph does not convert to TFLite, or the int8 model disagrees with float32.
        MissingDependencyError: ai-edge-litert (int8) or Model Garden (bf16, TF1 modules) is not installed.
    """
    from hubembed._formats import lite
    from hubembed._pipeline.backends import LiteBackend

    source = enc._quantized_source()
    if source == "garden" and enc.backend == "hub":
        why = "bf16 runs" if enc.quantize == "bf16" else "a TF1 module's int8 model is converted from"
        raise InputError(
            f"quantize={enc.quantize!r} with backend='hub': {why} the Model Garden rebuild, which backend='hub' "
            f"rules out (use backend='auto')"
        )
    if enc.quantize == "bf16":
        return enc.garden().with_policy("mixed_bfloat16")
    path = lite.cache_path(enc.weights_sha256, source)
    if lite.read_record(path) is None:
        float32 = enc.garden() if source == "garden" else enc.hub
        log.info("%s: quantizing the encoder to int8 (once; kept in %s)", enc.handle, os.path.dirname(path))
        lite.convert(float32, float32.model if source == "garden" else enc.obj, path)
        int8 = LiteBackend(path, source)
        agreement = _agreement(enc, float32, int8)
        if agreement < MIN_AGREEMENT:
            os.remove(path)
            raise FormatError(
                f"{enc.handle}: the int8 model's last layer agrees with float32 only to a mean cosine of "
                f"{agreement:.4f} on probe texts (at least {MIN_AGREEMENT} expected): use float32 or bf16"
            )
        lite.write_record(
            path,
            {
                "source": source,
                "model": enc.handle,
                "probe_cosine": round(agreement, 6),
                "weights_sha256": enc.weights_sha256,
                "signature": {k: v for k, v in enc.signature.to_dict().items() if k not in _PER_LOAD},
            },
        )
        return int8
    return LiteBackend(path, source)


def _cached_int8(r: resolve.Resolved, trust: str, backend: str) -> Optional[dict]:
    """The record of an int8 model already converted from weights the registry pins, when loading it needs
    nothing from the float32 SavedModel (no audit asked for): its signature is in the record."""
    from hubembed._formats import lite

    pin = r.entry.weights_sha256 if r.entry is not None and r.entry.kind == "encoder" else None
    if not pin or resolve.needs_audit(r, trust):
        return None
    for source in ("garden",) if backend == "garden" else ("hub", "garden"):
        record = lite.read_record(lite.cache_path(pin, source))
        fmt = (record or {}).get("signature", {}).get("format")
        if fmt and source == ("garden" if fmt == "tf1_hub" or backend == "garden" else "hub"):
            return record
    return None


def _release_freed_memory() -> None:
    """Hand the freed float32 weights back to the operating system (glibc keeps freed heap pages otherwise)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _agreement(enc: Encoder, float32: Backend, int8: Backend) -> float:
    """Mean cosine over the real tokens of ``PROBE_TEXTS`` between the two backends' last layers."""
    rows, _ = enc._rows(list(PROBE_TEXTS), long="truncate", stride=None)
    ids, mask, types = batching.pack(rows, enc.preprocessor.special, enc.seq_length)[:3]
    a = np.asarray(float32(ids, mask, types).sequence, np.float64)
    b = np.asarray(int8(ids, mask, types).sequence, np.float64)
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)
    return float(cos[mask.astype(bool)].mean())
