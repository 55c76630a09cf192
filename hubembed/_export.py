"""``Encoder.export``: one self-contained SavedModel that embeds as ``Encoder.embed`` does, without hubembed.

The spec is checked for what one graph can express before anything slow runs; the graph (``hubembed._pipeline.graph``)
is saved in a staged folder, loaded back and compared with ``embed`` on probe texts, audited, and only then moved
into place with its record (``hubembed.json``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

import numpy as np

from hubembed import garden
from hubembed._formats import export as export_format
from hubembed._formats import lite, litert
from hubembed._hub.audit import audit
from hubembed._pipeline import graph
from hubembed._pipeline.backends import quiet_native_info
from hubembed._pipeline.batching import BATCH_SIZE, MAX_TOKENS
from hubembed._pipeline.spec import EmbedSpec, LayerPlan
from hubembed._util import optional, tf_logging_at_warning, versions
from hubembed._version import __version__
from hubembed.errors import FormatError, InputError

if TYPE_CHECKING:
    from hubembed.encoder import Encoder

log = logging.getLogger("hubembed")


def export_encoder(enc: Encoder, out: str, spec: EmbedSpec, overwrite: bool = False) -> str:
    """``Encoder.export``: one self-contained SavedModel embedding as ``embed(texts, spec=spec)`` does, no hubembed.

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
    _refuse_quantized_encoder(
        enc, "a SavedModel export is one float32 TensorFlow graph (int8 TFLite cannot be part of it)"
    )
    spec, plan, transform = _export_plan(enc, spec)
    dim = spec.shape(plan, enc.signature.hidden_size, transform)[-1]
    with export_format.staged(out, overwrite) as folder:  # refuses a used folder before the slow work
        backend = enc.backend_for(plan)
        variables = backend.model.variables if plan.garden else getattr(enc.obj, "variables", [])
        head = graph.Head(plan, spec.pooling, spec.special_tokens, spec.normalize, transform)
        batching_ = {"max_rows": BATCH_SIZE, "max_tokens": max(MAX_TOKENS, enc.seq_length)}
        root, serving = graph.build(
            enc.preprocessor.module,
            backend,
            head,
            seq_length=enc.seq_length,
            dim=dim,
            batching=batching_,
            variables=variables,
        )
        export_format.save(folder, root, serving)
        check = _export_check(enc, folder, spec)
        export_format.write_record(folder, _export_record(enc, spec, plan, transform, dim, batching_, check))
        _export_audit(folder, enc.handle)
    return os.path.abspath(os.path.expanduser(out))


def _export_plan(enc: Encoder, spec: EmbedSpec) -> Tuple[EmbedSpec, LayerPlan, Any]:
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
    if spec.prompt is not None or spec.prompt_name is not None:
        raise InputError(
            "prompt/prompt_name: an export embeds the strings it is given, with no prompt; put the prompt before "
            "them (strings = [prompt + text for text in texts]), or export without it"
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
        garden.require()
    return spec, plan, transform


# Probe texts for the export's check: plain, empty, accented and CJK, and one longer than any window.
_PROBE = ["A man is playing a guitar.", "", "naïve café: 日本語, 😀!", "hello world " * 300]


def _export_check(enc: Encoder, folder: str, spec: EmbedSpec) -> dict:
    """Load the written SavedModel back, run it on probe texts and compare with ``embed``: an export that does not
    reproduce it is refused."""
    import tensorflow as tf  # TensorFlow: imported where it is used, so that `import hubembed` stays TF-free

    want = _probe_vectors(enc, spec)
    got = tf.saved_model.load(folder)(tf.constant(_PROBE)).numpy()
    return _check_reproduces(enc, "exported graph", got, want)


def _probe_vectors(enc: Encoder, spec: EmbedSpec) -> np.ndarray:
    """``embed`` of the probe texts, what an export is checked against."""
    level = log.level
    log.setLevel(logging.ERROR)  # the long probe's truncation is expected, not news
    try:
        return enc.embed(_PROBE, spec=spec)
    finally:
        log.setLevel(level)


def _check_reproduces(enc: Encoder, what: str, got: np.ndarray, want: np.ndarray) -> dict:
    """The export's probe vectors against ``embed``'s: refused over 1e-4 relative, else the difference recorded."""
    diff = float(np.abs(got - want).max()) / max(1.0, float(np.abs(want).max()))
    if not diff <= 1e-4:
        raise FormatError(
            f"the {what} of {enc.handle} does not reproduce Encoder.embed on probe texts (max |diff| "
            f"{diff:.2e} relative, tolerance 1e-4); nothing was written"
        )
    return {"texts": len(_PROBE), "max_abs_diff": float(f"{diff:.3g}")}


def _export_record(
    enc: Encoder, spec: EmbedSpec, plan: LayerPlan, transform: Any, dim: int, batching_: dict, check: dict
) -> dict:
    """What ``hubembed.json`` says about an export."""
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


# -- --format litert ------------------------------------------------------------------------------------------------
LITERT_QUANTIZE = (None, "int8")
LITERT_FORMAT = "hubembed-litert/1"
MIN_INT8_COSINE = 0.99  # an int8 export against float32 embed, per probe text (minilm: >= 0.998)


def export_litert(
    enc: Encoder, out: str, spec: EmbedSpec, *, quantize: Optional[str] = None, overwrite: bool = False
) -> str:
    """``Encoder.export(..., format="litert")``: ``OUT/model.tflite``, one LiteRT file that embeds one text as
    ``embed(texts, spec=spec)`` does (the text truncated to the window), for MediaPipe Tasks' ``TextEmbedder`` and
    plain LiteRT, with no hubembed and no TensorFlow; ``OUT/hubembed.json`` describes it.

    Inputs ``ids``, ``mask``, ``segment_ids``: int32 ``[1, seq_length]`` (``[CLS]`` text ``[SEP]``, padded); output:
    float32 ``[1, D]``; TFLite metadata with the BERT tokenizer and the vocabulary inside (``hubembed._formats.
    litert``). ``quantize="int8"``: the dense layers' kernels in int8, activations quantized per row at run time
    (dynamic range, as ``load(..., quantize="int8")``); None: float32. Checked before it is kept: LiteRT runs it on
    probe texts against ``embed`` (float32: max |diff| <= 1e-4 relative; int8: cosine >= 0.99 to float32).

    Raises:
        InputError: what ``export`` refuses (a layer axis, a window stride, truncate_dim/precision), an encoder loaded
            with quantize=, an unknown ``quantize``.
        MissingDependencyError: ai-edge-litert (it runs the check; its TFLite schema writes the metadata).
        FormatError: the graph does not convert to TFLite's built-in ops, or the file does not reproduce ``embed``.
        OutputError: ``out`` exists and is not empty.
    """
    if quantize not in LITERT_QUANTIZE:
        raise InputError(f"quantize={quantize!r} for a LiteRT export; valid: 'int8' or None (float32)")
    _refuse_quantized_encoder(enc, "a LiteRT export is converted from the float32 graph (quantize='int8' for int8)")
    optional("ai_edge_litert.interpreter", "export --format litert (LiteRT checks the file; its schema holds it)")
    spec, plan, transform = _export_plan(enc, spec)
    vocab = enc.preprocessor.vocab_file or enc.signature.vocab_file
    if vocab is None:
        raise InputError(f"{enc.handle}: its preprocessor names no vocab file, which a LiteRT export packs inside")
    dim = spec.shape(plan, enc.signature.hidden_size, transform)[-1]
    with export_format.staged(out, overwrite) as folder:
        head = graph.Head(plan, spec.pooling, spec.special_tokens, spec.normalize, transform)
        blob = _litert_convert(enc, plan, head, quantize)
        meta = litert.metadata(
            litert.input_names(blob),
            name=f"hubembed export of {enc.handle}",
            description=f"text embedder: {spec.pooling} pooling of layers {plan.indices}, dim {dim}",
            version=__version__,
        )
        path = os.path.join(folder, "model.tflite")
        with open(path, "wb") as f:
            f.write(litert.attach(blob, meta, vocab))
        check = _litert_check(enc, path, spec, quantize)
        record = _export_record(enc, spec, plan, transform, dim, {"max_rows": 1, "max_tokens": enc.seq_length}, check)
        record.update(
            format=LITERT_FORMAT,
            file="model.tflite",
            precision=quantize or "float32",
            signatures={
                "serving_default": f"ids, mask, segment_ids: int32 [1, {enc.seq_length}] -> float32 [1, {dim}]"
            },
            requires="ai-edge-litert, or MediaPipe Tasks' TextEmbedder (the tokenizer is in the file's metadata)",
            versions=versions("tensorflow", "ai_edge_litert"),
        )
        export_format.write_record(folder, record)
    return os.path.abspath(os.path.expanduser(out))


def _refuse_quantized_encoder(enc: Encoder, why: str) -> None:
    if enc.quantize is not None:
        raise InputError(
            f"export: {enc.handle} was loaded with quantize={enc.quantize!r}; {why}: load without quantize= to export"
        )


def _litert_convert(enc: Encoder, plan: LayerPlan, head: graph.Head, quantize: Optional[str]) -> bytes:
    """The spec's graph over fixed ``[1, seq_length]`` inputs, converted by TensorFlow's TFLite converter."""
    import tensorflow as tf

    backend = enc.backend_for(plan)
    shape = [1, enc.seq_length]
    names = litert.INPUTS

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.int32, name=n) for n in names], autograph=False)
    def embed(ids: Any, mask: Any, segment_ids: Any) -> dict:
        return {litert.OUTPUT: head(backend(ids, mask, segment_ids, plan=plan), mask, segment_ids)}

    root = tf.Module()
    root.model = backend.model if plan.garden else enc.obj
    root.embed = embed
    with tempfile.TemporaryDirectory(prefix="hubembed-litert-") as tmp:
        export_format.save(tmp, root, embed.get_concrete_function())
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serving_default"])
        if quantize == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        try:
            with tf_logging_at_warning():
                return bytes(converter.convert())
        except Exception as e:  # the converter's ConverterError carries MLIR diagnostics
            raise FormatError(f"the export could not be converted to LiteRT: {lite.first_error(e)}") from e


def _litert_inputs(enc: Encoder, texts: List[str]) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each text packed as MediaPipe packs it: ``[CLS]`` its first ``seq_length - 2`` pieces ``[SEP]``, padded."""
    S, special = enc.seq_length, enc.preprocessor.special
    out = []
    for pieces in enc.preprocessor.token_arrays(texts):
        row = [special["start_of_sequence_id"], *pieces[: S - 2].tolist(), special["end_of_segment_id"]]
        ids = np.full((1, S), special["padding_id"], np.int32)
        ids[0, : len(row)] = row
        mask = np.zeros((1, S), np.int32)
        mask[0, : len(row)] = 1
        out.append((ids, mask, np.zeros((1, S), np.int32)))
    return out


def _litert_check(enc: Encoder, path: str, spec: EmbedSpec, quantize: Optional[str]) -> dict:
    """Run the written file with LiteRT on probe texts and compare with ``embed``: refused unless it reproduces it."""
    from ai_edge_litert.interpreter import Interpreter

    want = _probe_vectors(enc, spec)
    with quiet_native_info():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" line
        runner = Interpreter(model_path=path).get_signature_runner("serving_default")
        got = np.concatenate(
            [runner(ids=i, mask=m, segment_ids=t)[litert.OUTPUT] for i, m, t in _litert_inputs(enc, _PROBE)]
        )
    if quantize == "int8":
        cos = (got * want).sum(-1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(want, axis=-1) + 1e-12)
        if not cos.min() >= MIN_INT8_COSINE:
            raise FormatError(
                f"the int8 LiteRT export of {enc.handle} agrees with float32 embed only to a cosine of "
                f"{cos.min():.4f} on a probe text (at least {MIN_INT8_COSINE}); export float32 instead"
            )
        return {"texts": len(_PROBE), "min_cosine_to_float32": float(f"{cos.min():.6g}")}
    return _check_reproduces(enc, "LiteRT export", got, want)


def _export_audit(folder: str, handle: str) -> None:
    a = audit(folder)
    if not a.ok:
        found = "; ".join(f"{f.op} in {f.where}: {f.why}" for f in a.findings[:10])
        raise FormatError(f"the export of {handle} fails hubembed's audit ({found}); nothing was written")
