"""Tiny Hub-format encoders and preprocessors for anyone's tests (no download).

Each builder writes a folder ``<out_dir>/encoder`` + ``<out_dir>/preprocess``
(the layout ``hubembed.load`` pairs automatically) and returns the encoder path::

    >>> from hubembed import testing
    >>> path = testing.build("tf2_dict", tmp_dir)        # doctest: +SKIP
    >>> hubembed.load(path).embed(["hello world"]).shape # doctest: +SKIP
    (1, 16)

Kinds (``KINDS``):

* ``tf2_dict``: TF2 dict-style with ``encoder_outputs`` and ``.mlm`` (BERT v3/v4);
* ``tf2_dict_no_layers``: TF2 dict-style without ``encoder_outputs``;
* ``tf2_list``: list-style v1/v2 (``[ids, mask, segment_ids] -> [pooled, sequence]``);
* ``tf1_hub``: a TF1 Hub module with ``tokens``, ``tokenization_info``, ``default`` and ``mlm``.

``GARDEN_KINDS`` are written by Model Garden's own exporter (``export_tfhub_lib``,
needs the ``garden`` extra), the code that wrote the tfhub.dev BERT v4 and ALBERT v3
encoders: ``garden_bert`` (Model Garden's "gelu", the tanh approximation) and
``garden_albert`` (one shared block, a 8 -> 16 embedding projection).

All kinds share one tiny configuration (3 layers, hidden 16, 2 heads, the vocabulary
of ``writers.write_tiny_vocab``) and the same random weights for a given seed,
so their outputs agree with each other. A few seconds each.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Dict, Optional

from hubembed import garden
from hubembed._formats import names, preprocessor, writers
from hubembed.errors import InputError

KINDS = {"tf2_dict": "dict", "tf2_dict_no_layers": "dict_no_layers", "tf2_list": "list", "tf1_hub": "tf1"}
GARDEN_KINDS = ("garden_bert", "garden_albert")


def tiny_config(vocab_size: int, num_layers: int = 3) -> names.BertConfig:
    return names.BertConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        num_layers=num_layers,
        num_heads=2,
        intermediate_size=32,
        max_positions=64,
        type_vocab_size=2,
    )


def build(
    kind: str,
    out_dir: str,
    *,
    seed: int = 0,
    num_layers: int = 3,
    lower_case: bool = True,
    with_mlm: bool = True,
    preprocess_from: Optional[str] = None,
    activation: str = "gelu",
) -> str:
    """Write a tiny encoder of ``kind`` + its preprocessor under ``out_dir``; returns the encoder folder.

    activation (hubembed's own kinds): "gelu" (exact), "gelu_tanh" or "relu".
    """
    if kind not in KINDS and kind not in GARDEN_KINDS:
        raise InputError(f"kind {kind!r}; valid: {', '.join(list(KINDS) + list(GARDEN_KINDS))}")
    os.makedirs(out_dir, exist_ok=True)
    vocab = writers.write_tiny_vocab(os.path.join(out_dir, "vocab.txt"))
    with open(vocab, encoding="utf-8") as f:
        n = sum(1 for _ in f)
    encoder = os.path.join(out_dir, "encoder")
    if kind in GARDEN_KINDS:
        _export_garden(kind, n, encoder, vocab, lower_case, seed, num_layers)
    else:
        cfg = tiny_config(n, num_layers)
        cfg.activation = activation
        weights = names.random_weights(cfg, seed=seed, with_mlm=with_mlm and kind != "tf2_list")
        writers.save_encoder(weights, cfg, encoder, vocab_file=vocab, do_lower_case=lower_case, style=KINDS[kind])
    if preprocess_from:  # an identical preprocessor saved already: copying it saves seconds
        shutil.copytree(preprocess_from, os.path.join(out_dir, "preprocess"))
    else:
        preprocessor.save_preprocessor(vocab, lower_case, os.path.join(out_dir, "preprocess"), seq_length=32)
    return encoder


def _export_garden(
    kind: str, vocab_size: int, out: str, vocab: str, lower_case: bool, seed: int, num_layers: int
) -> None:
    """A tiny encoder exported by Model Garden's export_tfhub_lib from a checkpoint of random weights."""

    import tensorflow as tf
    import tf_keras

    garden.require()
    from official.nlp.configs import encoders
    from official.nlp.tools import export_tfhub_lib

    tf_keras.utils.set_random_seed(seed)
    common = dict(
        vocab_size=vocab_size,
        hidden_size=16,
        num_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        hidden_activation="gelu",
        initializer_range=0.2,
    )
    if kind == "garden_bert":
        cfg = encoders.EncoderConfig(type="bert", bert=encoders.BertEncoderConfig(**common))
    else:
        cfg = encoders.EncoderConfig(type="albert", albert=encoders.AlbertEncoderConfig(embedding_width=8, **common))
    encoder = encoders.build_encoder(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        path = tf.train.Checkpoint(encoder=encoder).save(os.path.join(tmp, "ckpt"))
        export_tfhub_lib.export_model(
            out,
            encoder_config=cfg,
            model_checkpoint_path=path,
            with_mlm=False,
            vocab_file=vocab,
            do_lower_case=lower_case,
        )


def build_all(root: str, **kwargs: Any) -> Dict[str, str]:
    """Every kind under ``root/<kind>``: {kind: encoder folder}."""
    out: Dict[str, str] = {}
    pre: Optional[str] = None
    for kind in KINDS:
        out[kind] = build(kind, os.path.join(root, kind), preprocess_from=pre, **kwargs)
        pre = pre or os.path.join(root, kind, "preprocess")
    return out
