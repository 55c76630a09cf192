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

from hubembed import inspection, pairing, resolve
from hubembed.backends import HubBackend
from hubembed.errors import InputError

log = logging.getLogger("hubembed")

POOLINGS = ("mean", "cls", "pooled", "max")


@dataclass
class EncoderOutputs:
    """Outputs for N texts, padded to the longest of them (numpy).

    pooled [N, H] (None if not exported); sequence [N, S, H]; layers [L, N, S, H]
    (None if not exported); mask [N, S] (1 = real token, [CLS]/[SEP] included);
    token_ids [N, S].
    """

    pooled: Optional[np.ndarray]
    sequence: np.ndarray
    layers: Optional[np.ndarray]
    mask: np.ndarray
    token_ids: np.ndarray


class Encoder:
    """A loaded Hub encoder with its paired preprocessor."""

    def __init__(self, handle: str, obj, signature: inspection.Signature, preprocessor, seq_length: int):
        self.handle = handle
        self.obj = obj
        self.signature = signature
        self.preprocessor = preprocessor
        self.seq_length = seq_length
        self._backend = HubBackend(obj, signature.format)

    def __repr__(self) -> str:
        s = self.signature
        return (f"Encoder({self.handle!r}, format={s.format}, layers={s.num_layers}, hidden={s.hidden_size}, "
                f"preprocessor={self.preprocessor.source!r})")

    # -- tokenize + pack -------------------------------------------------
    def _token_ids(self, texts: Sequence[str]) -> List[List[int]]:
        texts = _check_texts(texts)
        return self.preprocessor.token_ids(texts) if texts else []

    def _run(self, ids: List[List[int]]):
        """Pack the rows (already tokenized) to their own longest length and encode them."""
        import tensorflow as tf

        limit = self.seq_length
        length = min(max(len(r) for r in ids) + 2, limit)
        ragged = tf.ragged.constant(ids, dtype=tf.int32, ragged_rank=1) if any(ids) else \
            tf.RaggedTensor.from_row_lengths(tf.zeros([0], tf.int32), [0] * len(ids))
        packed = self.preprocessor.pack([ragged], length)
        out = self._backend(packed["input_word_ids"], packed["input_mask"], packed["input_type_ids"])
        return packed, out

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> EncoderOutputs:
        """Every output for ``texts`` (in order), padded to the longest text."""
        ids = self._token_ids(texts)
        H = self.signature.hidden_size
        if not ids:
            z = np.zeros((0, 0, H), np.float32)
            return EncoderOutputs(np.zeros((0, H), np.float32), z, None, np.zeros((0, 0), np.int32),
                                  np.zeros((0, 0), np.int32))
        S = min(max(len(r) for r in ids) + 2, self.seq_length)
        parts = {"pooled": [], "sequence": [], "layers": [], "mask": [], "token_ids": []}
        for start in range(0, len(ids), batch_size):
            packed, out = self._run(ids[start:start + batch_size])
            pad = S - int(packed["input_word_ids"].shape[1])
            pad2 = ((0, 0), (0, pad))
            parts["mask"].append(np.pad(packed["input_mask"].numpy(), pad2))
            parts["token_ids"].append(np.pad(packed["input_word_ids"].numpy(), pad2))
            parts["sequence"].append(np.pad(out["sequence"].numpy(), pad2 + ((0, 0),)))
            if out["pooled"] is not None:
                parts["pooled"].append(out["pooled"].numpy())
            if out["layers"] is not None:
                parts["layers"].append(np.stack([np.pad(t.numpy(), pad2 + ((0, 0),)) for t in out["layers"]]))
        return EncoderOutputs(
            pooled=np.concatenate(parts["pooled"]) if parts["pooled"] else None,
            sequence=np.concatenate(parts["sequence"]),
            layers=np.concatenate(parts["layers"], axis=1) if parts["layers"] else None,
            mask=np.concatenate(parts["mask"]), token_ids=np.concatenate(parts["token_ids"]))

    def embed(self, texts: Sequence[str], *, layers: int = -1, pooling: str = "mean", batch_size: int = 32,
              normalize: bool = False) -> np.ndarray:
        """One vector per text [N, H]: ``pooling`` over the tokens of layer ``layers``.

        Batches are sorted by length and each is padded only to its own longest row;
        results come back in input order.
        """
        if pooling not in POOLINGS:
            raise InputError(f"pooling={pooling!r}; valid: {', '.join(POOLINGS)}")
        L = self.signature.num_layers
        if not isinstance(layers, (int, np.integer)) or not (-L <= layers < L):
            raise InputError(f"layer {layers!r} requested; this encoder has {L} layers "
                             f"(valid: {-L}..{L - 1})")
        if layers % L != L - 1 and not self.signature.has_encoder_outputs:
            raise InputError(f"layer {layers} requested, but {self.handle} does not export encoder_outputs "
                             f"(only its last layer); the Model Garden fallback can rebuild the others")
        ids = self._token_ids(texts)
        H = self.signature.hidden_size
        result = np.zeros((len(ids), H), np.float32)
        order = np.argsort([len(r) for r in ids], kind="stable")
        for start in range(0, len(ids), batch_size):
            rows = order[start:start + batch_size]
            packed, out = self._run([ids[i] for i in rows])
            if pooling == "pooled":
                if out["pooled"] is None:
                    raise InputError(f"{self.handle} exports no pooled_output; use pooling='cls'")
                vec = out["pooled"].numpy()
            else:
                seq = out["layers"][layers].numpy() if out["layers"] is not None else out["sequence"].numpy()
                mask = packed["input_mask"].numpy().astype(np.float32)[..., None]
                if pooling == "cls":
                    vec = seq[:, 0]
                elif pooling == "mean":
                    vec = (seq * mask).sum(1) / np.maximum(mask.sum(1), 1.0)
                else:
                    vec = np.where(mask > 0, seq, -np.inf).max(1)
            result[rows] = vec
        if normalize:
            result /= np.maximum(np.linalg.norm(result, axis=1, keepdims=True), 1e-12)
        return result


def _check_texts(texts) -> List[str]:
    if isinstance(texts, str):
        raise InputError("texts must be a list of strings, not one string (wrap it: [text])")
    out = []
    for i, t in enumerate(texts):
        if isinstance(t, bytes):
            try:
                t = t.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"row {i}: bytes that are not valid UTF-8 ({e})") from None
        if not isinstance(t, str):
            raise InputError(f"row {i}: expected a string, got {type(t).__name__} ({t!r:.60})")
        out.append(t)
    return out


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
