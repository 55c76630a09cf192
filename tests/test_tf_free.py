"""The int8 path without TensorFlow: once the int8 model is cached, a process that cannot import TensorFlow loads,
embeds (every pooling, layer choice and output kind, long texts, tokens, words), extracts, resumes and reads back,
and its vectors equal today's int8 path (the same flatbuffer fed by TensorFlow's tokenization) to 1e-6.

The child process installs an import hook that raises for tensorflow, tensorflow_text, tensorflow_hub, tf_keras and
keras, and reports which of them ended up in ``sys.modules``.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import hubembed

BLOCK = textwrap.dedent(
    """
    import sys
    BLOCKED = ("tensorflow", "tensorflow_text", "tensorflow_hub", "tf_keras", "keras")

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"this process runs without TensorFlow: import {name} refused")

    sys.meta_path.insert(0, Block())

    def loaded():
        return sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    """
)

CHILD = BLOCK + textwrap.dedent(
    """
    import json
    import numpy as np
    import hubembed

    model, texts_file, out, corpus = sys.argv[1:5]
    with open(texts_file, encoding="utf-8") as f:
        texts = json.load(f)
    enc = hubembed.load(model, quantize="int8")
    long_text = " ".join(texts) * 3
    res = {
        "mean": enc.embed(texts, pooling="mean"),
        "cls_layer": enc.embed(texts, pooling="cls", layers=-3, special_tokens=True),
        "mix": enc.embed(texts, layers="-3:", combine="scalar_mix", weights=[0, 1, 2], pooling="max", normalize=True),
        "none": enc.embed(texts, layers="all", combine="none", pooling="mean"),
        "codes": enc.embed(texts, precision="int8", ranges=hubembed.quantize.Ranges.fit(enc.embed(texts[::-1]))),
        "binary": enc.embed(texts, precision="ubinary", truncate_dim=8),
        "window": enc.embed([long_text], long="window", stride=32),
        "truncate": enc.embed([long_text], long="truncate"),
        "pairs": enc.embed([(texts[0], texts[1]), (texts[2], texts[3])], pooling="mean"),
    }
    if enc.signature.has_pooled_output:
        res["pooled"] = enc.embed(texts, pooling="pooled")
    tokens = enc.embed_tokens(texts[:20] + [long_text])
    words = enc.embed_words(texts[:20], subword="mean", layers="-2:")
    res["tokens"] = np.concatenate([t.vectors for t in tokens])
    res["token_spans"] = np.concatenate([t.spans for t in tokens])
    res["words"] = np.concatenate([w.vectors for w in words])
    res["word_spans"] = np.concatenate([w.spans for w in words])
    job = dict(model=model, quantize="int8", shard_size=40, quiet=True, cache=out + "-features")  # a fresh cache
    first = hubembed.extract(corpus, out, **job)
    again = hubembed.extract(corpus, out, resume=True, **job)
    res["extracted"] = hubembed.open_extraction(out).vectors()
    from hubembed import cli  # the command as a user types it, without the feature cache

    assert cli.main(["extract", corpus, "-o", out + "-cli", "--model", model, "--quantize", "int8", "--no-cache"]) == 0
    assert np.array_equal(hubembed.open_extraction(out + "-cli").vectors(), res["extracted"])
    assert cli.main(["embed", "--model", model, "--quantize", "int8", "--pooling", "cls", texts[0]]) == 0
    versions = hubembed.open_extraction(out + "-cli").header["versions"]
    assert "tensorflow" not in versions and versions["ai_edge_litert"], versions
    np.savez(out + ".npz", **res)
    print(json.dumps({"loaded": loaded(), "preprocessor": type(enc.preprocessor).__name__,
                      "rows": [first["rows"], again["rows"]],
                      "encoded": [first["summary"]["texts_encoded_this_run"], again["summary"]["rows_this_run"]]}))
    """
)


def _run_child(tmp_path, model, texts, corpus_lines):
    (tmp_path / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(corpus_lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script), model, str(tmp_path / "texts.json"), str(out), str(corpus)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=str(tmp_path),  # the package, not the checkout, on sys.path first
        env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(hubembed.__file__))},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return report, dict(np.load(str(out) + ".npz"))


def _with_tensorflow(enc, texts, corpus_lines, tmp_path):
    """The same calls in this process, on the same int8 model fed by TensorFlow's tokenization."""
    enc.preprocessor = enc.preprocessor.twin()  # the TensorFlow preprocessor of the same vocabulary and flavour
    enc._word_tokenizer = None
    long_text = " ".join(texts) * 3
    ref = {
        "mean": enc.embed(texts, pooling="mean"),
        "cls_layer": enc.embed(texts, pooling="cls", layers=-3, special_tokens=True),
        "mix": enc.embed(texts, layers="-3:", combine="scalar_mix", weights=[0, 1, 2], pooling="max", normalize=True),
        "none": enc.embed(texts, layers="all", combine="none", pooling="mean"),
        "codes": enc.embed(texts, precision="int8", ranges=hubembed.quantize.Ranges.fit(enc.embed(texts[::-1]))),
        "binary": enc.embed(texts, precision="ubinary", truncate_dim=8),
        "window": enc.embed([long_text], long="window", stride=32),
        "truncate": enc.embed([long_text], long="truncate"),
        "pairs": enc.embed([(texts[0], texts[1]), (texts[2], texts[3])], pooling="mean"),
    }
    if enc.signature.has_pooled_output:
        ref["pooled"] = enc.embed(texts, pooling="pooled")
    tokens = enc.embed_tokens(texts[:20] + [long_text])
    words = enc.embed_words(texts[:20], subword="mean", layers="-2:")
    ref["tokens"] = np.concatenate([t.vectors for t in tokens])
    ref["token_spans"] = np.concatenate([t.spans for t in tokens])
    ref["words"] = np.concatenate([w.vectors for w in words])
    ref["word_spans"] = np.concatenate([w.spans for w in words])
    ref["extracted"] = enc.embed(corpus_lines)
    return ref


def _assert_same(got, ref):
    assert sorted(got) == sorted(ref)
    for k in ref:
        assert got[k].shape == ref[k].shape, k
        diff = np.abs(got[k].astype(np.float64) - ref[k].astype(np.float64)).max() if ref[k].size else 0.0
        assert diff <= 1e-6, f"{k}: max |diff| {diff}"


@pytest.mark.slow
def test_minilm_int8_runs_without_tensorflow_and_equals_the_tensorflow_int8_path(stsb_sentences, tmp_path):
    hubembed.load("minilm", quantize="int8")  # converts once into this session's cache, if no test did
    texts = list(stsb_sentences[:64]) + ["Crème brûlée\u200b, naïve café!", "", "東京都 😀 don't", "x" * 120]
    corpus = list(stsb_sentences[100:200])
    report, got = _run_child(tmp_path, "minilm", texts, corpus)
    expected = {"loaded": [], "preprocessor": "PyPreprocessor", "rows": [100, 100], "encoded": [len(set(corpus)), 0]}
    assert report == expected
    ref = _with_tensorflow(hubembed.load("minilm", quantize="int8"), texts, corpus, tmp_path)
    _assert_same(got, ref)


@pytest.mark.slow
def test_a_model_outside_the_registry_finds_its_int8_model_by_its_files(tiny_models, stsb_sentences, tmp_path):
    """No registry pin: the first int8 load (with TensorFlow) records the files' key, the next needs no TensorFlow."""
    path = tiny_models["tf2_dict"]
    hubembed.load(path, quantize="int8")
    texts = list(stsb_sentences[:24]) + ["Crème brûlée\u200b, naïve café!", ""]
    corpus = list(stsb_sentences[300:350])
    report, got = _run_child(tmp_path, path, texts, corpus)
    assert report["loaded"] == [] and report["preprocessor"] == "PyPreprocessor"
    _assert_same(got, _with_tensorflow(hubembed.load(path, quantize="int8"), texts, corpus, tmp_path))


# One process per framework: forking Spark's JVM launcher while Beam's gRPC threads run ("Other threads are
# currently calling into gRPC, skipping fork() handlers") made the gateway exit at start now and then (seen in CI).
WORKERS = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import hubembed

    mode, texts_file, out = sys.argv[1:4]
    with open(texts_file, encoding="utf-8") as f:
        texts = json.load(f)
    if mode == "beam":
        import apache_beam as ab
        from apache_beam.ml.inference.base import RunInference
        from hubembed import beam

        with open(out + ".txt", "w", encoding="utf-8") as f:
            f.write("\\n".join(texts) + "\\n")
        beam.extract(out + ".txt", out + "-beam", model="minilm", quantize="int8")
        with ab.Pipeline() as p:
            _ = (
                p | ab.Create(texts) | RunInference(beam.ModelHandler("minilm", quantize="int8"))
                | ab.Map(lambda r: json.dumps([r.example, np.asarray(r.inference).tolist()]))
                | ab.io.WriteToText(out + "-ri.jsonl", shard_name_template="")
            )
        with open(out + "-ri.jsonl", encoding="utf-8") as f:
            got = dict(json.loads(line) for line in f)
        np.savez(
            out + "-beam.npz",
            beam_extract=hubembed.open_extraction(out + "-beam").vectors(),
            run_inference=np.array([got[t] for t in texts], np.float32),
        )
    else:
        from pyspark.sql import SparkSession
        from hubembed import spark as hspark

        session = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
        df = session.createDataFrame([(str(i), t) for i, t in enumerate(texts)], ["id", "text"])
        rows = hspark.embed(df, model="minilm", quantize="int8").orderBy("id").collect()
        session.stop()
        ordered = sorted(rows, key=lambda r: int(r["id"]))
        np.savez(out + "-spark.npz", spark=np.stack([np.asarray(r["vector"], np.float32) for r in ordered]))
    print(json.dumps({"loaded": loaded()}))
    """
)


@pytest.mark.slow
def test_beam_and_spark_workers_run_the_int8_model_without_tensorflow(stsb_sentences, tmp_path):
    """Every Python process of the job (the driver, Beam's DirectRunner, Spark's Python workers) starts with the
    import hook, from a ``sitecustomize`` module on PYTHONPATH."""
    hubembed.load("minilm", quantize="int8")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK, encoding="utf-8")
    texts = list(stsb_sentences[500:540])
    (tmp_path / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    (tmp_path / "workers.py").write_text("from sitecustomize import loaded\n" + WORKERS, encoding="utf-8")
    root = os.path.dirname(os.path.dirname(hubembed.__file__))
    env = {
        **os.environ,
        "PYTHONPATH": f"{site}{os.pathsep}{root}",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    want = hubembed.load("minilm", quantize="int8").embed(texts)
    for mode, keys in (("beam", ("beam_extract", "run_inference")), ("spark", ("spark",))):
        proc = subprocess.run(
            [sys.executable, str(tmp_path / "workers.py"), mode, str(tmp_path / "texts.json"), str(tmp_path / "out")],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=str(tmp_path),
            env=env,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"loaded": []}, mode
        got = np.load(tmp_path / f"out-{mode}.npz")
        for k in keys:
            assert got[k].shape == want.shape and np.abs(got[k] - want).max() <= 1e-6, k


NEEDS_TF = BLOCK + textwrap.dedent(
    """
    import json
    import hubembed
    from hubembed.cli import main

    out = {}
    try:
        hubembed.load(sys.argv[1])
    except hubembed.MissingDependencyError as e:
        out["load"] = str(e)
    try:
        from hubembed.keras import HubFeatureLayer  # noqa: F401
    except hubembed.MissingDependencyError as e:
        out["keras"] = str(e)
    out["convert"] = main(["convert", sys.argv[1], sys.argv[2]])
    out["export"] = main(["export", sys.argv[1], sys.argv[2], "--format", "litert"])
    out["loaded"] = loaded()
    print(json.dumps(out))
    """
)


def test_what_needs_tensorflow_says_so_before_any_work(tiny_models, tmp_path):
    script = tmp_path / "needs_tf.py"
    script.write_text(NEEDS_TF, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script), tiny_models["tf2_dict"], str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(tmp_path),
        env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(hubembed.__file__))},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "float32 model" in got["load"] and "pip install hubembed" in got["load"]
    assert "hubembed.keras.HubFeatureLayer needs TensorFlow" in got["keras"]
    assert got["convert"] == 1 and got["export"] == 1 and got["loaded"] == []
    assert proc.stderr.count("needs TensorFlow") == 2 and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
