"""tf.data both ways: a stored corpus as a dataset, strings embedded inside a dataset, and the ``tf.Example``
description of TFRecord shards.

>>> ex = hubembed.open_extraction("out/")                          # doctest: +SKIP
>>> model.fit(ex.as_dataset(32, labels=labels))                    # doctest: +SKIP
>>> enc.embed_dataset(tf.data.Dataset.from_tensor_slices(texts))   # doctest: +SKIP
>>> parse = lambda raw: tf.io.parse_single_example(raw, feature_spec(ex))   # doctest: +SKIP

``Extraction.as_dataset`` (``hubembed._corpus.dataset``) and ``Encoder.embed_dataset`` (``hubembed._pipeline.tfdata``)
are methods; this module holds ``feature_spec``.
"""

from __future__ import annotations

from typing import Any, Dict, Union

from hubembed._corpus import dataset
from hubembed._corpus.store import Extraction, open_extraction

__all__ = ["feature_spec"]


def feature_spec(ex: Union[Extraction, str]) -> Dict[str, Any]:
    """The ``tf.Example`` features of an extraction's TFRecord shards (an ``Extraction``, or its folder), for
    ``tf.io.parse_single_example(raw, feature_spec(ex))`` and ``tf.io.parse_example``.

    sentence level: ``id`` (string), ``vector`` (float32 [D]), ``text`` (string; extracted with keep_text). tokens
    / words: ``id``, ``text`` (string), ``tokens`` or ``words`` (string [n]), ``token_ids`` (int64 [n], tokens),
    ``start``, ``end`` (int64 [n], character offsets into ``text``), ``vectors`` (float32 [n, D]), ``dim`` (int64).
    Variable-length features are ``tf.io.RaggedFeature``s: dense ``[n, ...]`` tensors from ``parse_single_example``,
    ``tf.RaggedTensor`` ``[B, (n), ...]`` from ``parse_example``.

    Raises:
        InputError: the shards are not TFRecord (or the folder is not an extraction).
    """
    return dataset.feature_spec(open_extraction(ex) if isinstance(ex, str) else ex)
