"""Encode: run one packed batch through an encoder, whatever its format: the typed backend seam.

A backend (``Backend``: the Hub model, ``HubBackend``; the Model Garden rebuild,
``hubembed.garden.GardenEncoder``; or either converted to int8 TFLite, ``LiteBackend``) takes
``(input_word_ids, input_mask, input_type_ids)`` int32 ``[B, S]`` tensors, ``training`` and the ``LayerPlan``
of the job (which layers it needs; None: everything it gives), and returns ``Activations``: ``sequence`` [B, S, H],
``pooled`` [B, H], ``layers`` (L tensors [B, S, H], None for a layer the plan does not keep;
None when the model does not export them), ``embeddings`` [B, S, H] and ``attention``
(per block [B, heads, S, S]) where the backend gives them.

Called eagerly, a restored SavedModel function pays a one-time cost for every
new ``[batch, length]`` shape it sees (the runtime instantiates and optimises
the function graph per input shape). So the Hub backend calls the restored
model from inside one ``tf.function`` whose input signature is ``[None, None]``:
traced once per layer selection, it serves every batch size and length.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Protocol, Sequence, Tuple, Union, cast

import numpy as np

from hubembed._pipeline.layers import EMBEDDINGS
from hubembed._pipeline.spec import LayerPlan
from hubembed._util import optional, quiet_per_plan_tracing
from hubembed.errors import InputError

# A tf.Tensor, or a numpy array where a backend takes or gives one: TensorFlow ships no type stubs.
Tensor = Any
# The traced ``tf.function`` of ``HubBackend.compiled``: int32 [B, S] x 3 -> ``Activations.parts()``.
CompiledCall = Callable[[Tensor, Tensor, Tensor], tuple]


@dataclass
class Activations:
    """What one batch gives, as tensors (TensorFlow) or arrays."""

    sequence: Tensor  # [B, S, H]: the last layer
    pooled: Optional[Tensor] = None  # [B, H] or None (not exported, or not computed)
    layers: Optional[List[Optional[Tensor]]] = None  # per block [B, S, H] (None where not kept); None: not exported
    embeddings: Optional[Tensor] = None  # [B, S, H]: the embedding-layer output (Model Garden backend)
    attention: Optional[List[Tensor]] = None  # per block [B, heads, S, S] (Model Garden backend)

    def parts(self) -> tuple:
        """The fields as a tuple (what a ``tf.function`` can return)."""
        return self.sequence, self.pooled, self.layers, self.embeddings, self.attention

    def layer(self, index: Union[int, str]) -> Optional[Tensor]:
        """One layer by hubembed's numbering (a block index or "embeddings"); the last layer when the model
        exports no ``encoder_outputs`` (the plan allows only that then)."""
        if index == EMBEDDINGS:
            return self.embeddings
        # Any other string was refused when the layer spec was resolved: an int here.
        return self.layers[cast(int, index)] if self.layers is not None else self.sequence

    def stack(self, indices: Sequence[Union[int, str]]) -> np.ndarray:
        """The layers ``indices`` as one numpy array [k, B, S, H]."""
        if self.layers is None:  # only the last layer exists (checked by the plan)
            return np.asarray(self.sequence)[None].repeat(len(indices), axis=0)
        return np.stack([np.asarray(self.layer(i)) for i in indices])


class Backend(Protocol):
    """The call every encoder backend implements: int32 [B, S] ids, mask and type ids (tensors or arrays,
    positional), the plan of the layers to give (None: every one the backend exports)."""

    def __call__(
        self,
        word_ids: Tensor,
        mask: Tensor,
        type_ids: Tensor,
        /,
        *,
        training: bool = False,
        plan: Optional[LayerPlan] = None,
    ) -> Activations: ...


class HubBackend:
    """A TF2 (dict- or list-style) or TF1 Hub encoder behind one call."""

    def __init__(self, obj: Any, fmt: str) -> None:
        # obj: the restored SavedModel (tf.saved_model.load / hub.load), which has no type stubs.
        self.obj = obj
        self.format = fmt
        # The TF1 module's "tokens" signature (a ConcreteFunction: no stubs); None for TF2 models.
        self._tokens: Any = obj.signatures["tokens"] if fmt == "tf1_hub" else None
        self._fns: Dict[Tuple[bool, Optional[Tuple[int, ...]]], CompiledCall] = {}  # (training, kept) -> tf.function
        self._lock = threading.Lock()  # one trace, even with threads racing for it
        self.eager_calls = 0  # calls that ran the restored model eagerly (each new shape costs)

    def raw(
        self,
        word_ids: Tensor,
        mask: Tensor,
        type_ids: Tensor,
        training: bool = False,
        keep: Optional[Sequence[int]] = None,
    ) -> Activations:
        """Call the restored model as it is (eagerly when called eagerly; inlined inside a graph).

        keep: the layer indices to return (the others are None in ``layers``, so a compiled function can free
        them as soon as the next block has used them); None: every layer the model exports.
        """
        import tensorflow as tf

        if not tf.inside_function():
            self.eager_calls += 1
        if self.format == "tf2_dict":
            out = self.obj(
                {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids}, training=training
            )
            layers = list(out["encoder_outputs"]) if "encoder_outputs" in out else None
            if layers is not None and keep is not None:
                wanted = {i % len(layers) for i in keep}
                layers = [x if i in wanted else None for i, x in enumerate(layers)]
            return Activations(out["sequence_output"], out.get("pooled_output"), layers)
        if self.format == "tf2_list":
            pooled, sequence = self.obj([word_ids, mask, type_ids], training=training)
            return Activations(sequence, pooled)
        out = self._tokens(input_ids=word_ids, input_mask=mask, segment_ids=type_ids)
        return Activations(out["sequence_output"], out["pooled_output"])

    def compiled(self, training: bool = False, keep: Optional[Sequence[int]] = None) -> CompiledCall:
        """The ``tf.function`` over ``[None, None]`` int32 inputs that calls the model, traced once (per
        ``training`` and ``keep``, never per shape); it returns ``Activations.parts()``."""
        import tensorflow as tf

        key = (bool(training), None if keep is None else tuple(sorted(set(keep))))
        with self._lock:
            if key not in self._fns:
                quiet_per_plan_tracing()
                spec = tf.TensorSpec([None, None], tf.int32)

                @tf.function(input_signature=[spec, spec, spec], autograph=False)
                def call(word_ids: Tensor, mask: Tensor, type_ids: Tensor) -> tuple:
                    return self.raw(word_ids, mask, type_ids, training=key[0], keep=key[1]).parts()

                call.get_concrete_function()
                self._fns[key] = call
        return self._fns[key]

    def __call__(
        self,
        word_ids: Tensor,
        mask: Tensor,
        type_ids: Tensor,
        *,
        training: bool = False,
        plan: Optional[LayerPlan] = None,
    ) -> Activations:
        """The ``Backend`` call: the layers ``plan`` uses (every exported one without a plan)."""
        import tensorflow as tf

        keep = None if plan is None else plan.blocks
        if tf.inside_function():  # already in a graph (a Keras layer, a tf.function): inline the model
            return self.raw(word_ids, mask, type_ids, training=training, keep=keep)
        args = (tf.convert_to_tensor(x, tf.int32) for x in (word_ids, mask, type_ids))
        return Activations(*self.compiled(training, keep)(*args))


_INPUTS = ("input_word_ids", "input_mask", "input_type_ids")  # the Hub encoder inputs, as the file names them


class LiteBackend:
    """An encoder converted to an int8 TFLite model (``hubembed._formats.lite``), run by LiteRT.

    numpy (or tensors) in, numpy out: ``sequence``, ``pooled`` (when the source model has one) and ``layers``
    (when it gives them). One interpreter per backend; calls are serialised by a lock (an interpreter runs one
    call at a time), each resizes the inputs to its batch's shape (no trace per shape, unlike a restored
    SavedModel called eagerly). Inference only: it has no gradients and no dropout.
    """

    def __init__(self, path: str, source: str, threads: Optional[int] = None) -> None:
        litert = optional("ai_edge_litert.interpreter", "quantize='int8' (the TFLite runtime, LiteRT)")
        self.path, self.source = path, source
        self.threads = threads or _cpus()
        with quiet_native_info():  # LiteRT applies XNNPACK at the first call and says so on stderr
            self.interpreter = litert.Interpreter(model_path=path, num_threads=self.threads)
            self.runner = self.interpreter.get_signature_runner("serving_default")
            one = np.ones((1, 2), np.int32)
            self.runner(input_word_ids=one, input_mask=one, input_type_ids=one * 0)
        names = set(self.runner.get_output_details())
        self.has_pooled = "pooled_output" in names
        self._layer_keys = sorted(n for n in names if n.startswith("layer_"))  # layer_000, layer_001, ...
        self.num_layers = len(self._layer_keys)
        self._lock = threading.Lock()

    def __call__(
        self,
        word_ids: Tensor,
        mask: Tensor,
        type_ids: Tensor,
        *,
        training: bool = False,
        plan: Optional[LayerPlan] = None,
    ) -> Activations:
        if training:
            raise InputError(
                "training=True: the int8 model runs inference only (no gradients, no dropout); "
                "fine-tune the float32 model (load without quantize=)"
            )
        feed = {k: np.asarray(x, np.int32) for k, x in zip(_INPUTS, (word_ids, mask, type_ids))}
        with self._lock:
            out = self.runner(**feed)
        layers = [out[k] for k in self._layer_keys] if self._layer_keys else None
        return Activations(out["sequence_output"], out.get("pooled_output"), layers)


def _cpus() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def quiet_native_info() -> Iterator[None]:
    """Silence native code's writes to stderr for a moment, when TensorFlow's own logging is silenced
    (``TF_CPP_MIN_LOG_LEVEL`` >= 1, hubembed's default): LiteRT logs "INFO: Created TensorFlow Lite XNNPACK
    delegate for CPU." without a level switch."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") in ("", "0"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
