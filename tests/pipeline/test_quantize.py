"""Output quantization: codes equal sentence-transformers' quantize_embeddings, ranges are kept and reused."""

import numpy as np
import pytest

from hubembed._pipeline import quantize as q
from hubembed.errors import InputError


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    return rng.standard_normal((50, 37)).astype(np.float32), rng.standard_normal((9, 37)).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("precision", q.PRECISIONS)
def test_codes_equal_sentence_transformers(vectors, precision):
    from sentence_transformers.util.quantization import quantize_embeddings

    calibration, x = vectors
    ranges = q.Ranges.fit(calibration)
    ours = q.quantize(x, precision, ranges if precision in q.CALIBRATED else None)
    ref = quantize_embeddings(x, precision, calibration_embeddings=calibration)
    assert ours.dtype == ref.dtype and ours.dtype == q.dtype(precision)
    np.testing.assert_array_equal(ours, ref)
    assert ours.shape == (9, q.width(precision, 37))
    if precision in q.CALIBRATED:  # the [2, D] array sentence-transformers takes works as well
        np.testing.assert_array_equal(q.quantize(x, precision, np.stack([ranges.low, ranges.high])), ref)


def test_ranges_are_saved_and_dequantized_codes_fall_in_their_buckets(vectors, tmp_path):
    calibration, x = vectors
    ranges = q.Ranges.fit(calibration)
    path = ranges.save(str(tmp_path / "ranges.npz"))
    again = q.Ranges.of(path)
    assert again.sha256 == ranges.sha256
    inside = np.clip(x, ranges.low, ranges.high)
    for precision in q.CALIBRATED:
        back = q.dequantize(q.quantize(inside, precision, path), precision, again)
        step = (ranges.high - ranges.low) / 255
        assert np.all(np.abs(back - inside) <= step / 2 + 1e-5)


def test_what_cannot_work_is_refused(vectors):
    calibration, x = vectors
    with pytest.raises(InputError, match="precision='int4'; valid: float32, int8, uint8, binary, ubinary"):
        q.quantize(x, "int4")
    with pytest.raises(InputError, match="needs calibration ranges"):
        q.quantize(x, "int8")
    with pytest.raises(InputError, match="N >= 2"):
        q.Ranges.fit(x[:1])
    with pytest.raises(InputError, match="ranges are for 37 dimensions, the vectors have 5"):
        q.quantize(x[:, :5], "uint8", q.Ranges.fit(calibration))
    with pytest.raises(InputError, match="keeps only signs"):
        q.dequantize(q.quantize(x, "binary"), "binary")


@pytest.mark.slow
def test_embed_truncates_normalizes_and_quantizes_as_sentence_transformers(minilm, minilm_source, stsb_sentences):
    """truncate_dim, normalize and precision in embed, against sentence-transformers' encode with the same
    options (its own quantization and truncation), on 200 STS-B sentences, ranges calibrated on 500 others."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util.quantization import quantize_embeddings

    import hubembed

    st = SentenceTransformer(minilm_source, device="cpu", truncate_dim=128)
    texts, calibration = stsb_sentences[:200], stsb_sentences[200:700]
    ref_float = st.encode(texts, normalize_embeddings=True)  # truncated to 128, then normalized
    ours_float = minilm.embed(texts, pooling="mean", truncate_dim=128, normalize=True)
    np.testing.assert_allclose(ours_float, ref_float, atol=2e-5)
    ranges = q.Ranges.fit(minilm.embed(calibration, pooling="mean", truncate_dim=128, normalize=True))
    for precision in ("int8", "uint8", "binary", "ubinary"):
        kw = dict(ranges=ranges) if precision in q.CALIBRATED else {}
        ours = minilm.embed(texts, pooling="mean", truncate_dim=128, normalize=True, precision=precision, **kw)
        ref = quantize_embeddings(ours_float, precision, ranges=np.stack([ranges.low, ranges.high]))
        assert ours.dtype == ref.dtype and ours.shape == ref.shape == (200, q.width(precision, 128))
        np.testing.assert_array_equal(ours, ref)
        # near bucket edges float rounding may move a code by one: compared with sentence-transformers' own floats
        st_codes = quantize_embeddings(ref_float, precision, ranges=np.stack([ranges.low, ranges.high]))
        assert np.mean(ours != st_codes) < 0.01
    spec = hubembed.EmbedSpec(pooling="mean", truncate_dim=128, precision="int8", ranges=ranges)
    assert minilm.output_shape(spec) == (128,)
    rec = minilm.embed(texts[:2], spec=spec, return_info=True)[1].spec
    assert rec["precision"] == "int8" and rec["truncate_dim"] == 128 and rec["ranges"]["sha256"] == ranges.sha256
    with pytest.raises(InputError, match="precision='int8' needs ranges="):
        hubembed.EmbedSpec(precision="int8")
    with pytest.raises(InputError, match="truncate_dim=500: the vectors have only 384 dimensions"):
        minilm.embed(texts[:1], truncate_dim=500)


def test_the_cli_quantizes_and_refuses_before_the_model_loads(tiny_models, tiny_encoders, tmp_path, capsys):
    import json

    from hubembed.cli import main

    enc, path = tiny_encoders["tf2_dict"], tiny_models["tf2_dict"]
    texts = ["one text", "and another one", "a third one here"]
    ranges = q.Ranges.fit(enc.embed(texts * 2 + ["x y z"])).save(str(tmp_path / "r.npz"))
    assert main(["embed", *texts, "--model", path, "--json", "--precision", "uint8", "--ranges", ranges]) == 0
    got = json.loads(capsys.readouterr().out)
    np.testing.assert_array_equal(np.array(got["vectors"]), q.quantize(enc.embed(texts), "uint8", ranges))
    assert main(["embed", "x", "--model", "does-not-matter", "--precision", "int8"]) == 1
    assert "--precision='int8' needs --ranges=" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_extract_stores_codes_records_the_quantization_and_reads_them_back(tiny_models, tiny_encoders, tmp_path, fmt):
    import hubembed

    enc, path = tiny_encoders["tf2_dict"], tiny_models["tf2_dict"]
    texts = [f"text number {i} " + "word " * (i % 5) for i in range(30)]
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(texts) + "\n")
    ranges = q.Ranges.fit(enc.embed(texts[::2] + ["other words", "more"], normalize=True))
    kw = dict(model=path, format=fmt, normalize=True, precision="int8", ranges=ranges, cache=False)
    hubembed.extract(str(corpus), str(tmp_path / "out"), **kw)
    ex = hubembed.open_extraction(str(tmp_path / "out"))
    codes = ex.vectors()
    assert codes.dtype == np.int8 and ex.record["dtype"] == "int8" and ex.record["precision"] == "int8"
    np.testing.assert_array_equal(codes, enc.embed(texts, normalize=True, precision="int8", ranges=ranges))
    back = ex.dequantized(ranges)
    assert np.abs(back - enc.embed(texts, normalize=True)).max() <= (ranges.high - ranges.low).max() / 255
    np.testing.assert_array_equal(ex.embed(texts[:3], encoder=enc, ranges=ranges), codes[:3])  # queries alike
    with pytest.raises(InputError, match="give them back"):
        ex.embed(texts[:1], encoder=enc)
    other = q.Ranges.fit(enc.embed(texts[1::2] + ["a", "b"]))
    with pytest.raises(InputError, match="not the ones"):
        ex.dequantized(other)
    # resuming with other ranges (or another precision) is refused: the record differs
    with pytest.raises(hubembed.HubEmbedError, match="(?i)differ|spec"):
        hubembed.extract(str(corpus), str(tmp_path / "out"), resume=True, **dict(kw, ranges=other))
    with pytest.raises(InputError, match="TFRecord float lists cannot hold int8 codes"):
        hubembed.extract(str(corpus), str(tmp_path / "o2"), **dict(kw, format="tfrecord"))
