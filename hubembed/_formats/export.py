"""The ``hubembed export`` folder: one self-contained SavedModel (strings in, vectors out) + ``hubembed.json``.

::

    OUT/saved_model.pb, variables/   the embedder (``hubembed._pipeline.graph`` builds it): the encoder's variables
    OUT/assets/vocab.txt             the tokenizer's vocabulary, its only asset
    OUT/hubembed.json                what it is: source model, weights fingerprint, spec, dimension, window, versions

The SavedModel needs TensorFlow and tensorflow-text (its tokenizer ops are tensorflow_text's: ``import
tensorflow_text`` before loading it), not hubembed. Its ``__call__`` and ``serving_default`` signature take a
string tensor ``[B]`` (``inputs``) and return float32 ``[B, D]`` (``outputs``). The folder is written under a
temporary name beside OUT and renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import List, Optional

from hubembed._util import tf_logging_at_warning
from hubembed.errors import FormatError, OutputError

FORMAT = "hubembed-export/1"
RECORD = "hubembed.json"
# What a user runs where hubembed is not installed, shown by `hubembed inspect` (and the README).
USAGE = (
    "import tensorflow as tf, tensorflow_text  # tensorflow_text registers the tokenizer's ops\n"
    "embed = tf.saved_model.load({path!r})    # or tensorflow_hub: hub.load / hub.KerasLayer (tf_keras)\n"
    'vectors = embed(tf.constant(["a sentence", "another one"]))   # [2, {dim}] float32\n'
    '# Keras 3: keras.layers.TFSMLayer({path!r}, call_endpoint="serving_default")  -> {{"outputs": [B, {dim}]}}'
)


def read_record(path: str) -> Optional[dict]:
    """The ``hubembed.json`` of an export folder, or None when ``path`` is not one.

    Raises:
        FormatError: the folder has a hubembed.json that names this format but cannot be read.
    """
    file = os.path.join(path, RECORD)
    if not os.path.isfile(file) or not os.path.isfile(os.path.join(path, "saved_model.pb")):
        return None
    try:
        with open(file, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        raise FormatError(f"{file} cannot be read ({e}): is the export complete?") from None
    if not isinstance(record, dict) or not str(record.get("format", "")).startswith("hubembed-export/"):
        return None
    if record["format"] != FORMAT:
        raise FormatError(f"{path} is a {record['format']} export; this hubembed reads {FORMAT}")
    return record


def check_out(out: str, overwrite: bool = False) -> str:
    """``out`` as an absolute path, if an export may be written there (cheap: callers check before slow work).

    Raises:
        OutputError: ``out`` is a file, or a folder that is not empty (without ``overwrite``).
    """
    out = os.path.abspath(os.path.expanduser(out))
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputError(f"{out} is a file; an export is written to a folder")
    if os.path.isdir(out) and os.listdir(out) and not overwrite:
        raise OutputError(f"{out} exists and is not empty: choose a new folder, or overwrite=True (--overwrite)")
    return out


@contextlib.contextmanager
def staged(out: str, overwrite: bool = False):
    """A temporary folder beside ``out`` to write the export into; renamed to ``out`` when the block succeeds,
    removed when it fails.

    Raises:
        OutputError: as ``check_out``.
    """
    out = check_out(out, overwrite)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".exporting-", dir=parent)
    try:
        yield tmp
        if os.path.exists(out):
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save(folder: str, root, serving) -> None:
    """Save the SavedModel ``root`` into ``folder``, with ``serving`` (a tf.function) as ``serving_default``."""
    import tensorflow as tf

    # Saving logs at INFO what is routine here (the assets written; the encoder's variables, captured by number,
    # renamed in the signature's inputs): keep it out of the user's output.
    try:
        with tf_logging_at_warning():
            tf.saved_model.save(root, folder, signatures={"serving_default": serving})
    except (ValueError, AssertionError, TypeError) as e:  # e.g. a resource the encoder's functions capture, untracked
        raise FormatError(f"the export could not be saved as a SavedModel: {type(e).__name__}: {str(e)[:800]}") from e


def write_record(folder: str, record: dict) -> None:
    """Write ``hubembed.json`` into ``folder``."""
    with open(os.path.join(folder, RECORD), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, sort_keys=True)


def _signatures(path: str) -> List[dict]:
    """The SavedModel's signatures (name, inputs, outputs), read from saved_model.pb without loading it."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())

    def tensors(infos):
        return [
            {
                "name": k,
                "dtype": tf.dtypes.as_dtype(v.dtype).name,
                "shape": [d.size if d.size >= 0 else None for d in v.tensor_shape.dim],
            }
            for k, v in sorted(infos.items())
        ]

    return [
        {"name": name, "inputs": tensors(sig.inputs), "outputs": tensors(sig.outputs)}
        for mg in sm.meta_graphs
        for name, sig in sorted(mg.signature_def.items())
        if not name.startswith("__")
    ]


@dataclass
class ExportInfo:
    """What ``hubembed inspect`` says about an export folder (read from its files, nothing loaded or run)."""

    path: str
    record: dict
    signatures: List[dict] = field(default_factory=list)

    @classmethod
    def read(cls, path: str, record: Optional[dict] = None) -> "ExportInfo":
        record = record if record is not None else read_record(path)
        if record is None:
            raise FormatError(f"{path} is not a hubembed export (no {RECORD} of format {FORMAT})")
        return cls(path, record, _signatures(path))

    def to_dict(self) -> dict:
        return {"path": self.path, **self.record, "saved_model_signatures": self.signatures}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def describe(self) -> str:
        r, s, check = self.record, self.record.get("spec", {}), self.record.get("check", {})
        pre = r.get("preprocessor") or {}
        t = s.get("transform")
        transform = f", transform {t.get('method')} (sha256 {str(t.get('sha256'))[:16]}...)" if t else ""
        lines = [
            f"{self.path}",
            f"  format:          {r['format']} (hubembed export: strings in, vectors out, the spec baked in)",
            f"  exported from:   {r.get('model')} ({r.get('model_format')}; weights sha256 "
            f"{str(r.get('weights_sha256'))[:16]}...; through the {s.get('backend')} backend)",
            f"  vector:          [B, {r.get('dim')}] float32",
            f"  spec:            layers {s.get('layers')}, combine {s.get('combine')}, pooling {s.get('pooling')}, "
            f"special_tokens {s.get('special_tokens')}, normalize {s.get('normalize')}{transform}",
            f"  window:          seq_length {r.get('seq_length')}: a text of more than "
            f"{r.get('truncation', {}).get('max_word_pieces')} word pieces is truncated",
            f"  tokenizer:       {pre.get('source')} ({pre.get('tokenizer', 'tensorflow_text')} tokenization, "
            f"lower case {pre.get('lower_case')})",
            f"  checked:         max |export - Encoder.embed| {check.get('max_abs_diff')} (relative) on "
            f"{check.get('texts')} probe texts",
            "  signatures:",
        ]
        for sig in self.signatures:
            ins = ", ".join(f"{x['name']} {x['dtype']} {x['shape']}" for x in sig["inputs"])
            outs = ", ".join(f"{x['name']} {x['dtype']} {x['shape']}" for x in sig["outputs"])
            lines.append(f"    {sig['name']}: {ins} -> {outs}")
        lines.append(f"  versions:        {', '.join(f'{k} {v}' for k, v in sorted(r.get('versions', {}).items()))}")
        lines.append("  use without hubembed:")
        lines += ["    " + u for u in USAGE.format(path=self.path, dim=r.get("dim")).splitlines()]
        return "\n".join(lines)
