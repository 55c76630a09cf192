"""Reliability: one Encoder shared by 8 threads gives exactly the sequential results; the audit refuses models
that touch files or run Python."""

import os
import threading

import numpy as np
import pytest

import hubembed

WORDS = "the quick brown fox jumps over lazy dog good movie great film cat sat mat night hello world".split()


def _texts(seed, n=24):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(1, 30))) for _ in range(n)]


def _jobs():
    return [
        ("embed", dict(layers=-1, pooling="mean")),
        ("embed", dict(layers="-2:", combine="concat", pooling="max")),
        ("embed", dict(layers=0, pooling="attention")),  # the Model Garden rebuild, attention path
        ("embed", dict(layers="embeddings", pooling="mean")),  # the rebuild, embedding output
        ("embed_words", dict(subword="mean")),
        ("embed_tokens", dict(layers=1)),
        ("embed", dict(pooling="cls", normalize=True)),
        ("encode", dict()),
    ]


def _run(enc, method, kw, texts):
    out = getattr(enc, method)(texts, **kw)
    if method == "encode":
        return [out.sequence, out.pooled, out.mask]
    if method in ("embed_words", "embed_tokens"):
        return [x for item in out for x in (item.vectors, np.asarray(item.spans))]
    return [out]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tf2_dict", "tf1_hub"])
def test_one_encoder_shared_by_8_threads_equals_sequential(tiny_models, kind):
    enc = hubembed.load(tiny_models[kind])  # fresh: lazy parts (rebuild, word tokenizer, tf.functions) built racing
    jobs = [(m, kw, _texts(i)) for i, (m, kw) in enumerate(_jobs())]
    results, errors = [None] * len(jobs), []
    barrier = threading.Barrier(len(jobs))

    def work(i):
        try:
            barrier.wait()
            for _ in range(3):
                results[i] = _run(enc, *jobs[i])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    for i, job in enumerate(jobs):
        for got, ref in zip(results[i], _run(enc, *job)):
            if ref is None:
                assert got is None
            else:
                assert np.array_equal(got, ref), (i, job[0], job[1])


def _evil_models(root, target):
    """Two SavedModels that look like encoders' callables but write a file / run Python when called."""
    import tensorflow as tf

    class Writes(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, texts):
            tf.io.write_file(target, tf.strings.reduce_join(texts))
            return {"pooled_output": tf.zeros([tf.shape(texts)[0], 4])}

    class RunsPython(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, x):
            return tf.py_function(lambda v: v * 2, [x], tf.float32)

    paths = {}
    for name, module in (("writes", Writes()), ("python", RunsPython())):
        paths[name] = os.path.join(root, name)
        tf.saved_model.save(module, paths[name])
    return paths


def test_the_audit_refuses_a_model_that_writes_a_file_and_passes_real_encoders(tiny_models, minilm, tmp_path, capsys):
    from hubembed._hub import audit as inspection
    from hubembed.cli import main
    from hubembed.errors import UntrustedModelError

    target = str(tmp_path / "pwned.txt")
    evil = _evil_models(str(tmp_path), target)
    a = inspection.audit(evil["writes"])
    assert not a.ok and [(f.op, f.why) for f in a.findings] == [("WriteFile", "writes a file")]
    assert "__call__" in a.findings[0].where
    b = inspection.audit(evil["python"])
    assert {f.op for f in b.findings} == {"EagerPyFunc"} and b.findings[0].why == "runs Python code"
    refused = r"(?s)was not loaded.*WriteFile in function .*__call__.*writes a file"
    with pytest.raises(UntrustedModelError, match=refused):
        hubembed.load(evil["writes"])
    assert not os.path.exists(target)  # refused before anything ran
    # Trusting it loads it, and then it does write the file when called: the audit is what stood between.
    import tensorflow_hub as hub

    m = hub.load(evil["writes"])
    m(tf_strings(["leaked"]))
    assert open(target).read() == "leaked"
    # Every real encoder and preprocessor kind passes, and so does the embedded model with trust="audit".
    for kind, path in tiny_models.items():
        for folder in (path, os.path.join(os.path.dirname(path), "preprocess")):
            if os.path.exists(folder):
                assert inspection.audit(folder).ok, (kind, inspection.audit(folder).describe())
    hubembed.load(tiny_models["tf2_dict"], trust="audit")
    hubembed.load("minilm", trust="audit")
    assert main(["inspect", "--audit", evil["writes"]]) == 3
    out = capsys.readouterr().out
    assert "FLAGGED WriteFile in function" in out and "writes a file" in out
    assert main(["inspect", "--audit", tiny_models["tf2_dict"]]) == 0
    out = capsys.readouterr().out
    assert "nothing flagged" in out and "RestoreV2" in out
    with pytest.raises(Exception, match="trust='maybe'; valid: registry, audit, any"):
        hubembed.load(tiny_models["tf2_dict"], trust="maybe")


def tf_strings(values):
    import tensorflow as tf

    return tf.constant(values)


def test_the_embedded_model_is_pinned_by_its_weights_fingerprint(minilm, monkeypatch):
    from hubembed import registry
    from hubembed.errors import StaleCacheError

    entry = registry.get("minilm")
    assert len(entry.weights_sha256) == 64 and minilm.weights_sha256 == entry.weights_sha256
    import dataclasses

    real = registry.find
    monkeypatch.setattr(
        registry, "find", lambda h: dataclasses.replace(entry, weights_sha256="0" * 64) if h == "minilm" else real(h)
    )
    with pytest.raises(StaleCacheError, match="(?s)weights fingerprint .* the registry pins 0000.*rm -rf"):
        hubembed.load("minilm")


def _long_text(n_chars, seed=0):
    rng = np.random.default_rng(seed)
    out, size = [], 0
    while size < n_chars:
        w = str(rng.choice(WORDS))
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:n_chars]


@pytest.mark.parametrize("pooling", ["mean", "max", "mean_max", "mean_sqrt_len", "cls", "pooled", "attention"])
def test_a_long_text_pooled_window_by_window_equals_the_stitched_text(tiny_encoders, monkeypatch, pooling):
    from hubembed._pipeline import pooling as streaming

    enc = tiny_encoders["tf2_dict"]
    texts = [_long_text(12000), "a short one", _long_text(9000, seed=1)]
    for special in (True, False):
        for layers, combine in ((-1, "mean"), ("-2:", "concat"))[: 1 if pooling == "pooled" else 2]:
            kw = dict(pooling=pooling, special_tokens=special, layers=layers, combine=combine)
            streamed, info = enc.embed(texts, return_info=True, **kw)
            assert info.n_windows[0] > streaming.STREAM_WINDOWS
            monkeypatch.setattr(streaming, "STREAM_WINDOWS", 10**9)
            stitched = enc.embed(texts, **kw)
            monkeypatch.undo()
            np.testing.assert_allclose(streamed, stitched, atol=2e-5, rtol=1e-5, err_msg=str(kw))


@pytest.mark.slow
def test_a_million_character_text_is_embedded_with_bounded_memory(tiny_encoders):
    """Peak numpy memory (tracemalloc) for one 1,000,000-character text is about that of a 100,000-character
    one: windows are pooled as they arrive, the text's token vectors are never held whole."""
    import tracemalloc

    enc = tiny_encoders["tf2_dict"]
    peaks = {}
    for n in (100_000, 1_000_000):
        text = _long_text(n)
        tracemalloc.start()
        v, info = enc.embed([text], return_info=True, batch_size=64)
        peaks[n] = tracemalloc.get_traced_memory()[1] - len(text.encode("utf-8"))  # minus the text itself
        tracemalloc.stop()
        assert v.shape == (1, 16) and np.isfinite(v).all() and info.truncated[0] == 0
        assert info.n_windows[0] > 1000 if n == 1_000_000 else True
    assert peaks[1_000_000] < 4 * peaks[100_000], peaks  # 10x the text; the tokens' vectors alone would be 10x
