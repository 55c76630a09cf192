"""load(..., quantize="int8" | "bf16"): quantized compute against float32 on real weights, every output kind,
every encoder kind, what is refused and why, and what the manifest and caches record."""

import json
import os

import numpy as np
import pytest

import hubembed
from hubembed import _engines
from hubembed import _load as load_mod
from hubembed._formats import lite
from hubembed._pipeline.pooling import POOLINGS
from hubembed.errors import InputError

# Measured on the 1,000 STS-B test sentences of the benchmark (benchmarks/bench_int8.py): mean cosine 0.9987 to
# float32, the lowest 0.9977. The bounds leave a margin for other sentences and CPUs (other int8 kernels).
MEAN_COSINE = 0.995
MIN_COSINE = 0.98


def _cos(a, b):
    a, b = np.asarray(a, np.float64).reshape(len(a), -1), np.asarray(b, np.float64).reshape(len(b), -1)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def int8(minilm):
    return hubembed.load("minilm", quantize="int8")


@pytest.fixture(scope="module")
def texts(stsb_sentences):
    return stsb_sentences[:200]


def test_int8_vectors_agree_with_float32_on_real_weights(minilm, int8, texts):
    cos = _cos(int8.embed(texts), minilm.embed(texts))
    assert cos.mean() >= MEAN_COSINE and cos.min() >= MIN_COSINE, (cos.mean(), cos.min())
    assert not np.allclose(int8.embed(texts[:5]), minilm.embed(texts[:5]), atol=1e-4)  # int8 did compute
    assert int8.quantize == "int8" and int8.obj is None  # the float32 weights are not kept
    rec = lite.read_record(lite.cache_path(minilm.weights_sha256, "hub"))
    assert rec["probe_cosine"] >= _engines.MIN_AGREEMENT and rec["signature"]["num_layers"] == 6


@pytest.mark.parametrize("pooling", [p for p in POOLINGS if p != "attention"])
def test_every_pooling_runs_and_agrees(minilm, int8, texts, pooling):
    kw = dict(pooling=pooling, layers="-2:", combine="mean")
    if pooling in ("pooled", "first_last_avg"):  # these choose their layers themselves
        kw = dict(pooling=pooling)
    got, want = int8.embed(texts[:40], **kw), minilm.embed(texts[:40], **kw)
    assert got.shape == want.shape
    assert _cos(got, want).mean() >= MEAN_COSINE


def test_layers_tokens_words_long_texts_and_pairs(minilm, int8, texts):
    axis = int8.embed(texts[:8], layers="0,2,-1", combine="none")
    assert axis.shape == minilm.embed(texts[:8], layers="0,2,-1", combine="none").shape == (8, 3, 384)
    tok, tok32 = int8.embed_tokens(texts[:4]), minilm.embed_tokens(texts[:4])
    assert [t.tokens for t in tok] == [t.tokens for t in tok32]
    assert min(_cos(a.vectors, b.vectors).min() for a, b in zip(tok, tok32)) >= 0.95
    words, words32 = int8.embed_words(texts[:4]), minilm.embed_words(texts[:4])
    assert [w.words for w in words] == [w.words for w in words32]
    long = " ".join(texts[:60])  # about 700 word pieces: three windows of 256
    got, want = int8.embed([long], long="window"), minilm.embed([long], long="window")
    assert _cos(got, want)[0] >= MEAN_COSINE
    pairs = list(zip(texts[:6:2], texts[1:6:2]))
    assert _cos(int8.embed(pairs), minilm.embed(pairs)).mean() >= MEAN_COSINE
    out = int8.encode(texts[:3])
    assert out.layers.shape[0] == 6 and out.pooled.shape == (3, 384) and out.embeddings is None


def test_what_int8_does_not_compute_is_refused_with_the_reason(int8, texts):
    for call in (
        lambda: int8.embed(texts[:2], pooling="attention"),
        lambda: int8.embed(texts[:2], layers="embeddings"),
        lambda: int8.encode(texts[:2], embeddings=True),
        lambda: int8.internals(texts[:2]),
    ):
        with pytest.raises(InputError, match="quantize='int8' computes the encoder's own outputs"):
            call()
    with pytest.raises(InputError, match="a SavedModel export is one float32"):
        int8.export("never-written")
    assert not os.path.exists("never-written")
    with pytest.raises(InputError, match="inference only"):
        int8.backend_for(None)(
            np.ones((1, 3), np.int32), np.ones((1, 3), np.int32), np.zeros((1, 3), np.int32), training=True
        )
    with pytest.raises(InputError, match=r"quantize='int4'; valid: 'int8', 'bf16' or None"):
        hubembed.load("minilm", quantize="int4")


def test_bf16_is_refused_before_loading_on_a_cpu_without_it(monkeypatch):
    loads = []
    monkeypatch.setattr(_engines, "cpu_flags", lambda: {"avx2", "fma"})
    monkeypatch.setattr(load_mod.resolve, "resolve", lambda *a, **k: loads.append(a))
    with pytest.raises(InputError, match="no bf16 instructions .*no avx512_bf16 or amx_bf16.*use quantize='int8'"):
        hubembed.load("minilm", quantize="bf16")
    with pytest.raises(InputError, match="no bf16 instructions"):
        hubembed.extract("in.txt", "out", quantize="bf16")
    assert loads == []


@pytest.mark.slow
@pytest.mark.skipif(not _engines.cpu_flags() & {"avx512_bf16", "amx_bf16"}, reason="this CPU has no bf16 instructions")
def test_bf16_where_the_cpu_has_it_agrees_and_gives_everything(minilm, texts):
    bf16 = hubembed.load("minilm", quantize="bf16")
    cos = _cos(bf16.embed(texts[:100]), minilm.embed(texts[:100]))
    assert cos.mean() >= 0.999 and cos.min() >= 0.995
    att = bf16.embed(texts[:4], pooling="attention", layers="embeddings,-1")
    assert _cos(att, minilm.embed(texts[:4], pooling="attention", layers="embeddings,-1")).min() >= 0.99


def test_a_cached_int8_model_loads_without_reading_the_float32_savedmodel(int8, monkeypatch):
    from hubembed._hub import resolve

    reads = []
    real = resolve.load
    monkeypatch.setattr(resolve, "load", lambda path, *a, **k: reads.append(path) or real(path, *a, **k))
    again = hubembed.load("minilm", quantize="int8")
    assert again.obj is None and again.engine.quantized.path == int8.engine.quantized.path
    assert all("encoder" not in os.path.basename(p.rstrip("/")) for p in reads), reads  # the preprocessor only
    np.testing.assert_array_equal(again.embed(["same vectors"]), int8.embed(["same vectors"]))
    assert again.signature.num_layers == 6 and again.context()["quantize"] == "int8"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tf2_dict", "tf2_dict_no_layers", "tf2_list", "tf1_hub"])
def test_every_hub_encoder_kind(kind, tiny_models, tiny_encoders):
    f32 = tiny_encoders[kind]
    q = hubembed.load(tiny_models[kind], quantize="int8")
    assert q.engine.quantized.source == ("garden" if kind == "tf1_hub" else "hub")
    texts = ["the cat sat on the mat", "hello world", "a quick brown fox jumps"]
    assert _cos(q.embed(texts), f32.embed(texts)).min() >= 0.99
    if kind == "tf1_hub":
        with pytest.raises(InputError, match="rules out"):
            hubembed.load(tiny_models[kind], quantize="int8", backend="hub")
    if f32.signature.has_encoder_outputs or kind == "tf1_hub":
        assert _cos(q.embed(texts, layers=0), f32.embed(texts, layers=0)).min() >= 0.99
    else:  # the Hub model exports no inner layer: its int8 graph has none either; the rebuild, quantized, has
        with pytest.raises(InputError, match="backend='garden', quantize='int8'"):
            q.embed(texts, layers=0)
        g = hubembed.load(tiny_models[kind], quantize="int8", backend="garden")
        assert _cos(g.embed(texts, layers=0), f32.embed(texts, layers=0)).min() >= 0.99


@pytest.mark.slow
def test_garden_exports_quantize_directly(garden_models, tiny_encoders):
    texts = ["the cat sat on the mat", "hello world"]
    for kind in ("garden_bert", "garden_albert"):
        q = hubembed.load(garden_models[kind], quantize="int8", trust="any")
        f32 = hubembed.load(garden_models[kind], trust="any")
        assert q.engine.quantized.source == "hub"
        assert _cos(q.embed(texts, layers="-2:"), f32.embed(texts, layers="-2:")).min() >= 0.99


@pytest.mark.slow
def test_the_manifest_and_the_feature_cache_record_the_mode(tmp_path, texts):
    src = tmp_path / "c.txt"
    src.write_text("\n".join(texts[:30]) + "\n", encoding="utf-8")
    cache = str(tmp_path / "features")
    f32 = hubembed.extract(str(src), str(tmp_path / "f32"), model="minilm", cache=cache, quiet=True)
    q = hubembed.extract(str(src), str(tmp_path / "q"), model="minilm", cache=cache, quiet=True, quantize="int8")
    assert q["header"]["spec"]["quantize"] == "int8" and "quantize" not in f32["header"]["spec"]
    assert q["summary"]["texts_from_cache_this_run"] == 0  # float32 vectors are not served to the int8 run
    a = hubembed.open_extraction(str(tmp_path / "f32")).vectors()
    b = hubembed.open_extraction(str(tmp_path / "q")).vectors()
    assert 0.995 <= _cos(a, b).mean() < 1 - 1e-7
    with open(tmp_path / "q" / "manifest.json", encoding="utf-8") as f:
        assert json.load(f)["header"]["spec"]["quantize"] == "int8"
    with pytest.raises(Exception, match="quantize"):  # resuming with another mode is refused
        hubembed.extract(str(src), str(tmp_path / "q"), model="minilm", resume=True, quiet=True)


def test_probe_features_of_the_int8_model_are_its_own(minilm, int8, texts):
    from hubembed import analysis

    f32 = analysis.features(minilm, texts[:20], poolings=["mean"])
    q = analysis.features(int8, texts[:20], poolings=["mean"])  # after float32: the disk cache must not answer
    assert q.spec["quantize"] == "int8" and "quantize" not in f32.spec
    assert "embeddings" not in q.layers and q.layers == [0, 1, 2, 3, 4, 5]
    a, b = f32.data["mean"][:, -6:], q.data["mean"]
    assert a.shape == b.shape and not np.allclose(a, b, atol=1e-5)
    assert _cos(a, b).mean() >= MEAN_COSINE


@pytest.mark.slow
def test_beam_runs_the_int8_model_in_extract_and_run_inference(int8, texts, tmp_path):
    import apache_beam as ab
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.testing.util import assert_that

    from hubembed import beam

    src = tmp_path / "c.txt"
    src.write_text("\n".join(texts[:12]) + "\n", encoding="utf-8")
    m = beam.extract(str(src), str(tmp_path / "out"), model="minilm", quantize="int8")
    assert m["header"]["spec"]["quantize"] == "int8"
    np.testing.assert_allclose(
        hubembed.open_extraction(str(tmp_path / "out")).vectors(), int8.embed(texts[:12]), atol=1e-5
    )
    ref = dict(zip(texts[:12], int8.embed(texts[:12])))

    def check(results):
        got = {r.example: r.inference for r in results}
        assert sorted(got) == sorted(ref)
        assert max(np.abs(v - ref[k]).max() for k, v in got.items()) <= 1e-5

    with ab.Pipeline() as p:
        out = p | ab.Create(texts[:12]) | RunInference(beam.ModelHandler("minilm", quantize="int8"))
        assert_that(out, check)


def test_without_litert_int8_says_what_to_install_before_loading():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['ai_edge_litert'] = None\n"
        "import hubembed\nfrom hubembed._hub import resolve\n"
        "resolve.resolve = lambda *a, **k: print('LOADED')\n"
        "try:\n    hubembed.load('minilm', quantize='int8')\n"
        "except hubembed.MissingDependencyError as e:\n    print('MSG', e)\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert "MSG" in r.stdout and "LOADED" not in r.stdout, r.stdout + r.stderr[-2000:]
    assert "quantize='int8'" in r.stdout and "hubembed[int8]" in r.stdout
