"""``Encoder.export`` / ``hubembed export``: one SavedModel, strings in, vectors out, used without hubembed.

minilm is exported with a non-default spec and with a whitening transform; a subprocess in which ``import
hubembed`` fails loads both through ``tf.saved_model.load``, ``hub.load``, ``hub.KerasLayer`` (tf_keras) and
Keras 3's ``TFSMLayer``, and another runs ``saved_model_cli run`` on ``serving_default``: every one equals
``Encoder.embed`` within 1e-5. Then the other encoder kinds (the tiny models, TF1 through the Model Garden
rebuild), specs that need the rebuild, the audit, the refusals, and ``hubembed.load`` / ``inspect`` of an export.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import hubembed
from hubembed import analysis
from hubembed._hub.audit import audit
from hubembed.errors import InputError, MissingDependencyError, OutputError

pytestmark = pytest.mark.slow

SPEC = dict(layers="-4:", combine="mean", pooling="mean", normalize=True)
EDGE = ["", "   ", "naïve café: 日本語, 😀!", "A MAN is playing a GUITAR.", "hello world"]


@pytest.fixture(scope="module")
def texts(stsb_sentences):
    """Texts within one window: STS-B sentences (unsorted, of varying lengths) and edge cases."""
    return stsb_sentences[:40] + EDGE


@pytest.fixture(scope="module")
def minilm_exports(minilm, texts, stsb_sentences, tmp_path_factory):
    """{name: (export folder, Encoder.embed vectors of ``texts`` [N, D] saved as .npy)} for the two exports."""
    root = tmp_path_factory.mktemp("minilm-export")
    fit_on = minilm.embed(stsb_sentences[100:400], layers=-1, pooling="mean")
    whitening = analysis.Whitening.fit(fit_on, k=64).save(str(root / "whitening.npz"))
    specs = {"spec": SPEC, "whitened": dict(layers=-1, pooling="mean", transform=whitening, normalize=True)}
    out = {}
    for name, spec in specs.items():
        folder = minilm.export(str(root / name), **spec)
        ref = str(root / f"{name}.npy")
        np.save(ref, minilm.embed(texts, **spec))
        out[name] = (folder, ref)
    return out


NO_HUBEMBED = """
import sys


class NoHubembed:
    def find_spec(self, name, path=None, target=None):
        if name == "hubembed" or name.startswith("hubembed."):
            raise ImportError("hubembed is not installed here")


sys.meta_path.insert(0, NoHubembed())
try:
    import hubembed  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("import hubembed worked")
"""

CONSUMER = """
import json
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the tokenizer's ops)
import tensorflow_hub as hub
import tf_keras
import keras

texts = json.loads(sys.argv[1])
exports = json.loads(sys.argv[2])
strings = tf.constant(texts)
diffs = {}
for name, (folder, ref) in exports.items():
    ref = np.load(ref)
    model = tf.saved_model.load(folder)
    got = {"tf.saved_model.load": model(strings).numpy()}
    got["serving_default"] = model.signatures["serving_default"](inputs=strings)["outputs"].numpy()
    if name != "spec":  # the loaders below read the same SavedModel: one export through all of them is enough
        diffs[name] = {k: float(np.abs(v - ref).max()) for k, v in got.items()}
        continue
    got["hub.load"] = hub.load(folder)(strings).numpy()
    inp = tf_keras.Input((), dtype=tf.string)
    got["hub.KerasLayer"] = tf_keras.Model(inp, hub.KerasLayer(folder)(inp))(strings).numpy()
    inp = keras.Input((), dtype="string")
    out = keras.layers.TFSMLayer(folder, call_endpoint="serving_default", trainable=False)(inp)["outputs"]
    got["TFSMLayer"] = np.asarray(keras.Model(inp, out)(strings))
    diffs[name] = {k: float(np.abs(v - ref).max()) for k, v in got.items()}
print(json.dumps(diffs))
"""

SAVED_MODEL_CLI = (
    "import sys, tensorflow_text; from tensorflow.python.tools import saved_model_cli; "
    "sys.argv[0] = 'saved_model_cli'; sys.exit(saved_model_cli.main())"
)


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_USE_LEGACY_KERAS", None)
    return env


def test_minilm_exports_run_without_hubembed_everywhere_and_equal_embed(minilm_exports, texts, tmp_path):
    """tf.saved_model.load, serving_default, hub.load, hub.KerasLayer (tf_keras), TFSMLayer (Keras 3) in a
    process where `import hubembed` fails (the whitened export: the first two); saved_model_cli in another: all
    within 1e-5 of Encoder.embed."""
    consumer = tmp_path / "consumer.py"
    consumer.write_text(NO_HUBEMBED + CONSUMER, encoding="utf-8")
    args = [json.dumps(texts), json.dumps(minilm_exports)]
    py = subprocess.Popen(
        [sys.executable, str(consumer), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    folder, ref = minilm_exports["spec"]
    cli_texts = texts[:3] + EDGE
    cli = subprocess.run(
        [sys.executable, "-c", NO_HUBEMBED + "\n" + SAVED_MODEL_CLI, "run", "--dir", folder, "--tag_set", "serve"]
        + ["--signature_def", "serving_default", "--input_exprs", f"inputs={cli_texts!r}", "--outdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(),
    )
    out, err = py.communicate(timeout=600)
    assert py.returncode == 0, err[-3000:]
    assert cli.returncode == 0, cli.stderr[-3000:]
    diffs = json.loads(out.strip().splitlines()[-1])
    assert set(diffs) == {"spec", "whitened"} and len(diffs["spec"]) == 5 and len(diffs["whitened"]) == 2
    for name, per_loader in diffs.items():
        for loader, diff in per_loader.items():
            assert diff <= 1e-5, (name, loader, diff)
    from_cli = np.load(tmp_path / "outputs.npy")
    expected = np.load(ref)[[0, 1, 2] + list(range(len(texts) - len(EDGE), len(texts)))]
    assert from_cli.shape == (len(cli_texts), 384)
    assert np.abs(from_cli - expected).max() <= 1e-5


def test_what_an_export_holds_and_says(minilm_exports, minilm):
    folder, _ = minilm_exports["spec"]
    assert sorted(os.listdir(folder)) == ["assets", "fingerprint.pb", "hubembed.json", "saved_model.pb", "variables"]
    assert os.listdir(os.path.join(folder, "assets")) == ["vocab.txt"]
    assert audit(folder).ok and audit(minilm_exports["whitened"][0]).ok
    with open(os.path.join(folder, "hubembed.json"), encoding="utf-8") as f:
        record = json.load(f)
    assert record["format"] == "hubembed-export/1" and record["model"] == "minilm" and record["dim"] == 384
    assert record["weights_sha256"] == minilm.weights_sha256
    assert record["spec"]["layers"] == [2, 3, 4, 5] and record["spec"]["long"] == "truncate"
    assert record["truncation"]["max_word_pieces"] == minilm.seq_length - 2
    assert record["check"]["max_abs_diff"] <= 1e-5
    assert {"tensorflow", "tensorflow_text", "hubembed"} <= set(record["versions"])
    whitened = hubembed.inspect(minilm_exports["whitened"][0]).record
    assert whitened["dim"] == 64 and whitened["spec"]["transform"]["out_dim"] == 64
    model = tf.saved_model.load(folder)
    assert len(model.variables) == len(minilm.obj.variables)


def test_long_texts_are_truncated_as_embed_truncates_and_reported(minilm, minilm_exports, caplog):
    folder, _ = minilm_exports["spec"]
    long_texts = ["a man plays the guitar " * 80, "short one", "word " * 300]
    emb = hubembed.load(folder)
    with caplog.at_level("WARNING", logger="hubembed"):
        vecs, info = emb.embed(long_texts, return_info=True)
    assert info.truncated_rows == [0, 2] and "truncated" in caplog.text
    want = minilm.embed(long_texts, long="truncate", **SPEC)
    assert np.abs(vecs - want).max() <= 1e-5


def test_load_gives_an_exported_embedder(minilm, minilm_exports, texts):
    folder, ref = minilm_exports["spec"]
    emb = hubembed.load(folder)
    assert isinstance(emb, hubembed.ExportedEmbedder) and emb.dim == 384 and emb.seq_length == minilm.seq_length
    assert np.abs(emb.embed(texts, batch_size=7) - np.load(ref)).max() <= 1e-5
    assert emb.embed("hello world").shape == (384,)
    assert emb.embed([]).shape == (0, 384)
    # Its spec embeds the same with the source model, and refuses another model's weights.
    assert np.abs(minilm.embed(texts, spec=emb.spec) - np.load(ref)).max() <= 1e-5
    with pytest.raises(InputError, match="cannot change"):
        emb.embed(texts, spec=hubembed.EmbedSpec(pooling="cls"))
    with pytest.raises(InputError, match="not an encoder: it has no encode.*hubembed.load\\('minilm'\\)"):
        emb.encode(texts)
    with pytest.raises(InputError, match="seq_length"):
        hubembed.load(folder, seq_length=32)
    text = hubembed.inspect(folder).describe()
    assert "hubembed export" in text and "[B, 384] float32" in text and "serving_default: inputs string" in text


def test_a_whitened_export_asks_for_its_transform_back(minilm, minilm_exports, texts, tmp_path):
    folder, ref = minilm_exports["whitened"]
    emb = hubembed.load(folder)
    with pytest.raises(InputError, match="give it back"):
        minilm.embed(texts, spec=emb.spec)
    npz = os.path.join(os.path.dirname(folder), "whitening.npz")
    assert np.abs(minilm.embed(texts, spec=emb.spec.replace(transform=npz)) - np.load(ref)).max() <= 1e-5
    other = analysis.Whitening.fit(np.random.default_rng(0).normal(size=(500, 384)), k=64).save(str(tmp_path / "o"))
    with pytest.raises(InputError, match="not the one"):
        minilm.embed(texts, spec=emb.spec.replace(transform=other))


KIND_SPECS = [
    ("tf2_dict", dict(layers="all", combine="scalar_mix", weights=[0, 1, 2], pooling="max", special_tokens=False)),
    ("tf2_dict_no_layers", dict(layers=["embeddings", 0], combine="concat", pooling="mean_max")),
    ("tf2_list", dict(pooling="attention", attention_layer=1, normalize=True)),
    ("tf1_hub", dict(pooling="pooled")),
]


@pytest.mark.parametrize("kind,spec", KIND_SPECS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(KIND_SPECS)])
def test_every_encoder_kind_and_specs_that_need_the_rebuild(kind, spec, tiny_encoders, tmp_path):
    enc = tiny_encoders[kind]
    texts = ["hello world", "the cat sat on the mat", "", "good movie " * 40, "un believ able embedding ,"]
    folder = enc.export(str(tmp_path / "out"), **spec)
    record = hubembed.inspect(folder).record
    assert record["model_format"] == enc.signature.format
    rebuilt = kind == "tf1_hub" or enc.plan(hubembed.EmbedSpec(**spec)).garden
    assert record["spec"]["backend"] == ("garden" if rebuilt else "hub")
    assert audit(folder).ok
    got = tf.saved_model.load(folder)(tf.constant(texts)).numpy()
    want = enc.embed(texts, long="truncate", **spec)
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5


def test_a_restored_preprocessing_model_is_exported_with_its_vocabulary(tiny_models, tmp_path):
    """A tfhub.dev-style preprocessor loaded from its SavedModel (not rebuilt from a vocab): its tokenizer runs
    in the export, and only its tables and assets go with it."""
    from hubembed._hub.preprocess import Preprocessor

    pre = Preprocessor(tf.saved_model.load(os.path.join(os.path.dirname(tiny_models["tf2_dict"]), "preprocess")), "sm")
    enc = hubembed.load(tiny_models["tf2_dict"], preprocess=pre)
    folder = enc.export(str(tmp_path / "out"), layers=1, pooling="cls")
    texts = ["hello world", "the quick brown fox", ""]
    got = tf.saved_model.load(folder)(tf.constant(texts)).numpy()
    assert np.abs(got - enc.embed(texts, layers=1, pooling="cls")).max() <= 1e-5
    assert os.listdir(os.path.join(folder, "assets")) == ["vocab.txt"]


@pytest.mark.parametrize(
    "kind,spec,error",
    [
        ("tf2_dict", dict(layers="-2:", combine="none"), "combine='none' keeps the 2 layers apart"),
        ("tf2_dict", dict(stride=4), "stride=4 sets the overlap of windows, but an export truncates"),
        ("tf2_dict", dict(pooling="cls", layers=5), "layer 5 requested"),
        ("tf2_dict", dict(transform={"method": "whiten", "sha256": "ab"}), "give it back"),
    ],
)
def test_what_one_graph_cannot_express_is_refused_before_anything_is_written(
    kind, spec, error, tiny_encoders, tmp_path
):
    with pytest.raises(InputError, match=error):
        tiny_encoders[kind].export(str(tmp_path / "out"), **spec)
    assert os.listdir(tmp_path) == []


def test_refusals_name_the_reason(tiny_models, tiny_encoders, tmp_path, monkeypatch):
    tf1 = hubembed.load(tiny_models["tf1_hub"], backend="hub")
    with pytest.raises(InputError, match="TF1 Hub module: its signatures cannot be saved inside a TF2 SavedModel"):
        tf1.export(str(tmp_path / "tf1"))
    enc = tiny_encoders["tf2_dict"]
    w = analysis.Whitening.fit(np.random.default_rng(0).normal(size=(50, 16)), k=4)
    with pytest.raises(InputError, match="fitted on vectors of width 16; these are 32 wide"):
        enc.export(str(tmp_path / "w"), pooling="mean_max", transform=w)
    from hubembed import garden

    def missing():
        raise MissingDependencyError("Model Garden is not installed")

    monkeypatch.setattr(garden, "require", missing)
    with pytest.raises(MissingDependencyError):
        tiny_encoders["tf2_dict_no_layers"].export(str(tmp_path / "g"), layers=0)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x.txt").write_text("mine")
    with pytest.raises(OutputError, match="exists and is not empty"):
        enc.export(str(tmp_path / "used"))
    assert sorted(os.listdir(tmp_path)) == ["used"] and os.listdir(tmp_path / "used") == ["x.txt"]
    folder = enc.export(str(tmp_path / "used"), layers=[0, 2], combine="weighted", weights=[1, 2], overwrite=True)
    assert "x.txt" not in os.listdir(folder) and hubembed.inspect(folder).record["spec"]["weights"] == [1.0, 2.0]
    assert sorted(os.listdir(tmp_path)) == ["used"]  # no temporary folder left behind


def test_the_graph_pools_as_the_numpy_pipeline():
    """graph.pool / combine / received_attention against pooling.pool / Combine.apply on padded random batches."""
    from hubembed._pipeline import graph, pooling
    from hubembed._pipeline.layers import Combine

    rng = np.random.default_rng(0)
    lengths = np.array([2, 5, 9, 3])
    S = lengths.max()
    mask = (np.arange(S)[None, :] < lengths[:, None]).astype(np.int32)
    special = np.zeros_like(mask, bool)
    special[:, 0] = True
    special[np.arange(4), lengths - 1] = True
    layers = [rng.normal(-2, 1, (4, S, 6)).astype(np.float32) for _ in range(3)]
    probs = rng.random((4, 2, S, S)).astype(np.float32)
    probs /= probs.sum(-1, keepdims=True)
    assert (graph.special_positions(tf.constant(mask)).numpy() == special).all()
    att = pooling.received_attention(probs, mask)
    assert np.abs(graph.received_attention(tf.constant(probs), tf.constant(mask)).numpy() - att).max() < 1e-6
    for how, weights in (("mean", None), ("concat", None), ("sum", None), ("scalar_mix", [0.0, 1.0, 2.0])):
        c = Combine.make(how, 3, weights, 0.5)
        x = c.apply(np.stack(layers))
        assert np.abs(graph.combine([tf.constant(t) for t in layers], c).numpy() - x).max() < 1e-5
        for p in ("cls", "mean", "max", "mean_max", "mean_sqrt_len", "weightedmean", "attention"):
            for keep in (True, False):
                want = pooling.pool(x, mask, special, p, keep, weights=att)
                got = graph.pool(tf.constant(x), tf.constant(mask), tf.constant(special), p, keep, tf.constant(att))
                assert np.abs(got.numpy() - want).max() < 1e-5, (how, p, keep)
