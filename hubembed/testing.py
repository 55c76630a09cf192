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

All kinds share one tiny configuration (3 layers, hidden 16, 2 heads, the vocabulary
of ``hubformat.write_tiny_vocab``) and the same random weights for a given seed,
so their outputs agree with each other. A few seconds each.
"""

from __future__ import annotations

import os
import shutil

from hubembed import hubformat, preprocess

KINDS = {"tf2_dict": "dict", "tf2_dict_no_layers": "dict_no_layers", "tf2_list": "list", "tf1_hub": "tf1"}


def tiny_config(vocab_size: int, num_layers: int = 3) -> hubformat.BertConfig:
    return hubformat.BertConfig(vocab_size=vocab_size, hidden_size=16, num_layers=num_layers, num_heads=2,
                                intermediate_size=32, max_positions=64, type_vocab_size=2)


def build(kind: str, out_dir: str, *, seed: int = 0, num_layers: int = 3, lower_case: bool = True,
          with_mlm: bool = True, preprocess_from: str = None) -> str:
    """Write a tiny encoder of ``kind`` + its preprocessor under ``out_dir``; returns the encoder folder."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}; valid: {', '.join(KINDS)}")
    os.makedirs(out_dir, exist_ok=True)
    vocab = hubformat.write_tiny_vocab(os.path.join(out_dir, "vocab.txt"))
    with open(vocab, encoding="utf-8") as f:
        n = sum(1 for _ in f)
    cfg = tiny_config(n, num_layers)
    weights = hubformat.random_weights(cfg, seed=seed, with_mlm=with_mlm and kind != "tf2_list")
    encoder = os.path.join(out_dir, "encoder")
    hubformat.save_encoder(weights, cfg, encoder, vocab_file=vocab, do_lower_case=lower_case, style=KINDS[kind])
    if preprocess_from:  # an identical preprocessor saved already: copying it saves seconds
        shutil.copytree(preprocess_from, os.path.join(out_dir, "preprocess"))
    else:
        preprocess.save_preprocessor(vocab, lower_case, os.path.join(out_dir, "preprocess"), seq_length=32)
    return encoder


def build_all(root: str, **kwargs) -> dict:
    """Every kind under ``root/<kind>``: {kind: encoder folder}."""
    out, pre = {}, None
    for kind in KINDS:
        out[kind] = build(kind, os.path.join(root, kind), preprocess_from=pre, **kwargs)
        pre = pre or os.path.join(root, kind, "preprocess")
    return out
