"""Corpus jobs: read records from a file (``inputs``), embed them chunk by chunk (``extract``, with the feature
cache ``featurecache``), render shards (``shards``: npy, Parquet, TFRecord) and write them with a manifest
(``store``), resumably; the Beam pipeline (``hubembed.beam``) shares all of it."""
