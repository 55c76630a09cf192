"""``EmbedSpec``: everything that decides the numbers of an embedding, validated once, in one place.

A spec is a frozen value: which layers, how they combine, how tokens pool, whether [CLS]/[SEP] count,
normalisation, the attention block (pooling="attention"), what happens to long texts, and a fitted
transform. Batch size and token budget are not part of it (results do not depend on them). The
keyword API (``enc.embed(texts, layers=..., pooling=...)``) builds one; corpus extraction, Beam,
the Keras layer, the CLI, the feature-cache key and the manifest all use the same object.

Two dictionaries describe a spec:

* ``spec.to_dict()``: the spec as given (``layers="-4:"``), JSON-able; ``EmbedSpec.from_dict`` inverts it;
* ``spec.record(plan, context)``: the spec resolved against one encoder (layer indices, backend,
  sequence length, preprocessor), as ``info.spec`` and an extraction's manifest store it.
  ``EmbedSpec.from_dict`` reads that form too (``open_extraction(out).spec``).

Validation that needs no model happens when the spec is made; what depends on the encoder (how many
layers it has, what it exports) happens in ``spec.plan(signature)``, which resolves the layers and
chooses the backend (the Hub model, or the Model Garden rebuild for what the Hub model does not export).
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from hubembed._pipeline import layers as layer_spec
from hubembed._pipeline import pooling as pooling_mod
from hubembed._pipeline import prompts as prompts_mod
from hubembed._pipeline import quantize
from hubembed._pipeline.batching import LONG_MODES
from hubembed._pipeline.transform import as_transform
from hubembed.errors import InputError

BACKENDS = ("auto", "hub", "garden")
QUANTIZE = ("int8", "bf16")  # load(..., quantize=): the compute besides float32 (None)
FIELDS = (
    "layers",
    "combine",
    "weights",
    "gamma",
    "pooling",
    "special_tokens",
    "normalize",
    "attention_layer",
    "long",
    "stride",
    "transform",
    "truncate_dim",
    "precision",
    "ranges",
    "prompt",
    "prompt_name",
    "include_prompt",
)
# What token/word vectors depend on (a prompt is their context).
TOKEN_FIELDS = ("layers", "combine", "weights", "gamma", "long", "stride", "prompt", "prompt_name")
# Keys of a resolved record (``record``) that describe the encoder or the job, not the spec.
CONTEXT_KEYS = (
    "format",
    "preprocessor",
    "seq_length",
    "backend",
    "model",
    "hubembed",
    "level",
    "dtype",
    "dim",
    "shard_size",
    "subword",
    "prompts",
)


def _frozen(value):
    """Lists (of layer indices) -> tuples, so a spec is hashable and compares by value."""
    if isinstance(value, (list, tuple, range)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _plain(value):
    """Tuples -> lists, for JSON."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class EmbedSpec:
    """What decides an embedding's numbers (not how it is batched).

    Args:
        layers: the blocks to use: ``-1``, ``3``, ``[0, 4, -1]``, ``"-4:"``, ``"2:5"``, ``"all"``,
            ``"embeddings"`` (see ``hubembed._pipeline.layers``).
        combine: how several layers become one: none | concat | mean | sum | weighted | scalar_mix.
        weights: one per selected layer, for combine="weighted" or "scalar_mix".
        gamma: the scale of combine="scalar_mix".
        pooling: cls | pooled | mean | max | mean_max | mean_sqrt_len | first_last_avg | attention.
        special_tokens: whether [CLS]/[SEP] count in mean/max/....
        normalize: L2-normalise the vectors (after ``transform``).
        attention_layer: the block whose attention weights tokens (pooling="attention"; default: the
            highest selected layer).
        long: "window" (overlapping windows, stitched) or "truncate", for texts longer than a window.
        stride: the overlap of windows in tokens (default: half a window).
        transform: a fitted ``hubembed.analysis.Whitening`` or the path of a saved one, applied after pooling.
        truncate_dim: keep the first n dimensions (Matryoshka-style models), after ``transform``, before
            ``normalize``, as sentence-transformers' ``truncate_dim``.
        precision: float32 | int8 | uint8 | binary | ubinary: the vectors quantized last, as
            sentence-transformers' ``quantize_embeddings`` (``hubembed._pipeline.quantize``).
        ranges: int8/uint8's calibration ranges: a ``quantize.Ranges`` (``Ranges.fit(calibration vectors)``),
            its saved ``.npz`` path or a [2, D] array.
        prompt: a string put before each text ("query: "), as sentence-transformers' ``encode(prompt=)``; windows,
            pairs, truncation and token outputs: ``hubembed._pipeline.prompts``. An empty prompt is none.
        prompt_name: one of the model's named prompts instead ("query", "document"...: its registry entry's, or
            ``load(..., prompts=)``), resolved when the spec meets the encoder.
        include_prompt: False leaves [CLS] and the prompt's pieces out of mean/max/... pooling, as
            sentence-transformers' ``Pooling(include_prompt=False)``.

    Raises:
        InputError: an argument that is not valid whatever the encoder (the message names it and what is).
    """

    layers: Any = -1
    combine: str = "mean"
    weights: Optional[Tuple[float, ...]] = None
    gamma: float = 1.0
    pooling: str = "mean"
    special_tokens: bool = True
    normalize: bool = False
    attention_layer: Optional[int] = None
    long: str = "window"
    stride: Optional[int] = None
    transform: Any = field(default=None)
    truncate_dim: Optional[int] = None
    precision: str = "float32"
    ranges: Any = field(default=None)
    prompt: Optional[str] = None
    prompt_name: Optional[str] = None
    include_prompt: bool = True
    # Where this spec was read from (an extraction or export: its folder, model, weights fingerprint, sequence
    # length, transform), or None; not part of the spec's value (equality, hash, dictionaries).
    source: Optional[dict] = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "layers", _frozen(self.layers))
        if self.weights is not None:
            set_(self, "weights", tuple(float(w) for w in np.asarray(self.weights, dtype=np.float64).ravel()))
        set_(self, "attention_layer", _frozen(self.attention_layer))
        if self.prompt == "":  # no prompt, as sentence-transformers
            set_(self, "prompt", None)
        self._check()
        set_(self, "gamma", float(self.gamma))

    def _check(self) -> None:
        pooling_mod.check(self.pooling)
        # The layer count is known without the model for most specs ("-4:", [0, 3]): the weights are checked
        # against it here, before any model loads.
        layer_spec.check_syntax(self.layers)  # its form now; its range when it meets the model
        layer_spec.check_combine(self.combine, self.weights, layer_spec.count(self.layers))
        if self.pooling == "first_last_avg" and (self.layers not in (-1, None) or self.combine not in ("mean", None)):
            raise InputError(
                "pooling='first_last_avg' chooses its layers itself (the first and last blocks, "
                "averaged); leave layers and combine at their defaults"
            )
        if self.pooling == "pooled" and (self.layers not in (-1, None) or self.combine not in ("mean", None)):
            raise InputError(
                "pooling='pooled' is the model's pooled_output, made from the last layer: layers and combine do "
                "not apply (leave them at their defaults, or pool the chosen layers with 'cls' or 'mean')"
            )
        if self.attention_layer is not None and self.pooling != "attention":
            raise InputError("attention_layer is used by pooling='attention' only")
        if self.long not in LONG_MODES:
            raise InputError(f"long={self.long!r}; valid: {', '.join(LONG_MODES)}")
        if self.stride is not None and (
            isinstance(self.stride, bool) or not isinstance(self.stride, numbers.Integral) or self.stride < 0
        ):
            raise InputError(f"stride={self.stride!r}: the overlap of windows, a number of tokens >= 0")
        for name in ("special_tokens", "normalize"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise InputError(f"{name}={getattr(self, name)!r}; valid: True or False")
        if not isinstance(self.gamma, numbers.Real) or isinstance(self.gamma, bool):
            raise InputError(f"gamma={self.gamma!r}; valid: a number")
        self._check_output()
        prompts_mod.check(self.prompt, self.prompt_name, self.include_prompt, self.pooling)

    def _check_output(self) -> None:
        """truncate_dim, precision and ranges: what happens to a vector after pooling and transform."""
        if self.truncate_dim is not None and (
            isinstance(self.truncate_dim, bool)
            or not isinstance(self.truncate_dim, numbers.Integral)
            or self.truncate_dim < 1
        ):
            raise InputError(f"truncate_dim={self.truncate_dim!r}: the dimensions to keep, an integer >= 1")
        quantize.check(self.precision)
        if self.precision in quantize.CALIBRATED and self.ranges is None:
            raise InputError(
                f"precision={self.precision!r} needs ranges=: the calibration ranges of a set of vectors "
                f"(hubembed.quantize.Ranges.fit(enc.embed(calibration texts)), or its saved .npz), shared by a "
                f"corpus and its queries"
            )
        if self.ranges is not None and self.precision not in quantize.CALIBRATED:
            raise InputError(f"ranges= only applies to precision='int8' or 'uint8', not {self.precision!r}")

    # -- making and copying ------------------------------------------------------
    @classmethod
    def make(cls, spec: Optional["EmbedSpec"] = None, **keywords) -> "EmbedSpec":
        """The spec of a call that takes either ``spec=`` or the spec's keywords (left at their defaults).

        Raises:
            InputError: both a spec and a keyword that differs from its default, or a keyword that is not a field.
        """
        unknown = [k for k in keywords if k not in FIELDS]
        if unknown:
            raise InputError(f"unknown argument(s) {', '.join(unknown)}; the spec's are {', '.join(FIELDS)}")
        if spec is None:
            return cls(**keywords)
        if not isinstance(spec, EmbedSpec):
            raise InputError(f"spec={spec!r}; valid: a hubembed.EmbedSpec (or None and the keywords)")
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        given = [k for k, v in keywords.items() if _frozen(v) != defaults[k]]
        if given:
            raise InputError(
                f"pass either spec= or its arguments, not both ({', '.join(given)} given with spec=; "
                f"use spec.replace({given[0]}=...))"
            )
        return spec

    def replace(self, **changes) -> "EmbedSpec":
        """A copy with ``changes`` (validated again); keeps what the spec was read from (``source``)."""
        return dataclasses.replace(self, **changes)

    def with_source(self, source: Optional[dict]) -> "EmbedSpec":
        """This spec, recorded as read from ``source`` (an extraction's or export's record)."""
        return dataclasses.replace(self, source=source)

    def for_tokens(self) -> "EmbedSpec":
        """The part of the spec token and word vectors depend on (no pooling, transform or normalisation)."""
        return EmbedSpec(**{k: getattr(self, k) for k in TOKEN_FIELDS})

    # -- dictionaries --------------------------------------------------------------
    def to_dict(self) -> dict:
        """The spec as given, JSON-able (a transform as its path, or its description if it is in memory)."""
        d = {k: _plain(getattr(self, k)) for k in FIELDS}
        d["weights"] = list(self.weights) if self.weights is not None else None
        if self.transform is not None and not isinstance(self.transform, (str, dict)):
            d["transform"] = self.transform.to_dict() if hasattr(self.transform, "to_dict") else str(self.transform)
        if self.ranges is not None and not isinstance(self.ranges, (str, dict)):
            d["ranges"] = {"sha256": quantize.Ranges.of(self.ranges).sha256}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EmbedSpec":
        """Inverse of ``to_dict``; also reads a resolved record (``record``, an extraction's manifest spec).

        Raises:
            InputError: a key that is neither a spec field nor a known record key.
        """
        unknown = [k for k in d if k not in FIELDS and k not in CONTEXT_KEYS]
        if unknown:
            raise InputError(f"not EmbedSpec fields: {', '.join(map(repr, unknown))} (valid: {', '.join(FIELDS)})")
        kw = {k: d[k] for k in FIELDS if k in d}
        if kw.get("prompt") is not None:  # a record holds a named prompt's text too: the text is what was used
            kw.pop("prompt_name", None)
        if kw.get("pooling") in ("first_last_avg", "pooled"):  # a record holds the layers they imply
            kw.pop("layers", None), kw.pop("combine", None)
        return cls(**kw)

    def record(self, plan: "LayerPlan", transform=None, **context) -> dict:
        """The spec resolved for one encoder (``context``: format, preprocessor, seq_length..., and its named
        ``prompts``), as ``info.spec`` and the manifest store it (``transform``: the loaded transform, described by its
        sha256; the prompt as its text, ``prompts.record``).

        Raises:
            InputError: a ``prompt_name`` the encoder has no prompt for.
        """
        named = context.pop("prompts", None)
        d = {
            **context,
            **plan.to_dict(),
            "pooling": self.pooling,
            "special_tokens": self.special_tokens,
            "normalize": self.normalize,
            "long": self.long,
            "stride": self.stride,
        }
        if transform is not None:
            d["transform"] = transform.to_dict()
        if self.truncate_dim is not None:  # recorded only when used: older records stay as they were
            d["truncate_dim"] = self.truncate_dim
        if self.precision != "float32":
            d["precision"] = self.precision
        if self.ranges is not None:
            d["ranges"] = {"sha256": self.ranges_object().sha256}
        d.update(prompts_mod.record(self.prompt, self.prompt_name, self.include_prompt, named))
        return d

    def prompt_text(self, prompts: Optional[dict] = None, model: str = "") -> Optional[str]:
        """The text put before each text: ``prompt``, or the encoder's prompt named ``prompt_name`` (``prompts``: its
        named prompts); None for none.

        Raises:
            InputError: a name the encoder has no prompt for.
        """
        return prompts_mod.resolve(self.prompt, self.prompt_name, prompts or {}, model)

    def ranges_object(self):
        """The int8/uint8 calibration ranges (loaded if the spec holds their path), or None."""
        if isinstance(self.ranges, dict):
            raise InputError(
                f"this spec quantizes with calibration ranges (sha256 {str(self.ranges.get('sha256'))[:16]}...) "
                f"that a record does not hold: give them back, spec.replace(ranges=<the Ranges or its .npz path>)"
            )
        if self.ranges is None:
            return None
        r = quantize.Ranges.of(self.ranges)
        recorded = ((self.source or {}).get("ranges") or {}).get("sha256")
        if recorded and recorded != r.sha256:
            raise InputError(
                f"ranges (sha256 {r.sha256[:16]}...) are not the ones the extraction was quantized with "
                f"({recorded[:16]}...)"
            )
        return r

    def finish(self, vectors, transform=None):
        """Pooled vectors [..., D] -> what the spec returns: transform, truncate_dim, normalize, precision."""
        if transform is not None:
            vectors = transform(vectors)
        if self.truncate_dim is not None:
            vectors = vectors[..., : self.truncate_dim]
        if self.normalize:
            vectors = pooling_mod.l2_normalize(vectors)
        return quantize.quantize(vectors, self.precision, self.ranges_object())

    def token_record(self, plan: "LayerPlan", **context) -> dict:
        """``record`` for token and word vectors (what they depend on; ``stride`` only when it is set; the prompt,
        their context, as ``record``)."""
        named = context.pop("prompts", None)
        d = {**context, **plan.to_dict(), "long": self.long}
        if self.stride is not None:
            d["stride"] = self.stride
        d.update(prompts_mod.record(self.prompt, self.prompt_name, True, named))
        return d

    def transform_object(self):
        """The fitted transform (loaded if the spec holds its path), or None.

        Raises:
            InputError: the spec only records a transform (read from a manifest: its description, not its
                parameters), or the transform given back is not the one recorded.
        """
        if self.transform is None:
            return None
        recorded = (self.source or {}).get("transform")
        if isinstance(self.transform, dict):
            recorded = self.transform
            raise InputError(
                f"this spec applies a {recorded.get('method')} transform (sha256 "
                f"{str(recorded.get('sha256'))[:16]}...) whose parameters a manifest does not hold: "
                f"give it back, spec.replace(transform=<the Whitening or its .npz path>)"
            )
        t = as_transform(self.transform)
        assert t is not None  # self.transform is set (checked above)
        if recorded and recorded.get("sha256") != t.to_dict()["sha256"]:
            raise InputError(
                f"transform {self.transform!r} is not the one the extraction applied (sha256 "
                f"{t.to_dict()['sha256'][:16]}..., recorded {str(recorded.get('sha256'))[:16]}...)"
            )
        return t

    # -- against an encoder ------------------------------------------------------------
    def plan(
        self, signature: Any, backend: str = "auto", *, need_pooled: bool = False, force_garden: bool = False
    ) -> "LayerPlan":
        """Resolve the layers against what the encoder exports, and choose the backend.

        Args:
            signature: the encoder's ``hubembed.Signature``.
            backend: "auto" (the Hub model when it exports what is asked, the Model Garden rebuild otherwise),
                "hub" (never rebuild) or "garden" (always: early exit).
            need_pooled: the caller needs the model's pooled output whatever the pooling (the Keras layer's
                ``output="pooled"``): the rebuild then runs every block, as the pooler reads the last one.
            force_garden: run the Model Garden rebuild whatever ``backend`` says (a caller that trains the
                encoder's variables through it: a TF1 Hub module fine-tuned by the Keras layer).

        Raises:
            InputError: layers out of range, weights that do not match them, or what backend="hub" cannot give.
        """
        given = (self.layers, self.combine, self.weights, self.gamma, self.pooling)
        return layer_plan(
            signature,
            *given,
            backend=backend,
            attention_layer=self.attention_layer,
            need_pooled=need_pooled,
            force_garden=force_garden,
        )

    def shape(self, plan: "LayerPlan", hidden: int, transform=None) -> Tuple[int, ...]:
        """The shape of one text's vector, from the spec and the signature (never by running the model)."""
        shape = self.pooled_shape(plan, hidden)
        if transform is not None:
            transform.check_width(shape[-1])
            shape = shape[:-1] + (transform.out_dim,)
        if self.truncate_dim is not None:
            if self.truncate_dim > shape[-1]:
                raise InputError(f"truncate_dim={self.truncate_dim}: the vectors have only {shape[-1]} dimensions")
            shape = shape[:-1] + (self.truncate_dim,)
        return shape[:-1] + (quantize.width(self.precision, shape[-1]),)

    def pooled_shape(self, plan: "LayerPlan", hidden: int) -> Tuple[int, ...]:
        """The shape of one text's vector as pooled, before ``finish`` (transform, truncation, quantization)."""
        if self.pooling == "pooled":  # the model's pooled_output: one H-wide vector whatever the layers
            shape: Tuple[int, ...] = (hidden,)
        else:
            width = pooling_mod.width(self.pooling, plan.combine.width(hidden, len(plan.indices)))
            keep_apart = self.combine == "none" and len(plan.indices) > 1
            shape = (len(plan.indices), width) if keep_apart else (width,)
        return shape


@dataclass(frozen=True)
class LayerPlan:
    """Which layers to fetch, how to combine them, and which backend gives them (a value: ask ``EmbedSpec.plan``
    for another plan rather than changing one).

    indices: the layers, in order (a list: it compares equal to the list a caller gave; a copy is kept);
    garden: run the Model Garden rebuild (``hubembed.garden``) instead of the Hub model;
    upto: the last block it needs to run (early exit; -1: embeddings only);
    attention_layer: the block whose attention weights tokens (pooling="attention");
    reasons: why the rebuild runs (what the Hub model does not export).
    """

    indices: List[Union[int, str]]
    combine: layer_spec.Combine
    need_pooled: bool = False
    garden: bool = False
    upto: Optional[int] = None
    attention_layer: Optional[int] = None
    reasons: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "indices", list(self.indices))
        object.__setattr__(self, "reasons", tuple(self.reasons))

    @property
    def blocks(self) -> Tuple[int, ...]:
        """The Transformer blocks among the indices (not "embeddings")."""
        return tuple(int(i) for i in self.indices if i != layer_spec.EMBEDDINGS)

    def to_dict(self) -> dict:
        d = {
            "layers": list(self.indices),
            "combine": self.combine.how,
            "weights": list(self.combine.weights) if self.combine.weights else None,
            "gamma": self.combine.gamma,
            "backend": "garden" if self.garden else "hub",
        }
        if self.attention_layer is not None:
            d["attention_layer"] = self.attention_layer
        return d


def _attention_block(pooling: Optional[str], attention_layer: Any, blocks: List[int], L: int) -> Optional[int]:
    if pooling != "attention":
        return None
    att = max(blocks, default=L - 1) if attention_layer is None else layer_spec.select(attention_layer, L)[0]
    if att == layer_spec.EMBEDDINGS or isinstance(attention_layer, (list, tuple)):
        raise InputError(f"attention_layer={attention_layer!r}: one block index (valid: {-L}..{L - 1})")
    return int(att)


def _garden_reasons(
    signature: Any, indices: List[Union[int, str]], blocks: List[int], pooling: Optional[str]
) -> List[str]:
    """What the Hub model does not export, so only the Model Garden rebuild can give it."""
    L = signature.num_layers
    reasons = []
    if layer_spec.EMBEDDINGS in indices:
        reasons.append("the embedding-layer output ('embeddings'), which TF Hub encoders do not export")
    if not signature.has_encoder_outputs and any(i != L - 1 for i in blocks):
        reasons.append(
            f"layers {[i for i in blocks if i != L - 1]}: {signature.handle} does not export "
            f"encoder_outputs (only its last layer, {L - 1})"
        )
    if pooling == "attention":
        reasons.append("attention probabilities (pooling='attention'), which TF Hub encoders do not export")
    return reasons


def layer_plan(
    signature: Any,
    layers: Any,
    combine: str,
    weights: Optional[Sequence[float]],
    gamma: float,
    pooling: Optional[str],
    *,
    backend: str = "auto",
    attention_layer: Any = None,
    need_pooled: bool = False,
    force_garden: bool = False,
) -> LayerPlan:
    """Resolve a layer selection against what the encoder exports, and choose the backend (``EmbedSpec.plan``:
    ``need_pooled`` and ``force_garden`` as there)."""
    if backend not in BACKENDS:
        raise InputError(f"backend={backend!r}; valid: {', '.join(BACKENDS)}")
    L = signature.num_layers
    if pooling == "first_last_avg":
        indices, how = [0, L - 1], "mean"
    else:
        indices, how = layer_spec.select(-1 if layers is None else layers, L), combine
    blocks = [i for i in indices if i != layer_spec.EMBEDDINGS]
    att = _attention_block(pooling, attention_layer, blocks, L)
    reasons = _garden_reasons(signature, indices, blocks, pooling)
    if reasons and backend == "hub":
        raise InputError(
            f"backend='hub' cannot give {'; '.join(reasons)}; backend='auto' or 'garden' uses the "
            f"Model Garden fallback, which rebuilds them from the Hub weights"
        )
    pooled = need_pooled or pooling == "pooled"
    if pooled and not signature.has_pooled_output:
        raise InputError(f"{signature.handle} exports no pooled_output; use pooling='cls' or 'mean'")
    garden = backend == "garden" or force_garden or bool(reasons)
    upto = None
    if garden:  # the pooler reads the last block
        upto = L - 1 if pooled else max(blocks + ([att] if att is not None else []), default=-1)
    return LayerPlan(
        indices,
        layer_spec.Combine.make(how, len(indices), weights, gamma),
        need_pooled=pooled,
        garden=garden,
        upto=upto,
        attention_layer=att,
        reasons=tuple(reasons),
    )
