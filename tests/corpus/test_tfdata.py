"""tf.data both ways: ``Extraction.as_dataset`` (every format and level, codes, labels, shard by shard, Keras fit),
``Encoder.embed_dataset`` (the numbers of ``embed``), and ``hubembed.tfdata.feature_spec`` for TFRecord shards."""

import json
import os

import numpy as np
import pytest

import hubembed
from hubembed._corpus import dataset as dataset_mod
from hubembed._corpus import shards
from hubembed.errors import InputError
from hubembed.tfdata import feature_spec

tf = pytest.importorskip("tensorflow")

TEXTS = [
    "hello world",
    "the cat sat on the mat",
    "good movie , great film !",
    "Unbelievable naïveté — déjà vu",
    "hello world",
    "a",
    "the quick brown fox jumps over the lazy dog " * 3,
]
# (level, format): every combination an extraction can be written in
KINDS = [
    ("sentence", "npy"),
    ("sentence", "parquet"),
    ("sentence", "tfrecord"),
    ("tokens", "parquet"),
    ("tokens", "tfrecord"),
    ("words", "parquet"),
    ("words", "tfrecord"),
]


@pytest.fixture(scope="module")
def tiny(tiny_encoders):
    return tiny_encoders["tf2_dict"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("tfdata") / "c.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def extractions(tiny, corpus, tmp_path_factory):
    """{(level, format): folder}, 3 rows a shard (3 shards); words with mean sub-word pooling."""
    root = tmp_path_factory.mktemp("extractions")
    out = {}
    for level, fmt in KINDS:
        folder = str(root / f"{level}-{fmt}")
        extra = {"subword": "mean"} if level == "words" else {"pooling": "max"} if level == "sentence" else {}
        hubembed.extract(
            corpus, folder, encoder=tiny, level=level, format=fmt, shard_size=3, quiet=True, cache=False, **extra
        )
        out[level, fmt] = folder
    return out


def _extract(tiny, corpus, folder, **kw):
    hubembed.extract(corpus, str(folder), encoder=tiny, shard_size=3, quiet=True, cache=False, **kw)
    return hubembed.open_extraction(str(folder))


def _stacked(ds):
    return np.stack(list(ds.as_numpy_iterator()))


def _check_row(level, row, ex, i, ids):
    assert row["id"].decode("utf-8") == ids[i]
    if level == "sentence":
        want = ex[i]
        assert row["vector"].dtype == want.dtype
        np.testing.assert_array_equal(row["vector"], want)
        return
    p = ex[i]
    assert row["text"].decode("utf-8") == p.text
    assert [w.decode("utf-8") for w in row[level]] == p.pieces
    np.testing.assert_array_equal(row["vectors"], p.vectors)
    np.testing.assert_array_equal(np.stack([row["start"], row["end"]], axis=1), p.spans.reshape(-1, 2))
    assert row["mask"].dtype == bool and row["mask"].all() and len(row["mask"]) == len(p)
    if level == "tokens":
        np.testing.assert_array_equal(row["token_ids"], p.token_ids)


# -- Extraction.as_dataset ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("level,fmt", KINDS)
def test_rows_equal_the_extraction_in_every_format_and_level(extractions, level, fmt):
    ex = hubembed.open_extraction(extractions[level, fmt])
    ids = ex.ids()
    assert len(ex.shards) == 3 and len(ex) == len(TEXTS)
    ds = ex.as_dataset(columns=list(dataset_mod.COLUMNS[level]))
    assert int(ds.cardinality()) == len(TEXTS)
    rows = list(ds.as_numpy_iterator())
    assert len(rows) == len(TEXTS)
    for i, row in enumerate(rows):
        assert list(row) == list(dataset_mod.COLUMNS[level])  # the columns in the order asked for
        _check_row(level, row, ex, i, ids)
    # The defaults: the vector alone (sentence), {vectors, mask} (tokens, words); batches of 4, then the rest.
    batches = list(ex.as_dataset(4).as_numpy_iterator())
    assert len(batches) == 2
    if level == "sentence":
        np.testing.assert_array_equal(np.concatenate(batches), ex.vectors())
        return
    assert all(set(b) == {"vectors", "mask"} for b in batches)
    for b, start in zip(batches, (0, 4)):
        for j in range(len(b["mask"])):
            p = ex[start + j]
            assert b["mask"][j].sum() == len(p) and not b["mask"][j, len(p) :].any()  # padded to the batch's longest
            np.testing.assert_array_equal(b["vectors"][j, : len(p)], p.vectors)
            assert not b["vectors"][j, len(p) :].any()


def _stored_as_they_are(tiny, corpus, folder, kw, dtype, shape):
    ex = _extract(tiny, corpus, folder, **kw)
    got = _stacked(ex.as_dataset())
    assert got.dtype == dtype and got.shape == (len(TEXTS),) + shape, kw
    np.testing.assert_array_equal(got, ex.vectors())
    np.testing.assert_array_equal(got, np.stack([ex[i] for i in range(len(ex))]))
    assert [r.decode() for r in ex.as_dataset(columns="id").as_numpy_iterator()] == ex.ids()


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_codes_come_as_stored(tiny, corpus, tmp_path, fmt):
    ranges = hubembed.quantize.Ranges.fit(tiny.embed(TEXTS))
    _stored_as_they_are(
        tiny, corpus, tmp_path / "i8", {"format": fmt, "precision": "int8", "ranges": ranges}, np.int8, (16,)
    )
    _stored_as_they_are(tiny, corpus, tmp_path / "ub", {"format": fmt, "precision": "ubinary"}, np.uint8, (2,))


def test_float16_and_a_layer_axis_come_as_stored(tiny, corpus, tmp_path):
    _stored_as_they_are(tiny, corpus, tmp_path / "f16", {"format": "parquet", "dtype": "float16"}, np.float16, (16,))
    axis = {"format": "npy", "layers": "-2:", "combine": "none"}
    _stored_as_they_are(tiny, corpus, tmp_path / "axis", axis, np.float32, (2, 16))


def test_labels_in_row_order_or_by_id(extractions):
    ex = hubembed.open_extraction(extractions["sentence", "parquet"])
    y = np.arange(len(ex)) * 10
    as_list = list(ex.as_dataset(labels=list(y)).as_numpy_iterator())
    np.testing.assert_array_equal([label for _, label in as_list], y)
    np.testing.assert_array_equal(np.stack([v for v, _ in as_list]), ex.vectors())
    by_id = {int(i): 10 * (int(i) - 1) for i in ex.ids()}  # ids are the 1-based line numbers; int keys work
    got = list(ex.as_dataset(3, labels=by_id).as_numpy_iterator())
    assert [len(label) for _, label in got] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([label for _, label in got]), y)
    strings = list(ex.as_dataset(labels=[f"class {i}" for i in range(len(ex))]).as_numpy_iterator())
    assert strings[2][1] == b"class 2"
    vectors = list(ex.as_dataset(2, labels=np.eye(len(ex), 3), drop_remainder=True).as_numpy_iterator())
    assert len(vectors) == 3 and vectors[0][1].shape == (2, 3)  # a fixed-size label per row; the last 1 dropped


def test_as_dataset_refuses_bad_arguments_and_incomplete_extractions(extractions, tmp_path):
    ex = hubembed.open_extraction(extractions["sentence", "npy"])
    bad = [
        (dict(columns="vectors"), r"'vectors' not in a sentence-level extraction; valid: id, vector"),
        (dict(columns=[]), "a column name, or a list of them"),
        (dict(columns=["id", "id"]), "names a column twice"),
        (dict(batch_size=0), r"batch_size=0; valid: None"),
        (dict(batch_size=True), "batch_size=True"),
        (dict(drop_remainder=True), "give batch_size too"),
        (dict(labels=[1, 2]), "2 labels for the 7 rows"),
        (dict(labels={"1": 0}), r"no label for 6 of the 7 ids .*'2', '3'"),
        (dict(labels=[[1], [1, 2]] + [[1]] * 5), "one label per row, all of one shape"),
        (dict(labels="pos"), "a sequence of one label per row, or a mapping"),
        (dict(labels=7), "a sequence of one label per row"),
    ]
    for kw, msg in bad:
        with pytest.raises(InputError, match=msg):
            ex.as_dataset(**kw)
    words = hubembed.open_extraction(extractions["words", "parquet"])
    with pytest.raises(InputError, match="'token_ids' not in a words-level extraction"):
        words.as_dataset(columns=["vectors", "token_ids"])
    # An extraction whose run did not finish (its manifest says so) is refused, with what to do.
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(extractions["sentence", "npy"], partial)
    m = json.loads((partial / "manifest.json").read_text())
    m["complete"] = False
    (partial / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match=r"incomplete extraction \(7 rows in 3 finished shards so far\).*--resume"):
        hubembed.open_extraction(str(partial)).as_dataset()


@pytest.fixture(scope="module")
def long_extractions(tiny, tmp_path_factory):
    """{(level, format): folder} of 64 texts in 4 shards of 16: further apart than tf.data's read-ahead reaches."""
    root = tmp_path_factory.mktemp("long")
    src = root / "c.txt"
    src.write_text("\n".join(f"text {i} " + "word " * (i % 4) for i in range(64)) + "\n", encoding="utf-8")
    out = {}
    for level, fmt in KINDS[:3] + [("words", "tfrecord")]:
        out[level, fmt] = str(root / f"{level}-{fmt}")
        hubembed.extract(str(src), out[level, fmt], encoder=tiny, level=level, format=fmt, shard_size=16, quiet=True)
    return out


def _no_prefetch(ds):
    """``ds`` without the prefetch tf.data injects by default (it reads ahead on a thread of its own, as it pleases)."""
    options = tf.data.Options()
    options.experimental_optimization.inject_prefetch = False
    return ds.with_options(options)


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_reads_one_shard_at_a_time(long_extractions, monkeypatch, fmt):
    """npy and parquet shards are read when their first row is asked for, each once a pass; nothing before."""
    ex = hubembed.open_extraction(long_extractions["sentence", fmt])
    assert [s["rows"] for s in ex.shards] == [16] * 4
    reads = []
    real = shards.read
    monkeypatch.setattr(shards, "read", lambda f, lv, path: reads.append(os.path.basename(path)) or real(f, lv, path))
    files = [s["file"] for s in ex.shards]
    for labels in (None, np.arange(64)):
        reads.clear()
        it = iter(_no_prefetch(ex.as_dataset(labels=labels)))
        assert reads == []  # nothing is read until an element is asked for
        for k, _ in enumerate(it):
            assert reads == files[: k // 16 + 1], k  # row k is in shard k // 16: that one is open, none after it
        assert k == 63 and reads == files
    # As tf.data runs it by default (its injected prefetch reads ahead a little): not every shard before the first row.
    reads.clear()
    it = iter(ex.as_dataset(8))
    next(it)
    assert 1 <= len(reads) < 4
    assert sum(len(b) for b in it) == 56 and reads == files


@pytest.mark.parametrize("level,fmt", KINDS[:3] + [("words", "tfrecord")])
def test_a_later_shard_is_not_opened_before_its_rows(long_extractions, tmp_path, level, fmt):
    """The last shard is deleted after the first row came: the rows before it still come, then its absence is met.
    Had it been opened already (an open file survives its deletion on POSIX), every row would come. TFRecord shards
    too (TFRecordDataset reads its files one after the other), as tf.data runs them by default."""
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(long_extractions[level, fmt], folder)
    ex = hubembed.open_extraction(str(folder))
    ids, last = ex.ids(), ex.shards[-1]
    it = iter(ex.as_dataset(columns="id"))
    got = [next(it).numpy().decode()]
    for key in ("file", "ids_file"):
        if key in last:
            os.remove(folder / last[key])
    with pytest.raises((tf.errors.NotFoundError, tf.errors.UnknownError, tf.errors.InvalidArgumentError)):
        for rid in it:
            got.append(rid.numpy().decode())
    assert got == ids[: last["first_row"]] and len(got) == 48  # the first three shards' rows, then the error


@pytest.mark.slow
def test_fit_a_keras_head_on_a_stored_corpus(extractions):
    import keras

    ex = hubembed.open_extraction(extractions["sentence", "npy"])
    v = ex.vectors()
    y = (v[:, 0] > np.median(v[:, 0])).astype("int32")  # learnable from the vectors by a linear head
    keras.utils.set_random_seed(0)
    head = keras.Sequential([keras.Input((v.shape[1],)), keras.layers.Dense(2)])
    head.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = head.fit(ex.as_dataset(4, labels=y), epochs=40, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["accuracy"][-1] == 1.0
    np.testing.assert_array_equal(head.predict(ex.as_dataset(4), verbose=0).argmax(-1), y)
    # Token-level rows: {"vectors", "mask"} into a masked pooling head, labels by id.
    from hubembed.keras import MaskedMeanPooling

    words = hubembed.open_extraction(extractions["words", "tfrecord"])
    vectors = keras.Input((None, v.shape[1]), name="vectors")
    mask = keras.Input((None,), dtype="bool", name="mask")
    model = keras.Model({"vectors": vectors, "mask": mask}, keras.layers.Dense(2)(MaskedMeanPooling()([vectors, mask])))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(words.as_dataset(3, labels={i: int(i) % 2 for i in words.ids()}), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()


# -- feature_spec ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", ["sentence", "tokens", "words"])
def test_feature_spec_parses_the_tfrecord_shards_of_each_level(extractions, level):
    folder = extractions[level, "tfrecord"]
    ex = hubembed.open_extraction(folder)
    spec = feature_spec(ex)
    assert set(spec) == set(feature_spec(folder))  # an extraction or its folder
    files = [os.path.join(folder, s["file"]) for s in ex.shards]
    ids = ex.ids()
    for i, raw in enumerate(tf.data.TFRecordDataset(files)):
        row = {k: v.numpy() for k, v in tf.io.parse_single_example(raw, spec).items()}
        if level != "sentence":
            assert row["dim"] == 16 and row["vectors"].shape == (len(ex[i]), 16)
            row["mask"] = np.ones(len(ex[i]), bool)
        _check_row(level, row, ex, i, ids)
    assert i == len(TEXTS) - 1
    batch = tf.io.parse_example(next(iter(tf.data.TFRecordDataset(files).batch(3))), spec)
    if level == "sentence":
        assert batch["vector"].shape == (3, 16)
    else:
        assert isinstance(batch["vectors"], tf.RaggedTensor) and batch["vectors"].shape.as_list() == [3, None, 16]
        np.testing.assert_array_equal(batch["vectors"][1].numpy(), ex[1].vectors)


def test_feature_spec_refuses_other_formats(extractions):
    with pytest.raises(InputError, match="holds parquet shards; feature_spec describes TFRecord shards"):
        feature_spec(hubembed.open_extraction(extractions["tokens", "parquet"]))
    import subprocess
    import sys

    code = "import sys, hubembed; f = hubembed.tfdata.feature_spec; print(f.__module__, 'tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["hubembed.tfdata", "False"], out.stderr[-2000:]  # lazy, and TensorFlow-free


# -- Encoder.embed_dataset -------------------------------------------------------------------------------------------
LONG = "the quick brown fox jumps over the lazy dog " * 40  # several windows of the tiny model


@pytest.mark.parametrize(
    "spec",
    [
        {"pooling": "mean"},
        {"pooling": "cls"},
        {"layers": "-2:", "combine": "scalar_mix", "weights": [1.0, 2.0], "gamma": 0.5, "pooling": "mean_max"},
        {"layers": [0, -1], "combine": "concat", "pooling": "max", "normalize": True, "long": "truncate"},
    ],
)
def test_embed_dataset_equals_embed(tiny, spec):
    texts = TEXTS + ["", LONG]
    want = tiny.embed(texts, **spec)
    single = tiny.embed_dataset(tf.data.Dataset.from_tensor_slices(texts), batch_size=3, **spec)
    assert single.element_spec.shape == want.shape[1:] and int(single.cardinality()) == len(texts)
    np.testing.assert_allclose(np.stack(list(single.as_numpy_iterator())), want, atol=1e-5)
    # Batches in, batches out; a tuple's other items ride along.
    labelled = tf.data.Dataset.from_tensor_slices((texts, np.arange(len(texts)))).batch(4)
    got = list(tiny.embed_dataset(labelled, **spec).as_numpy_iterator())
    assert [len(v) for v, _ in got] == [4, 4, 1]
    np.testing.assert_array_equal(np.concatenate([label for _, label in got]), np.arange(len(texts)))
    np.testing.assert_allclose(np.concatenate([v for v, _ in got]), want, atol=1e-5)


def test_embed_dataset_codes_and_spec_objects(tiny, extractions):
    texts = TEXTS + [LONG]
    ranges = hubembed.quantize.Ranges.fit(tiny.embed(texts))
    for kw in ({"precision": "int8", "ranges": ranges}, {"precision": "ubinary"}, {"truncate_dim": 8}):
        want = tiny.embed(texts, **kw)
        got = np.stack(list(tiny.embed_dataset(tf.data.Dataset.from_tensor_slices(texts), **kw).as_numpy_iterator()))
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), atol=1e-5)
    # Queries embedded as a stored corpus was (its spec), equal to its vectors.
    ex = hubembed.open_extraction(extractions["sentence", "npy"])
    got = np.stack(
        list(tiny.embed_dataset(tf.data.Dataset.from_tensor_slices(TEXTS), spec=ex.spec).as_numpy_iterator())
    )
    np.testing.assert_allclose(got, ex.vectors(), atol=1e-5)


def test_embed_dataset_tokenizes_in_a_parallel_map_and_encodes_in_order(tiny):
    ds = tiny.embed_dataset(tf.data.Dataset.from_tensor_slices(TEXTS), batch_size=2)
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(
        ds._as_serialized_graph(external_state_policy=tf.data.experimental.ExternalStatePolicy.WARN).numpy()
    )
    ops = [n.op for n in graph.node]  # TF 2.20: ParallelMapDatasetV2 (tokenize), MapDataset (encode), UnbatchDataset
    assert any(o.startswith("ParallelMapDataset") for o in ops) and any(o.startswith("MapDataset") for o in ops), ops
    assert "UnbatchDataset" in ops
    py_funcs = [n for f in graph.library.function for n in f.node_def if n.op == "EagerPyFunc"]
    assert py_funcs  # the encoding: the numpy pipeline of embed
    texts = [f"text number {i} " * (i % 5 + 1) for i in range(40)]
    got = np.stack(
        list(tiny.embed_dataset(tf.data.Dataset.from_tensor_slices(texts), batch_size=3).as_numpy_iterator())
    )
    np.testing.assert_allclose(got, tiny.embed(texts), atol=1e-5)  # in input order


def test_embed_dataset_refuses_bad_input_before_any_work(tiny):
    strings = tf.data.Dataset.from_tensor_slices(["a", "b"])
    bad = [
        (["a text"], {}, "takes a tf.data.Dataset of strings, not list; for a list of texts use embed"),
        (tf.data.Dataset.range(3), {}, "elements must be strings"),
        (tf.data.Dataset.from_tensor_slices({"text": ["a"]}), {}, r"map a dict to a tuple first"),
        (tf.data.Dataset.from_tensor_slices([["a", "b"]]).batch(2), {}, "elements must be strings"),
        (strings, {"batch_size": 0}, "batch_size=0; it must be an integer >= 1"),
        (strings, {"max_tokens": 2}, "max_tokens=2 is smaller than one row"),
        (strings, {"max_tokens": "many"}, "max_tokens='many'"),
        (strings, {"layers": 9}, "out of range|valid"),
        (strings, {"pooling": "nope"}, "pooling"),
        (strings, {"spec": hubembed.EmbedSpec(), "pooling": "cls"}, "either spec= or its arguments"),
        (strings, {"truncate_dim": 99}, "only 16 dimensions"),
    ]
    for ds, kw, msg in bad:
        with pytest.raises(InputError, match=msg):
            tiny.embed_dataset(ds, **kw)


@pytest.mark.slow
def test_embed_dataset_runs_the_int8_model(tiny_models):
    """quantize="int8": LiteRT (numpy in, numpy out) runs inside the dataset's encoding step, as in embed."""
    q = hubembed.load(tiny_models["tf2_dict"], quantize="int8")
    texts = TEXTS + ["", LONG]
    got = np.stack(list(q.embed_dataset(tf.data.Dataset.from_tensor_slices(texts), batch_size=4, pooling="mean")))
    np.testing.assert_allclose(got, q.embed(texts, pooling="mean"), atol=1e-5)
    with pytest.raises(InputError, match="attention"):
        q.embed_dataset(tf.data.Dataset.from_tensor_slices(texts), pooling="attention")
