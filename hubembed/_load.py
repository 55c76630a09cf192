"""``hubembed.load``: a handle, loaded how (``LoadOptions``), to a whole ``Encoder`` (or an export's embedder).

The handle is resolved (``hubembed._hub.resolve``: registry name, tfhub.dev, Kaggle, local folder) and one
loader per kind of resolved handle builds what it leads to:

* a ``hubembed export`` folder: ``_from_export`` (an ``ExportedEmbedder``: strings in, vectors out);
* an int8 model already converted from weights the registry pins: ``_from_pinned_int8`` (the float32
  SavedModel is not read at all; its signature comes from the conversion's record);
* a SavedModel, TF2 (dict- or list-style) or a TF1 Hub module: ``_from_saved_model`` (restored, audited
  where ``trust`` asks, fingerprinted against the registry's pin).

Then the preprocessor is paired, the window chosen, the ``Signature`` completed, the ``Engine`` built (and
quantized, when asked) and the ``Encoder`` made from them, whole.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from hubembed import registry
from hubembed._engines import PROBE_TEXTS, Engine, check_quantize, int8_refusal
from hubembed._formats import convert, lite
from hubembed._formats import export as export_format
from hubembed._hub import pairing, resolve
from hubembed._hub.fingerprint import weights_fingerprint
from hubembed._hub.preprocess import Preprocessing
from hubembed._hub.signature import Signature, read_signature
from hubembed._pipeline import batching
from hubembed._pipeline import layers as layer_spec
from hubembed._pipeline import prompts as prompts_mod
from hubembed._pipeline.graph import ExportedEmbedder
from hubembed._pipeline.run import text_rows
from hubembed._pipeline.spec import BACKENDS, EmbedSpec
from hubembed._util import require_tensorflow
from hubembed.encoder import Encoder
from hubembed.errors import InputError, StaleCacheError

log = logging.getLogger("hubembed")


@dataclass(frozen=True)
class LoadOptions:
    """Which model, loaded how: one frozen, picklable value for ``load``, the extract front-ends (local, Beam,
    Spark), Beam's ``ModelHandler``, ``HubFeatureLayer`` and the CLI (a new load option is added here, once).

    Args:
        model: a registry name ("minilm"), a tfhub.dev handle, a Kaggle model URL or a local folder.
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
        prompts: named prompts, {"query": "query: ", "document": "passage: "} (``prompt_name=``, ``embed_queries``,
            ``embed_documents``), besides (and over) those the registry defines for the model; kept as
            ((name, text), ...) pairs (hashable).

    Raises:
        InputError: an option out of range, checked when the value is made (before anything loads; seq_length's
            range, which depends on the model, when it loads).
        MissingDependencyError: quantize="int8" without LiteRT.
    """

    model: str = "minilm"
    preprocess: Optional[str] = None
    seq_length: Optional[int] = None
    backend: str = "auto"
    trust: str = "registry"
    quantize: Optional[str] = None
    prompts: Optional[prompts_mod.PromptsLike] = None  # kept as prompts_mod.Prompts

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise InputError(f"model={self.model!r}; valid: a registry name, a Hub handle or URL, or a folder")
        if self.backend not in BACKENDS:
            raise InputError(f"backend={self.backend!r}; valid: {', '.join(BACKENDS)}")
        if self.trust not in resolve.TRUST:
            raise InputError(f"trust={self.trust!r}; valid: {', '.join(resolve.TRUST)}")
        check_quantize(self.quantize)
        object.__setattr__(self, "prompts", prompts_mod.as_prompts(self.prompts))

    @classmethod
    def make(cls, options: Optional["LoadOptions"] = None, **keywords: Any) -> "LoadOptions":
        """``options``, or one made from the keywords (``model=``, ``preprocess=``, ...); not both."""
        if options is None:
            return cls(**{k: v for k, v in keywords.items() if v is not None})  # None: the default
        if not isinstance(options, LoadOptions):
            raise InputError(f"options={options!r}; valid: a hubembed.LoadOptions (or None and its keywords)")
        defaults = cls()
        given = [k for k, v in keywords.items() if v is not None and v != getattr(defaults, k)]
        if given:
            raise InputError(f"pass either options= or its arguments, not both ({', '.join(given)} given)")
        return options

    def check_spec(self, spec: EmbedSpec) -> None:
        """What a model loaded so cannot compute for ``spec``, refused before it loads (the window, as
        ``check_window``; int8: attention pooling and the embedding output, which need the float32 or bf16 Model
        Garden rebuild).

        Raises:
            InputError: as ``Engine.check_quantized`` or the windowing would after the load.
        """
        self.check_window(spec)
        if self.quantize != "int8":
            return
        what = []
        if layer_spec.names_embeddings(spec.layers):
            what.append("the embedding output (layer 'embeddings')")
        if spec.pooling == "attention":
            what.append("pooling='attention' (attention weights)")
        if what:
            raise InputError(int8_refusal(what))

    def check_prompt(self, spec: EmbedSpec) -> None:
        """``spec.prompt_name`` against the model's named prompts (the registry's and ``prompts``), before it loads.

        Raises:
            InputError: a name the model has no prompt for.
        """
        if spec.prompt_name is not None:
            defined = getattr(registry.find(self.model), "prompts", None)
            spec.prompt_text(prompts_mod.named(defined, self.prompts), self.model)

    def check_window(self, spec: Optional[EmbedSpec] = None) -> None:
        """``seq_length`` (and ``spec.stride``) against what the registry knows of the model, before it loads: its
        max positions and the length it was trained with (models outside the registry: when they load).

        Raises:
            InputError: as the load (or the windowing) would after loading.
        """
        entry = registry.find(self.model)
        if entry is None or entry.kind != "encoder" or not entry.max_positions:
            return
        check_seq_length(self.seq_length, entry.max_positions)
        if spec is not None and spec.stride is not None:
            window = self.seq_length or entry.seq_length or min(entry.max_positions, 512)
            batching.check_stride(spec.stride, window)

    def replace(self, **changes: Any) -> "LoadOptions":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "LoadOptions":
        return cls(**d)

    def keywords(self) -> Dict[str, Any]:
        """The options but the model, as ``load``'s keywords."""
        return {k: v for k, v in self.to_dict().items() if k != "model"}

    def load(self) -> Union[Encoder, ExportedEmbedder]:
        """``hubembed.load(self.model, ...)`` with these options."""
        return _load(self)


def load(
    handle: str,
    *,
    preprocess: Optional[str] = None,
    seq_length: Optional[int] = None,
    backend: str = "auto",
    trust: str = "registry",
    quantize: Optional[str] = None,
    prompts: Optional[Dict[str, str]] = None,
) -> Union[Encoder, ExportedEmbedder]:
    """Load an encoder by handle with its paired preprocessor (or a ``hubembed export`` folder: an embedder).

    Args:
        handle, preprocess, seq_length, backend, trust, quantize, prompts: as ``LoadOptions`` (``handle`` is its
            ``model``).

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
    return _load(LoadOptions(handle, preprocess, seq_length, backend, trust, quantize, prompts))


def _load(o: LoadOptions) -> Union[Encoder, ExportedEmbedder]:
    o.check_window()  # what the registry knows: before anything is resolved, downloaded or imported
    r = resolve.resolve(o.model)
    if r.export is not None:
        return _from_export(r, o)
    cached = _from_cached_int8(r, o) if o.quantize == "int8" else None
    r, obj, sig, fingerprint = cached if cached is not None else _from_saved_model(r, o)
    # int8 runs without TensorFlow: it tokenizes in Python where the preprocessor can be rebuilt (same ids).
    pre = pairing.pair(r, sig, o.preprocess, o.trust, python=o.quantize == "int8")
    seq_length, seq_length_from = _window(r, sig, o.seq_length)
    sig = dataclasses.replace(
        sig,
        preprocessor=dict(pre.to_dict(), paired_by=pre.paired_by),
        seq_length=seq_length,
        seq_length_from=seq_length_from,
    )
    engine = Engine(
        o.model, obj, sig, entry=r.entry, backend=o.backend, quantize=o.quantize, weights_sha256=fingerprint
    )
    engine.quantize_now(lambda: _probe(pre, seq_length))
    if o.quantize == "int8" and cached is None:
        lite.remember_files(r.path, engine.weights_sha256, audited=resolve.needs_audit(r, o.trust))
    return Encoder(engine, pre, seq_length, options=o)


Loaded = Tuple[resolve.Resolved, Any, Signature, Optional[str]]  # resolved, model (None: int8 only), sig, fingerprint


def _from_saved_model(r: resolve.Resolved, o: LoadOptions) -> Loaded:
    """A TF2 SavedModel or TF1 Hub module: restored (audited where ``trust`` asks), read, fingerprinted."""
    if o.quantize == "int8":
        why = f"{o.model}: no int8 model of it is cached in {lite.cache_dir()} yet, and converting one (once)"
    else:
        why = f"{o.model}: the float32 model (quantize=None)"
    require_tensorflow(why)
    obj = resolve.load(r.path, r.handle, audit=resolve.needs_audit(r, o.trust))
    sig = read_signature(obj, r.path, r.handle, r.entry)
    return r, obj, sig, _check_fingerprint(o.model, r, obj)


def _from_cached_int8(r: resolve.Resolved, o: LoadOptions) -> Optional[Loaded]:
    """The int8 model already converted, when loading it needs nothing from the float32 SavedModel: its weights
    are known without restoring them (the registry's pin, or the record of these very files, ``lite.files_key``)
    and no audit is owed (none asked for, or these files passed one), and its signature is in the conversion's
    record. Nothing here imports TensorFlow. None otherwise (the float32 model is restored)."""
    pin = r.entry.weights_sha256 if r.entry is not None and r.entry.kind == "encoder" else None
    if pin and resolve.needs_audit(r, o.trust):
        return None
    if not pin:
        files = lite.weights_of_files(r.path)
        if files is None or (resolve.needs_audit(r, o.trust) and not files["audited"]):
            return None
        pin = files["weights_sha256"]
    for source in ("garden",) if o.backend == "garden" else ("hub", "garden"):
        path = lite.cache_path(pin, source)
        record = lite.read_record(path)
        fmt = (record or {}).get("signature", {}).get("format")
        if record and fmt and source == ("garden" if fmt == "tf1_hub" or o.backend == "garden" else "hub"):
            lite.check_cached(path, record, pin)
            sig = Signature(**{**record["signature"], "handle": r.handle, "path": r.path})
            return r, None, sig, pin
    return None


def _from_export(r: resolve.Resolved, o: LoadOptions) -> ExportedEmbedder:
    """An export folder loaded back: audited like any model outside the registry, then ``tf.saved_model.load``."""
    record = r.export or {}
    fixed = LoadOptions(o.model, seq_length=record.get("seq_length"))
    changed = [
        k
        for k in ("preprocess", "seq_length", "backend", "quantize", "prompts")
        if getattr(o, k) is not None and getattr(o, k) != getattr(fixed, k)
    ]
    if changed:
        raise InputError(
            f"{r.handle} is a hubembed export: its preprocessing, window (seq_length {record.get('seq_length')}) "
            f"and encoder are baked in, so {', '.join(changed)} cannot be given; load the model it was exported "
            f"from ({record.get('model')!r}) for that"
        )
    obj = resolve.load(r.path, r.handle, audit=resolve.needs_audit(r, o.trust))
    source = {"out": r.path, "model": record.get("model"), "weights_sha256": record.get("weights_sha256")}
    recorded = {"seq_length": record["seq_length"], "transform": record["spec"].get("transform")}
    spec = EmbedSpec.from_dict(record["spec"]).with_source({**source, **recorded})
    return ExportedEmbedder(r.path, obj, export_format.ExportInfo.read(r.path, record), spec)


def _window(r: resolve.Resolved, sig: Signature, given: Optional[int]) -> Tuple[int, str]:
    """(the window hubembed packs, where it came from): given, the registry's trained length, the trained length a
    conversion recorded (``sentence_bert_config.json``), or max positions."""
    limit = sig.max_positions or 512
    trained = r.entry.seq_length if r.entry is not None and r.entry.kind == "encoder" else None
    recorded = convert.recorded_window(r.path) if trained is None and given is None else None
    if given is not None:
        seq_length, seq_length_from = given, "given"
    elif trained:
        seq_length, seq_length_from = trained, "registry"
    elif recorded is not None:
        seq_length, seq_length_from = recorded
    else:
        seq_length, seq_length_from = min(limit, 512), "max positions"
    check_seq_length(seq_length, limit)
    return seq_length, seq_length_from


def check_seq_length(seq_length: Optional[int], limit: int) -> None:
    """A window from 3 (``[CLS] x [SEP]``) to the encoder's max positions (None: the model's default)."""
    if seq_length is not None and (not isinstance(seq_length, int) or not (3 <= seq_length <= limit)):
        raise InputError(f"seq_length={seq_length!r}; valid: 3..{limit} (the encoder's max positions)")


def _probe(pre: Preprocessing, seq_length: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``PROBE_TEXTS`` packed by the encoder's own preprocessor: what an int8 conversion is checked on."""
    rows, _ = text_rows(pre, seq_length, list(PROBE_TEXTS), long="truncate", stride=None)
    ids, mask, types = batching.pack(rows, pre.special, seq_length)[:3]
    return ids, mask, types


def _check_fingerprint(handle: str, r: resolve.Resolved, obj: Any) -> Optional[str]:
    """Compare the weights with the registry's pin: the embedded default refuses a mismatch, others warn."""
    pin = r.entry.weights_sha256 if r.entry is not None else None
    if not pin:
        return None
    got = weights_fingerprint(obj)
    if got != pin:
        if r.entry is not None and r.entry.embedded:
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


def inspect(
    handle: str, *, preprocess: Optional[str] = None, trust: str = "registry", seq_length: Optional[int] = None
) -> Union[Signature, export_format.ExportInfo]:
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
    enc = load(handle, preprocess=preprocess, trust=trust, seq_length=seq_length)
    assert isinstance(enc, Encoder)
    return enc.signature
