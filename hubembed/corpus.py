"""Embed a whole corpus to disk: streaming, sharded, resumable, with progress.

    hubembed extract corpus.txt -o out/ --model minilm --pooling mean
    hubembed.extract("corpus.txt", "out/", model="minilm")

The corpus is read as a stream (``hubembed.inputs``) and embedded ``shard_size`` texts at a
time (length-sorted batches within each chunk, as ``Encoder.embed``); each chunk becomes one
shard written atomically, followed by the manifest (``hubembed.store``). Memory is bounded by
one chunk, whatever the corpus size. With ``resume=True`` a run continues after the last
complete shard of an earlier run (killed at any point), and the result equals an uninterrupted
run: chunks fall on the same boundaries, so every batch is the same.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from typing import Optional

import numpy as np

from hubembed import inputs, store
from hubembed.errors import InputError

log = logging.getLogger("hubembed")

DTYPES = ("float32", "float16")


def weights_fingerprint(obj) -> str:
    """sha256 over the model's variables (sorted names, dtypes, shapes, bytes): the same weights, the same value."""
    h = hashlib.sha256()
    for v in sorted(getattr(obj, "variables", None) or [], key=lambda v: v.name):
        a = v.numpy()
        h.update(f"{v.name}|{a.dtype}|{a.shape}|".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _versions() -> dict:
    import tensorflow as tf

    import hubembed

    return {"hubembed": hubembed.__version__, "tensorflow": tf.__version__, "numpy": np.__version__}


def _count_lines(path: str) -> Optional[int]:
    if path == "-" or path.endswith(".parquet"):
        return None
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def extract(input_path: str, out: str, *, model: str = "minilm", encoder=None, layers=-1, combine: str = "mean",
            pooling: str = "mean", weights=None, gamma: float = 1.0, special_tokens: bool = True,
            normalize: bool = False, attention_layer=None, dtype: str = "float32", batch_size: int = 32,
            max_tokens: Optional[int] = None, long: str = "window", shard_size: int = 10000, resume: bool = False,
            column: Optional[str] = None, id_column: Optional[str] = None, input_format: Optional[str] = None,
            on_bad: str = "fail", on_empty: str = "skip", quiet: bool = False, preprocess=None,
            seq_length: Optional[int] = None, backend: str = "auto") -> dict:
    """Embed every text of ``input_path`` into shards under ``out``; returns the final manifest.

    Extraction arguments as ``Encoder.embed``; dtype: float32 | float16 on disk; shard_size:
    texts per shard (and per chunk in memory); resume: continue an interrupted run (its
    model, weights and spec must match). ``encoder``: an already loaded ``Encoder``.
    """
    if dtype not in DTYPES:
        raise InputError(f"dtype={dtype!r}; valid: {', '.join(DTYPES)}")
    if not isinstance(shard_size, int) or shard_size < 1:
        raise InputError(f"shard_size={shard_size!r}; valid: a positive number of texts")
    reader = inputs.open_input(input_path, column=column, id_column=id_column, fmt=input_format, on_bad=on_bad,
                               on_empty=on_empty)
    if encoder is None:
        import hubembed

        encoder = hubembed.load(model, preprocess=preprocess, seq_length=seq_length, backend=backend)
    embed_args = dict(layers=layers, combine=combine, pooling=pooling, weights=weights, gamma=gamma,
                      special_tokens=special_tokens, normalize=normalize, long=long, attention_layer=attention_layer)
    probe, info = encoder.embed(["probe"], return_info=True, **embed_args)  # validates the arguments first
    header = {
        "model": encoder.handle,
        "weights_sha256": weights_fingerprint(encoder.obj),
        "preprocessor": encoder.preprocessor.source,
        "spec": {**{k: v for k, v in info.spec.items() if k not in ("model", "hubembed")}, "dtype": dtype,
                 "dim": int(probe.shape[-1]), "shard_size": shard_size},
        "input": {**reader.describe(), "path": os.path.abspath(input_path) if input_path != "-" else "-"},
        "versions": _versions(),
    }
    st = store.ShardStore(out, header, resume=resume)
    if st.shards:
        log.info("hubembed: resuming %s after %d rows (%d shards intact)", out, st.rows_done, len(st.shards))
    return _run(encoder, reader, st, embed_args, dtype, batch_size, max_tokens, shard_size, quiet)


def _run(encoder, reader, st, embed_args, dtype, batch_size, max_tokens, shard_size, quiet) -> dict:
    from tqdm.auto import tqdm

    start = time.perf_counter()
    done_lines, done_rows = st.lines_done, st.rows_done
    total = _count_lines(reader.path) if reader.path != "-" else None
    bar = tqdm(total=total, initial=done_lines if total else 0, unit=" lines", disable=quiet, dynamic_ncols=True,
               desc=f"extract {os.path.basename(reader.path)}", smoothing=0.1)
    chunk, n_new, last_line = [], 0, done_lines
    recorded = set()  # skipped lines already listed in the manifest

    def new_skips(up_to: float):
        out = [s for s in reader.skipped if done_lines < s[0] <= up_to and s[0] not in recorded]
        recorded.update(s[0] for s in out)
        return out

    def flush():
        nonlocal chunk, n_new
        vecs = encoder.embed([r.text for r in chunk], batch_size=batch_size, max_tokens=max_tokens, **embed_args)
        st.write_shard(vecs.astype(dtype), [r.id for r in chunk], chunk[-1].line, new_skips(chunk[-1].line))
        n_new += len(chunk)
        bar.set_postfix(rows=st.rows_done, shards=len(st.shards))
        chunk = []

    for rec in reader.records():
        if rec.line <= done_lines:
            continue
        if rec.row != done_rows + n_new + len(chunk):
            raise store.OutputError(f"{st.out}: the input changed since the interrupted run (row {rec.row} at line "
                                    f"{rec.line}); start a new extraction")
        chunk.append(rec)
        if total:
            bar.update(rec.line - last_line)
        last_line = rec.line
        if len(chunk) == shard_size:
            flush()
    if chunk:
        flush()
    if total:
        bar.update(max(0, total - last_line))
    bar.close()
    seconds = time.perf_counter() - start
    st.skipped.extend([list(s) for s in new_skips(float("inf"))])
    summary = {"rows": st.rows_done, "rows_this_run": n_new, "shards": len(st.shards),
               "skipped": len(st.skipped), "seconds_this_run": round(seconds, 3),
               "rows_per_second_this_run": round(n_new / seconds, 1) if seconds > 0 else None}
    m = st.finish(summary)
    reasons = {}
    for _, why in st.skipped:
        key = why.split(" (")[0]
        reasons[key] = reasons.get(key, 0) + 1
    skipped_text = ", ".join(f"{n} {k}" for k, n in reasons.items()) or "none"
    log.info("hubembed: extracted %d rows into %s (%d shards; %d this run, %.1f rows/s; skipped: %s)",
             st.rows_done, st.out, len(st.shards), n_new, summary["rows_per_second_this_run"] or 0, skipped_text)
    return m
