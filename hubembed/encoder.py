"""The ``Encoder``: a loaded Hub encoder with its paired preprocessor, and its entry points (``encode``, ``embed``,
``features``, ``internals``, ``embed_tokens``, ``embed_words``, ``export``).

It is built whole by ``hubembed.load`` (``hubembed._load``): an ``Engine`` (``hubembed._engines``: which backend
computes a plan; the Model Garden rebuild and the quantized model behind it), the paired preprocessor and the
window. Each entry point checks its arguments, turns texts into rows (``hubembed._pipeline.run.text_rows``),
streams them through the engine's backend and pools, combines and finishes in ``hubembed._pipeline``.

>>> enc = hubembed.load("minilm")                       # doctest: +SKIP
>>> enc.embed(["a sentence", "another one"]).shape      # doctest: +SKIP
(2, 384)
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from hubembed import _export, garden
from hubembed._engines import Engine, int8_refusal
from hubembed._hub.preprocess import Preprocessing
from hubembed._hub.signature import Signature
from hubembed._pipeline import batching, tfdata, tokens
from hubembed._pipeline import layers as layer_spec
from hubembed._pipeline import pooling as pooling_mod
from hubembed._pipeline import prompts as prompts_mod
from hubembed._pipeline.backends import Backend, HubBackend
from hubembed._pipeline.batching import BATCH_SIZE, MAX_TOKENS
from hubembed._pipeline.info import ExtractionInfo
from hubembed._pipeline.layers import LayerSpec
from hubembed._pipeline.outputs import EncoderOutputs, Internals, InternalsBuffer, pad, stack_pooled
from hubembed._pipeline.run import Packing, pool_text, text_rows, text_tokens
from hubembed._pipeline.spec import EmbedSpec, LayerPlan
from hubembed._pipeline.texts import check_texts
from hubembed._pipeline.tokens import TokenEmbeddings, WordEmbeddings
from hubembed._tokenlevel import TokenLevel
from hubembed._version import __version__
from hubembed.errors import InputError

if TYPE_CHECKING:
    from hubembed._load import LoadOptions

__all__ = ["Encoder", "EncoderOutputs", "Internals", "TokenEmbeddings", "WordEmbeddings", "ExtractionInfo"]


class Encoder(TokenLevel):
    """A loaded Hub encoder with its paired preprocessor.

    >>> enc = hubembed.load("minilm")                                    # doctest: +SKIP
    >>> enc.embed(["a sentence"], layers="-4:", combine="mean", pooling="mean").shape   # doctest: +SKIP
    (1, 384)
    """

    def __init__(
        self, engine: Engine, preprocessor: Preprocessing, seq_length: int, *, options: Optional[LoadOptions] = None
    ):
        self.engine = engine
        self.handle: str = engine.handle
        self.signature: Signature = engine.signature
        self.preprocessor = preprocessor
        self.seq_length = seq_length
        self.options = options  # how it was loaded (``hubembed.LoadOptions``), when ``load`` made it
        self._lazy = threading.RLock()  # the word tokenizer is built once, even by racing threads
        self._word_tokenizer: Optional[tokens.WordTokenizer] = None

    # -- what the engine holds, read-only ----------------------------------------------------------------------------
    @property
    def obj(self) -> Any:
        """The restored float32 model (None once a quantized model replaced it)."""
        return self.engine.obj

    @property
    def hub(self) -> Optional[HubBackend]:
        """The Hub model's backend (None once a quantized model replaced it)."""
        return self.engine.hub

    @property
    def backend(self) -> str:
        """ "auto" | "hub" | "garden", as loaded."""
        return self.engine.backend

    @property
    def quantize(self) -> Optional[str]:
        """None (float32), "int8" or "bf16": the compute of every call."""
        return self.engine.quantize

    @property
    def entry(self) -> Any:
        """The registry entry of the model, or None."""
        return self.engine.entry

    def __repr__(self) -> str:
        s = self.signature
        return (
            f"Encoder({self.handle!r}, format={s.format}, layers={s.num_layers}, hidden={s.hidden_size}, "
            f"preprocessor={self.preprocessor.source!r}"
            f"{'' if self.quantize is None else f', quantize={self.quantize!r}'})"
        )

    # -- shared steps ------------------------------------------------------
    def _rows(
        self,
        texts: Sequence,
        *,
        long: str,
        stride: Optional[int],
        word_ids: Optional[List[Any]] = None,
        prompt: Optional[str] = None,
    ) -> Tuple[List[batching.Row], ExtractionInfo]:
        return text_rows(
            self.preprocessor, self.seq_length, texts, long=long, stride=stride, word_ids=word_ids, prompt=prompt
        )

    @property
    def prompts(self) -> Dict[str, str]:
        """The model's named prompts (``prompt_name=``, ``embed_queries``): its registry entry's, and those given to
        ``load(..., prompts=)``, which win; {} for none."""
        defined = getattr(self.entry, "prompts", None)
        return prompts_mod.named(defined, self.options.prompts if self.options is not None else None)

    def prompt_text(self, spec: EmbedSpec) -> Optional[str]:
        """The text ``spec`` puts before each text (its prompt, or this model's prompt it names), or None.

        Raises:
            InputError: a ``prompt_name`` this model has no prompt for.
        """
        return spec.prompt_text(self.prompts, self.handle)

    def plan(self, spec: EmbedSpec) -> LayerPlan:
        """``spec`` resolved against this encoder: its layers, and the backend that gives them.

        Raises:
            InputError: as ``EmbedSpec.plan``; or what the int8 model does not compute.
        """
        return self.engine.plan(spec)

    @property
    def weights_sha256(self) -> str:
        """The content fingerprint of the weights (``hubembed._hub.fingerprint.weights_fingerprint``), computed once."""
        return self.engine.weights_sha256

    def garden(self) -> Any:
        """The Model Garden rebuild of this encoder (``hubembed.garden.GardenEncoder``), built once and
        checked against the Hub model on a probe batch."""
        return self.engine.garden()

    def backend_for(self, plan: Optional[LayerPlan]) -> Backend:
        """The backend that encodes packed batches for ``plan`` (``Engine.backend_for``)."""
        return self.engine.backend_for(plan)

    def _stream(
        self,
        rows: List[batching.Row],
        info: ExtractionInfo,
        plan: LayerPlan,
        batch_size: int,
        max_tokens: Optional[int],
        pool: Optional[Tuple[Any, ...]] = None,
    ) -> Iterator[Tuple[int, Any]]:
        packing = Packing(self.preprocessor.special, self.seq_length, batch_size, max_tokens)
        return text_tokens(self.backend_for(plan), rows, info.truncated, plan, packing, pool=pool)

    def context(self) -> dict:
        """What besides the spec decides the numbers: the model, its format, preprocessor and sequence length."""
        context = {
            "model": self.handle,
            "format": self.signature.format,
            "preprocessor": self.preprocessor.source,
            "seq_length": self.seq_length,
            "hubembed": __version__,
        }
        if self.quantize is not None:  # float32 records stay as they were (resumed extractions, cache keys)
            context["quantize"] = self.quantize
        if self.prompts:  # what prompt_name resolves against (a spec record keeps it only when it names a prompt)
            context["prompts"] = self.prompts
        return context

    def provenance(self, **kwargs: Any) -> dict:
        """What produced a result: ``context()`` and the extraction arguments ``kwargs``."""
        return {**self.context(), **kwargs}

    def check_spec_source(self, spec: EmbedSpec) -> None:
        """A spec read from an extraction (``open_extraction(out).spec``) embeds only with the same weights and
        sequence length (and its transform): anything else would give vectors that do not match the stored ones.

        Raises:
            InputError: the weights fingerprint, the sequence length or the transform differ from the extraction's.
        """
        _check_spec_source(self, spec)

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
        return _encode(self, texts, batch_size, max_tokens, long, stride, bool(embeddings))

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
        chosen = [i for i in layer_spec.select(layers, self.signature.num_layers) if i != layer_spec.EMBEDDINGS]
        if self.quantize == "int8":
            raise InputError(int8_refusal(["internals (attention, sub-layers: the float32 rebuild's)"]))
        if self.engine.backend == "hub":
            raise InputError(
                "internals (the embedding output, attention, sub-layers) come from the Model Garden rebuild, which "
                "backend='hub' rules out (the Hub model exports none of them): load with backend='auto' or 'garden'"
            )
        return _internals(self, texts, chosen, attention, sublayers, batch_size)

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
        prompt: Optional[str] = None,
        prompt_name: Optional[str] = None,
        include_prompt: bool = True,
    ):
        """One vector per text. Results do not depend on batch_size, max_tokens or neighbours.

        Args:
            texts: strings, or (a, b) pairs; one string gives one vector ([D]).
            layers, combine, weights, gamma, pooling, special_tokens, normalize, attention_layer, long, stride,
                transform: the ``EmbedSpec`` (see there); pooling="attention" goes through the Model Garden
                fallback, transform (a fitted ``Whitening`` or its path) applies after pooling, before normalize.
            truncate_dim, precision, ranges: keep the first n dimensions (before normalize), then quantize
                (int8/uint8 with calibration ``ranges``, binary/ubinary), as sentence-transformers' ``encode``.
            prompt, prompt_name, include_prompt: a string put before each text, or one of the model's named prompts
                (``enc.prompts``); include_prompt=False leaves it out of the pooling (``hubembed._pipeline.prompts``).
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
            prompt=prompt,
            prompt_name=prompt_name,
            include_prompt=include_prompt,
        )
        if isinstance(texts, (str, bytes)):  # one text -> one vector, as sentence-transformers' encode(str)
            out = self.embed([texts], spec=spec, batch_size=batch_size, max_tokens=max_tokens, return_info=return_info)
            return (out[0][0], out[1]) if return_info else out[0]
        self.check_spec_source(spec)
        out, info = _embed(self, check_texts(texts), spec, batch_size, max_tokens)
        return (out, info) if return_info else out

    def embed_queries(self, texts: Sequence, **kw: Any):
        """``embed`` with the model's "query" prompt (as sentence-transformers' ``encode_query``); a prompt given
        (``prompt=``, ``prompt_name=``, a spec's) wins; a model without one embeds the texts as they are."""
        return self.embed(texts, **prompts_mod.for_role(prompts_mod.QUERY, self.prompts, kw))

    def embed_documents(self, texts: Sequence, **kw: Any):
        """``embed`` with the model's first of the "document", "passage", "corpus" prompts (as sentence-transformers'
        ``encode_document``); a prompt given wins; a model without one embeds the texts as they are."""
        return self.embed(texts, **prompts_mod.for_role("document", self.prompts, kw))

    def embed_dataset(
        self, dataset: Any, *, batch_size: int = BATCH_SIZE, max_tokens: Optional[int] = MAX_TOKENS, spec=None, **kw
    ) -> Any:
        """``embed`` inside tf.data: a ``tf.data.Dataset`` of strings in, of their vectors (``embed``'s) out, in order;
        tokenized by parallel maps on the input threads, encoded batch by batch (``hubembed._pipeline.tfdata``).

        ``dataset``: strings ``[]`` (read ``batch_size`` at a time) or batches ``[B]``, or tuples whose first item is
        one and the rest passes through (``(text, label)`` -> ``(vector, label)``); not pairs. ``batch_size``,
        ``max_tokens``, ``spec`` or its keywords ``**kw``: as ``embed``. Raises ``InputError`` before any work: not a
        dataset of strings, bad batching, or what ``embed`` refuses of the spec.
        """
        tfdata.text_spec(dataset)
        tfdata.check_batching(batch_size, max_tokens, self.seq_length)
        spec = EmbedSpec.make(spec, **kw)
        self.check_spec_source(spec)
        plan, transform, hidden = self.plan(spec), spec.transform_object(), self.signature.hidden_size
        spec.shape(plan, hidden, transform)  # transform and truncate_dim fit: checked before any text is read
        packing = Packing(self.preprocessor.special, self.seq_length, int(batch_size), max_tokens)
        prompt = self.prompt_text(spec)
        prompt_ids = None if prompt is None else tokens.token_ids(self.preprocessor, [prompt])[0]
        embedder = tfdata.IdsEmbedder(self.backend_for(plan), plan, spec, transform, packing, hidden, prompt_ids)
        return tfdata.embed_dataset(dataset, self.preprocessor.module.tokenize, embedder)

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
        return _features(self, check_texts(texts), spec, list(poolings), batch_size, max_tokens)

    def export(
        self,
        out: str,
        spec: Optional[EmbedSpec] = None,
        *,
        format: str = "savedmodel",
        quantize: Optional[str] = None,
        overwrite: bool = False,
        **spec_keywords,
    ) -> str:
        """Write a self-contained model that embeds as ``embed(texts, spec=spec)`` does, without hubembed.

        ``format="savedmodel"`` (default): one TensorFlow SavedModel, strings [B] in, float32 [B, D] out,
        tokenizing, the encoder, the layers, pooling, transform and normalisation inside; texts longer than the
        window truncated (``hubembed.json`` beside it says so): ``hubembed._export.export_encoder``.
        ``format="litert"``: ``OUT/model.tflite``, one LiteRT file for MediaPipe's ``TextEmbedder`` and plain LiteRT
        (int32 ids/mask/segment_ids [1, S] in, [1, D] out, the tokenizer in its metadata), float32 or
        ``quantize="int8"``: ``hubembed._export.export_litert``. Returns ``out``, absolute.
        """
        spec = EmbedSpec.make(spec, **spec_keywords)
        if format not in EXPORT_FORMATS:
            raise InputError(f"format={format!r}; valid: {', '.join(map(repr, EXPORT_FORMATS))}")
        if format == "litert":
            return _export.export_litert(self, out, spec, quantize=quantize, overwrite=overwrite)
        if quantize is not None:
            raise InputError(
                f"quantize={quantize!r} with format='savedmodel': a SavedModel export is float32; "
                f"format='litert' exports int8"
            )
        return _export.export_encoder(self, out, spec, overwrite)


EXPORT_FORMATS = ("savedmodel", "litert")


def _encode(
    enc: Encoder, texts: list, batch_size: int, max_tokens: Optional[int], long: str, stride: Optional[int], emb: bool
) -> EncoderOutputs:
    """``Encoder.encode``'s work: every layer the model gives, per text, padded to the longest."""
    plan, exported, source = enc.engine.all_layers(emb)
    rows, info = enc._rows(texts, long=long, stride=stride)
    results: List[Any] = [None] * len(texts)
    for t, tt in enc._stream(rows, info, plan, batch_size, max_tokens):
        results[t] = tt
    layers, ids, mask, types = pad(results, len(plan.indices), enc.signature.hidden_size)
    pooled = stack_pooled(results, plan, enc.signature.hidden_size)
    info.spec = enc.provenance(layers="all", long=long, stride=stride, backend=source)
    info.report()
    embeddings = None
    if layer_spec.EMBEDDINGS in plan.indices:  # the rebuild's: first
        embeddings, layers = layers[0], layers[1:]
    return EncoderOutputs(pooled, layers[-1], layers if exported else None, mask, ids, types, info, embeddings)


def _internals(
    enc: Encoder, texts: list, chosen: List[int], attention: bool, sublayers: bool, batch_size: int
) -> Internals:
    """``Encoder.internals``' work: the rebuild (bf16's when loaded so) block by block, up to the highest chosen."""
    g = enc.engine.quantized if enc.quantize == "bf16" else enc.garden()
    rows, info = enc._rows(texts, long="truncate", stride=None)
    N, S = len(texts), max((r.length for r in rows), default=2)
    names = garden.SUBLAYERS if sublayers else None
    acc = InternalsBuffer(N, S, enc.signature.hidden_size, chosen, g.config.num_heads, attention, names)
    upto = max(chosen, default=-1)
    for idx in batching.plan(rows, batch_size=batch_size, max_tokens=None, seq_length=enc.seq_length):
        packed = batching.pack([rows[i] for i in idx], enc.preprocessor.special, enc.seq_length)
        out = g.forward(*packed[:3], upto=upto, attention=attention, sublayers=sublayers)
        acc.add([rows[i].text for i in idx], packed, out)
    info.spec = enc.provenance(layers=chosen, attention=attention, sublayers=sublayers, backend="garden")
    info.report()
    return acc.result(info)


def _embed(
    enc: Encoder, texts: list, spec: EmbedSpec, batch_size: int, max_tokens: Optional[int]
) -> Tuple[np.ndarray, ExtractionInfo]:
    """``Encoder.embed``'s work: plan, rows, stream (long texts pooled as their windows come), pool, finish."""
    prompt = enc.prompt_text(spec)  # a name the model does not have: before any work
    transform = spec.transform_object()
    plan = enc.plan(spec)
    shape = spec.pooled_shape(plan, enc.signature.hidden_size)
    spec.shape(plan, enc.signature.hidden_size, transform)  # transform and truncate_dim fit: checked before work
    rows, info = enc._rows(texts, long=spec.long, stride=spec.stride, prompt=prompt)
    out = np.zeros((len(texts),) + shape, np.float32)
    how = (spec.pooling, spec.special_tokens, spec.include_prompt)
    for t, tt in enc._stream(rows, info, plan, batch_size, max_tokens, pool=how):
        out[t] = pool_text(tt, plan, *how)
    out = spec.finish(out, transform)  # transform, truncate_dim, normalize, precision
    info.spec = spec.record(plan, transform, **enc.context())
    info.report()
    return out, info


def _features(
    enc: Encoder, texts: list, spec: EmbedSpec, poolings: List[str], batch_size: int, max_tokens: Optional[int]
) -> Dict[str, np.ndarray]:
    """``Encoder.features``' work: one pass, every (layer, pooling) vector."""
    plan = enc.plan(spec)
    rows, info = enc._rows(texts, long=spec.long, stride=spec.stride)
    H, k = enc.signature.hidden_size, len(plan.indices)
    out = {p: np.zeros((len(texts), k, pooling_mod.width(p, H)), np.float32) for p in poolings}
    for t, tt in enc._stream(rows, info, plan, batch_size, max_tokens):
        for p in poolings:
            out[p][t] = pool_text(tt, plan, p, spec.special_tokens).reshape(k, -1)
    info.report()
    return out


def _check_spec_source(enc: Encoder, spec: EmbedSpec) -> None:
    src = spec.source
    if not src:
        return
    where = src.get("out", "the extraction")
    want = src.get("weights_sha256")
    if want and want != enc.weights_sha256:
        raise InputError(
            f"{enc.handle}: weights fingerprint {enc.weights_sha256[:16]}... differs from the one "
            f"{where} was embedded with ({want[:16]}..., model {src.get('model')!r}): its vectors "
            f"would not be comparable; load that model"
        )
    if src.get("seq_length") and src["seq_length"] != enc.seq_length:
        raise InputError(
            f"{enc.handle}: seq_length {enc.seq_length}, but {where} was embedded with "
            f"seq_length {src['seq_length']}: load(..., seq_length={src['seq_length']})"
        )
    spec.transform_object()  # a recorded transform must be given back, and be the same one


FEATURE_POOLINGS = ("cls", "mean", "max", "mean_max", "mean_sqrt_len", "weightedmean")


def __getattr__(name: str) -> Any:
    """``hubembed.encoder.load`` / ``inspect`` / ``LoadOptions``, where they lived before ``hubembed._load`` (which
    imports this module, so they are looked up when asked for, not imported at the top)."""
    if name in ("load", "inspect", "LoadOptions"):
        from hubembed import _load

        return getattr(_load, name)
    raise AttributeError(f"module 'hubembed.encoder' has no attribute {name!r}")
