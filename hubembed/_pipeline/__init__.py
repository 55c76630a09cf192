"""The per-text pipeline: spec -> tokens -> rows and batches -> backend -> stitched tokens -> pooled vectors.

``spec`` (what decides the numbers; ``prompts``: a string before each text) -> ``tokens`` (texts to
word-piece ids and word spans) -> ``batching`` (rows, windows of long texts, length-sorted batches) ->
``backends`` (one typed call into the encoder) -> ``run`` (batches through the backend, windows stitched
back into texts) -> ``layers`` (select + combine) and ``pooling`` (masked pooling) -> ``transform`` (a
fitted linear map).
"""
