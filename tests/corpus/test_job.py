"""CorpusJob and LoadOptions: one value for a corpus job and one for "which model, loaded how", checked when made
(before any folder, input or model is touched), picklable for Beam and Spark workers."""

import pickle

import pytest

import hubembed
from hubembed import EmbedSpec, InputError, LoadOptions
from hubembed._corpus.job import CorpusJob, InputOptions, Settings


def test_load_options_are_frozen_picklable_and_round_trip_through_a_dict():
    o = LoadOptions("minilm", seq_length=128, quantize=None, trust="audit")
    assert pickle.loads(pickle.dumps(o)) == o and hash(o) == hash(LoadOptions.from_dict(o.to_dict()))
    assert o.to_dict() == {
        "model": "minilm",
        "preprocess": None,
        "seq_length": 128,
        "backend": "auto",
        "trust": "audit",
        "quantize": None,
        "prompts": None,
    }
    assert o.keywords() == {k: v for k, v in o.to_dict().items() if k != "model"}
    with pytest.raises(AttributeError):
        o.backend = "garden"  # frozen
    assert o.replace(backend="garden").backend == "garden" and o.backend == "auto"


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(backend="fast"), "backend='fast'; valid: auto, hub, garden"),
        (dict(trust="maybe"), "trust='maybe'; valid: registry, audit, any"),
        (dict(quantize="int4"), "quantize='int4'; valid: 'int8', 'bf16' or None"),
        (dict(model=""), "model=''; valid: a registry name"),
    ],
)
def test_load_options_refuse_bad_values_when_made(kw, message):
    with pytest.raises(InputError, match=message):
        LoadOptions(**kw)


def test_load_options_make_takes_options_or_keywords_not_both():
    o = LoadOptions("minilm", seq_length=64)
    assert LoadOptions.make(o) is o
    assert LoadOptions.make(model="minilm", seq_length=64) == o
    assert LoadOptions.make(model=None) == LoadOptions()  # None keeps a default
    with pytest.raises(InputError, match=r"either options= or its arguments, not both \(backend given\)"):
        LoadOptions.make(o, backend="garden")
    with pytest.raises(InputError, match="valid: a hubembed.LoadOptions"):
        LoadOptions.make({"model": "minilm"})


def test_load_options_load_equals_hubembed_load(tiny_models, tiny_encoders):
    enc = LoadOptions(tiny_models["tf2_dict"], seq_length=32).load()
    assert enc.options == LoadOptions(tiny_models["tf2_dict"], seq_length=32) and enc.seq_length == 32
    ref = hubembed.load(tiny_models["tf2_dict"], seq_length=32)
    texts = ["a fine film", "the quick brown fox"]
    assert (enc.embed(texts) == ref.embed(texts)).all()


def test_a_corpus_job_splits_its_keywords_into_load_settings_input_and_spec():
    job = CorpusJob.make(
        "out",
        model="minilm",
        quantize=None,
        level="tokens",
        format="parquet",
        shard_size=7,
        column="text",
        on_empty="keep",
        resume=True,
        layers="-2:",
        combine="sum",
    )
    assert job.out == "out" and job.resume and not job.quiet
    assert job.load == LoadOptions("minilm")
    assert isinstance(job.settings, Settings) and job.settings.level == "tokens" and job.settings.shard_size == 7
    assert job.settings.spec == EmbedSpec(layers="-2:", combine="sum")
    assert job.source == InputOptions(column="text", on_empty="keep")
    assert job.source.reader_args() == dict(column="text", id_column=None, fmt=None, on_bad="fail", on_empty="keep")
    assert pickle.loads(pickle.dumps(job)).settings.spec == job.settings.spec


def test_a_corpus_job_refuses_bad_options_before_anything_is_touched(tmp_path):
    out = tmp_path / "never"
    for kw, message in [
        (dict(backend="fast"), "backend='fast'"),
        (dict(dtype="int8"), "dtype='int8'; valid: float32, float16"),
        (dict(shard_size=0), "shard_size=0"),
        (dict(pooling="median"), "pooling='median'"),
    ]:
        with pytest.raises(InputError, match=message):
            CorpusJob.make(str(out), **kw)
    assert not out.exists()


def test_from_arguments_reads_a_front_ends_own_arguments():
    def front_end(input_path, out, *, runner="x", level="sentence", shard_size=None, **spec_keywords):
        return CorpusJob.from_arguments(locals(), skip=("input_path", "runner"), cache=False)

    job = front_end("in.txt", "o", shard_size=3, pooling="cls")
    assert job.out == "o" and job.settings.shard_size == 3 and job.settings.cache is False
    assert job.settings.spec == EmbedSpec(pooling="cls")
