"""hubembed._pipeline.layers: the layer-spec syntax and the layer combinations (numpy by hand)."""

import numpy as np
import pytest

from hubembed import InputError
from hubembed._pipeline.layers import Combine, check_combine, count, select

L = 6


@pytest.mark.parametrize(
    "spec,expected",
    [
        (-1, [5]),
        (0, [0]),
        (np.int64(-6), [0]),
        ("3", [3]),
        (" -2 ", [4]),
        ("-4:", [2, 3, 4, 5]),
        ("2:5", [2, 3, 4]),
        (":2", [0, 1]),
        ("-3:-1", [3, 4]),
        (":", [0, 1, 2, 3, 4, 5]),
        ("all", [0, 1, 2, 3, 4, 5]),
        ("ALL", [0, 1, 2, 3, 4, 5]),
        ("embeddings", ["embeddings"]),
        ([0, 4, -1], [0, 4, 5]),
        ((-1, -2), [5, 4]),
        (range(2), [0, 1]),
        (["embeddings", 0], ["embeddings", 0]),
        (["embeddings", "all"], ["embeddings", 0, 1, 2, 3, 4, 5]),
        ([0, "-2:"], [0, 4, 5]),
        ("-1,-2,-3,-4", [5, 4, 3, 2]),
        ("0, 5:", [0, 5]),
    ],
)
def test_select(spec, expected):
    assert select(spec, L) == expected


@pytest.mark.parametrize("spec", [6, -7, "6", "-7", [0, 6], "7:", "-8:", "0:9"])
def test_out_of_range_names_the_valid_range(spec):
    with pytest.raises(InputError, match=r"-6\.\.5") as e:
        select(spec, L)
    assert "6 layers" in str(e.value)


@pytest.mark.parametrize(
    "spec",
    [True, np.bool_(False), [], "", ",", "5:2", "3:3", "foo", "1.5", 1.0, None, [[0, 1]], [True], ["x"], {"a": 1}],
)
def test_bad_specs_are_input_errors_naming_the_range(spec):
    with pytest.raises(InputError, match=r"-6\.\.5"):
        select(spec, L)


@pytest.mark.parametrize("n", [None, 0])
def test_unknown_layer_count_is_refused(n):
    with pytest.raises(InputError, match="unknown"):
        select(-1, n)


@pytest.mark.parametrize(
    "spec,n",
    [
        (3, 1),
        ("embeddings", 1),
        ("-4:", 4),
        ("2:5", 3),
        ("-3:-1", 2),
        ([0, "-2:"], 3),
        ("-1,-2", 2),
        ("all", None),
        ("2:", None),
        (":3", None),
        ([0, "all"], None),
        ([], None),
        (True, None),
        (2.0, None),
    ],
)
def test_count(spec, n):
    assert count(spec) == n
    if n is not None and spec != "embeddings":  # where count knows, it agrees with select
        assert len(select(spec, L)) == n


def _stack(k=3, shape=(2, 4, 5), seed=0):
    return np.random.default_rng(seed).normal(size=(k,) + shape).astype(np.float32)


def test_combine_none_mean_sum_concat():
    x = _stack()
    np.testing.assert_allclose(Combine("mean").apply(x), (x[0] + x[1] + x[2]) / 3, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(Combine("sum").apply(x), x[0] + x[1] + x[2], rtol=1e-6, atol=1e-6)
    cat = Combine("concat").apply(x)
    assert cat.shape == (2, 4, 15)
    for i in range(3):
        np.testing.assert_array_equal(cat[..., 5 * i : 5 * (i + 1)], x[i])
    apart = Combine("none").apply(x)
    assert apart.shape == (2, 4, 3, 5)
    for i in range(3):
        np.testing.assert_array_equal(apart[:, :, i], x[i])
    assert Combine("concat").width(5, 3) == 15 and Combine("mean").width(5, 3) == 5


@pytest.mark.parametrize("how", ["none", "mean", "sum", "concat"])
def test_one_layer_is_itself(how):
    x = _stack(k=1)
    np.testing.assert_array_equal(Combine(how).apply(x), x[0])


def test_weighted_is_the_weighted_sum():
    x = _stack()
    c = Combine.make("weighted", 3, [0.5, -2.0, 3.0])
    assert c.weights == (0.5, -2.0, 3.0)
    np.testing.assert_allclose(c.apply(x), 0.5 * x[0] - 2.0 * x[1] + 3.0 * x[2], rtol=1e-5, atol=1e-5)


def test_scalar_mix_is_gamma_times_softmax_weighted_sum():
    x = _stack()
    w = [1.0, 0.0, -1.0]
    e = [np.e, 1.0, 1 / np.e]
    soft = [v / sum(e) for v in e]
    c = Combine.make("scalar_mix", 3, np.array(w), gamma=2.5)
    np.testing.assert_allclose(c.coefficients(), [2.5 * s for s in soft], rtol=1e-6)
    expected = 2.5 * (soft[0] * x[0] + soft[1] * x[1] + soft[2] * x[2])
    out = c.apply(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # Large weights do not overflow (softmax is shifted).
    big = Combine.make("scalar_mix", 2, [1000.0, 1000.0]).coefficients()
    np.testing.assert_allclose(big, [0.5, 0.5])


def test_combine_checks():
    with pytest.raises(InputError, match="combine='avg'"):
        check_combine("avg", None, 2)
    with pytest.raises(InputError, match="weights= only applies"):
        check_combine("mean", [1, 2], 2)
    with pytest.raises(InputError, match="needs weights.*: 3"):
        check_combine("weighted", None, 3)
    with pytest.raises(InputError, match="2 weights for 3 selected layers"):
        Combine.make("scalar_mix", 3, [1.0, 2.0])
    assert check_combine("weighted", [[1, 2], [3, 4]], None) == (1.0, 2.0, 3.0, 4.0)
    assert check_combine("concat", None, 2) is None
    assert Combine("mean").coefficients() is None
