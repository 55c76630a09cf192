"""The engine room behind ``Encoder``: which backend computes a plan, and the backends themselves.

An ``Engine`` holds what computes: the Hub model (``HubBackend`` over the restored SavedModel), the Model Garden
rebuild (``hubembed.garden``, built on demand, once, for what the Hub model does not export: early exit, the
embedding output, attention), and the quantized backend of ``load(..., quantize=)`` (int8: the encoder converted
once to a LiteRT model, cached by its weights fingerprint; bf16: the rebuild under ``mixed_bfloat16``), after
which the float32 weights are freed. ``Encoder`` asks it for a plan (``plan``), for the backend of a plan
(``backend_for``) and for everything ``encode`` returns (``all_layers``); it never reaches inside.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import threading
from typing import Any, Callable, List, Optional, Set, Tuple

import numpy as np

from hubembed import garden
from hubembed._formats import lite
from hubembed._hub.audit import op_types
from hubembed._hub.fingerprint import weights_fingerprint
from hubembed._hub.signature import Signature
from hubembed._pipeline import layers as layer_spec
from hubembed._pipeline.backends import Backend, HubBackend, LiteBackend
from hubembed._pipeline.spec import BACKENDS, QUANTIZE, EmbedSpec, LayerPlan
from hubembed._util import optional
from hubembed.errors import FormatError, InputError

log = logging.getLogger("hubembed")

PROBE_TEXTS = (
    "A man is playing a guitar on the street.",
    "Stock markets fell sharply on Monday after the announcement of new tariffs.",
    "The quick brown fox jumps over the lazy dog",
    "Is this the right way to the station?",
)
_PER_LOAD = ("preprocessor", "seq_length", "seq_length_from")  # set by each load, not part of the model
MIN_AGREEMENT = 0.98  # mean token cosine of the last layer, int8 vs float32, on PROBE_TEXTS (minilm: 0.998)

# (ids, mask, type ids) of PROBE_TEXTS, packed by the encoder's own preprocessor: made only when a conversion runs.
Probe = Callable[[], Tuple[np.ndarray, np.ndarray, np.ndarray]]


class Engine:
    """What computes for one loaded encoder (see the module's docstring).

    Args:
        handle: the model's handle (for messages and the rebuild's record).
        obj: the restored float32 model (None: a pinned int8 model loaded without it).
        signature: what the model exports (``hubembed._hub.signature.Signature``).
        entry: its registry entry, or None.
        backend: "auto" | "hub" | "garden" (as ``hubembed.load``).
        quantize: None | "int8" | "bf16" (as ``hubembed.load``).
        weights_sha256: the weights fingerprint when already known (else computed once, on first use).
    """

    def __init__(
        self,
        handle: str,
        obj: Any,
        signature: Signature,
        *,
        entry: Any = None,
        backend: str = "auto",
        quantize: Optional[str] = None,
        weights_sha256: Optional[str] = None,
    ):
        if backend not in BACKENDS:
            raise InputError(f"backend={backend!r}; valid: {', '.join(BACKENDS)}")
        check_quantize(quantize)
        self.handle, self.obj, self.signature, self.entry = handle, obj, signature, entry
        self.backend, self.quantize = backend, quantize
        self.hub: Optional[HubBackend] = HubBackend(obj, signature.format) if obj is not None else None
        self._weights_sha256 = weights_sha256
        self._garden: Any = None
        self._garden_reasons: Set[str] = set()
        self._lock = threading.RLock()  # the rebuild is built once, even by racing threads
        self.quantized: Optional[Backend] = None  # the backend of every call when quantize is set

    @property
    def weights_sha256(self) -> str:
        """The content fingerprint of the weights (``hubembed._hub.fingerprint``), computed once."""
        if self._weights_sha256 is None:
            self._weights_sha256 = weights_fingerprint(self.obj)
        return self._weights_sha256

    # -- plans -----------------------------------------------------------------------------------------------------
    def quantized_source(self) -> str:
        """What a quantized mode computes with: "garden" (the rebuild: bf16, TF1 modules, backend="garden") or
        "hub" (the Hub model's own graph)."""
        rebuild = self.quantize == "bf16" or self.signature.format == "tf1_hub" or self.backend == "garden"
        return "garden" if rebuild else "hub"

    def plan(self, spec: EmbedSpec) -> LayerPlan:
        """``spec`` resolved against this encoder: its layers, and the backend that gives them.

        Raises:
            InputError: as ``EmbedSpec.plan``; or what the int8 model does not compute.
        """
        if self.quantize is None:
            return spec.plan(self.signature, self.backend)
        plan = spec.plan(self.signature, "garden" if self.quantized_source() == "garden" else self.backend)
        self.check_quantized(plan)
        return plan

    def all_layers(self, embeddings: bool) -> Tuple[LayerPlan, bool, str]:
        """(every layer ``encode`` returns as a plan, whether the model gives the inner layers, what computes them:
        "hub" or "garden"): the Hub model's exports, the rebuild's (embedding output first), or the quantized
        model's (int8: its layers; bf16: the rebuild's)."""
        if self.quantize == "int8":
            if embeddings:
                raise InputError(int8_refusal(["the embedding output (encode(embeddings=True))"]))
            q, L = self.quantized, self.signature.num_layers
            assert isinstance(q, LiteBackend)
            kept: List[Any] = list(range(L)) if q.num_layers else [L - 1]
            plan = LayerPlan(kept, layer_spec.Combine.make("none", len(kept)), need_pooled=q.has_pooled)
            return plan, q.num_layers > 0, self.quantized_source()
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
        all_layers: List[Any] = list(range(L)) if self.signature.has_encoder_outputs or use_garden else [L - 1]
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

    def check_quantized(self, plan: LayerPlan) -> None:
        """What the int8 model cannot give, refused with the reason (bf16 runs the rebuild: it gives everything).

        Raises:
            InputError: the embedding output, attention pooling, or (converted from the Hub model's graph) layers
                the model does not export.
        """
        if self.quantize != "int8":
            return
        what = []
        if layer_spec.EMBEDDINGS in plan.indices:
            what.append("the embedding output (layer 'embeddings')")
        if plan.attention_layer is not None:
            what.append("pooling='attention' (attention weights)")
        if what:
            raise InputError(int8_refusal(what))
        if plan.garden and self.quantized_source() == "hub":  # layers the Hub model does not export
            hint = " (or load with backend='garden', quantize='int8': the rebuild, quantized, gives every layer)"
            raise InputError(int8_refusal(list(plan.reasons)) + hint)

    # -- backends --------------------------------------------------------------------------------------------------
    def garden(self) -> Any:
        """The Model Garden rebuild (``hubembed.garden.GardenEncoder``), built once and checked against the Hub
        model on a probe batch."""
        if self.obj is None:
            raise InputError(
                f"{self.handle} was loaded with quantize={self.quantize!r}: its float32 weights are not kept, "
                f"so the float32 Model Garden rebuild is not available (load without quantize= for it)"
            )
        with self._lock:
            if self._garden is None:
                garden.require()
                ops = op_types(self.signature.path)
                self._garden = garden.rebuild(
                    self.obj, self.signature, handle=self.handle, entry=self.entry, ops=ops, hub_backend=self.hub
                )
        return self._garden

    def backend_for(self, plan: Optional[LayerPlan]) -> Backend:
        """The backend that encodes packed batches for ``plan``: the Hub model or the rebuild (early exit); the
        quantized model, whatever the plan, when the encoder was loaded with ``quantize=``."""
        if self.quantized is not None:
            return self.quantized
        assert plan is not None and self.hub is not None
        if not plan.garden:
            return self.hub
        g = self.garden()
        new = [r for r in plan.reasons if r not in self._garden_reasons]
        if new:
            log.info("%s: using the Model Garden rebuild for %s", self.handle, "; ".join(new))
            self._garden_reasons.update(new)
        return g

    def quantize_now(self, probe: Probe) -> None:
        """Switch to the quantized backend of ``self.quantize`` (converting once if needed, checked on ``probe``)
        and free the float32 weights: from here on, the quantized model is what runs."""
        if self.quantize is None:
            return
        self.weights_sha256  # the fingerprint, before the float32 weights go
        self.quantized = quantized_backend(self, probe)
        self.obj = self.hub = self._garden = None
        release_freed_memory()


# -- quantized compute (load(..., quantize=)) ----------------------------------------------------------------------
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


def cpu_flags() -> Set[str]:
    """The CPU's feature flags (Linux: /proc/cpuinfo); empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def int8_refusal(what: List[str]) -> str:
    return (
        f"quantize='int8' computes the encoder's own outputs (its layers and pooled output) in int8; "
        f"{'; '.join(what)} would need the float32 (or bf16) Model Garden rebuild: load without quantize= for it"
    )


def quantized_backend(engine: Engine, probe: Probe) -> Backend:
    """The backend of ``engine.quantize``: int8, the TFLite model converted once (cached by the weights
    fingerprint) and checked against float32 on ``probe``; bf16, the Model Garden rebuild computing in bf16.

    Raises:
        FormatError: the graph does not convert to TFLite, or the int8 model disagrees with float32.
        MissingDependencyError: ai-edge-litert (int8) or Model Garden (bf16, TF1 modules) is not installed.
    """
    source = engine.quantized_source()
    if source == "garden" and engine.backend == "hub":
        why = "bf16 runs" if engine.quantize == "bf16" else "a TF1 module's int8 model is converted from"
        raise InputError(
            f"quantize={engine.quantize!r} with backend='hub': {why} the Model Garden rebuild, which backend='hub' "
            f"rules out (use backend='auto')"
        )
    if engine.quantize == "bf16":
        return engine.garden().with_policy("mixed_bfloat16")
    path = lite.cache_path(engine.weights_sha256, source)
    record = lite.read_record(path)
    if record is None:
        return _convert_int8(engine, source, path, probe)
    lite.check_cached(path, record, engine.weights_sha256)
    return LiteBackend(path, source)


def _convert_int8(engine: Engine, source: str, path: str, probe: Probe) -> Backend:
    float32: Any = engine.garden() if source == "garden" else engine.hub
    log.info("%s: quantizing the encoder to int8 (once; kept in %s)", engine.handle, os.path.dirname(path))
    lite.convert(float32, float32.model if source == "garden" else engine.obj, path)
    int8 = LiteBackend(path, source)
    agreement = _agreement(probe(), float32, int8)
    if agreement < MIN_AGREEMENT:
        os.remove(path)
        raise FormatError(
            f"{engine.handle}: the int8 model's last layer agrees with float32 only to a mean cosine of "
            f"{agreement:.4f} on probe texts (at least {MIN_AGREEMENT} expected): use float32 or bf16"
        )
    lite.write_record(
        path,
        {
            "source": source,
            "model": engine.handle,
            "probe_cosine": round(agreement, 6),
            "weights_sha256": engine.weights_sha256,
            "tflite_sha256": lite.file_sha256(path),
            "signature": {k: v for k, v in engine.signature.to_dict().items() if k not in _PER_LOAD},
        },
    )
    return int8


def release_freed_memory() -> None:
    """Hand the freed float32 weights back to the operating system (glibc keeps freed heap pages otherwise)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _agreement(packed: Tuple[np.ndarray, np.ndarray, np.ndarray], float32: Backend, int8: Backend) -> float:
    """Mean cosine over the real tokens of the probe between the two backends' last layers."""
    ids, mask, types = packed
    a = np.asarray(float32(ids, mask, types).sequence, np.float64)
    b = np.asarray(int8(ids, mask, types).sequence, np.float64)
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)
    return float(cos[mask.astype(bool)].mean())
