"""Output quantization: codes equal sentence-transformers' quantize_embeddings, ranges are kept and reused."""

import numpy as np
import pytest

from hubembed._pipeline import quantize as q
from hubembed.errors import InputError


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    return rng.standard_normal((50, 37)).astype(np.float32), rng.standard_normal((9, 37)).astype(np.float32)


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
