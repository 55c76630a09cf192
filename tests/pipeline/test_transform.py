"""hubembed._pipeline.transform: Whitening fitted and applied, against numpy by hand."""

import os

import numpy as np
import pytest

from hubembed import InputError
from hubembed._pipeline.transform import Whitening, as_transform


def _data(n=400, d=6, seed=0):
    """Correlated, anisotropic vectors with an offset."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) * np.linspace(0.2, 3.0, d)
    return (rng.normal(size=(n, d)) @ mix + rng.normal(size=d) * 5).astype(np.float32)


def test_whiten_gives_zero_mean_and_identity_covariance_on_the_fit_data():
    X = _data()
    w = Whitening.fit(X)
    Y = w(X)
    assert Y.shape == X.shape and w.out_dim == 6
    np.testing.assert_allclose(Y.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(np.cov(Y.T.astype(np.float64)), np.eye(6), atol=1e-3)
    np.testing.assert_allclose(w.mean, X.astype(np.float64).mean(0), rtol=1e-5, atol=1e-5)


def test_whiten_keeps_the_k_directions_of_largest_variance():
    X = _data().astype(np.float64)
    w = Whitening.fit(X, k=2)
    Y = w(X)
    assert Y.shape == (400, 2) and w.out_dim == 2 and w.k == 2
    np.testing.assert_allclose(np.cov(Y.T.astype(np.float64)), np.eye(2), atol=1e-3)
    # The same subspace as the top-2 principal components (numpy's eigh, independently).
    vals, vecs = np.linalg.eigh(np.cov(X.T))
    top = vecs[:, np.argsort(vals)[::-1][:2]]
    expected = (X - X.mean(0)) @ top / np.sqrt(np.sort(vals)[::-1][:2])
    # Eigenvectors are defined up to sign.
    for j in range(2):
        sign = np.sign(expected[:, j] @ Y[:, j])
        np.testing.assert_allclose(Y[:, j], sign * expected[:, j], rtol=1e-3, atol=1e-3)


def test_center_subtracts_the_mean_only():
    X = _data()
    w = Whitening.fit(X, method="center")
    np.testing.assert_allclose(w(X), X - X.astype(np.float64).mean(0), rtol=1e-4, atol=1e-4)
    w3 = Whitening.fit(X, method="center", k=3)
    np.testing.assert_allclose(w3(X), (X - X.astype(np.float64).mean(0))[:, :3], rtol=1e-4, atol=1e-4)


def test_applies_to_new_vectors_as_an_affine_map():
    X = _data()
    w = Whitening.fit(X)
    Z = _data(n=5, seed=1)
    np.testing.assert_allclose(w(Z), (Z - w.mean) @ w.W, rtol=1e-5, atol=1e-5)
    # Affine: the map of a midpoint is the midpoint of the maps.
    np.testing.assert_allclose(w((Z[0] + Z[1]) / 2), (w(Z[0]) + w(Z[1])) / 2, rtol=1e-4, atol=1e-4)


def test_save_load_round_trip(tmp_path):
    X = _data()
    w = Whitening.fit(X, k=4, about={"model": "tiny"})
    path = w.save(str(tmp_path / "sub" / "white"))
    assert path.endswith("white.npz") and os.path.exists(path)
    back = Whitening.load(path)
    assert (back.method, back.k, back.n, back.about) == ("whiten", 4, 400, {"model": "tiny"})
    np.testing.assert_array_equal(back(X), w(X))
    assert back.to_dict() == w.to_dict()
    assert w.to_dict()["out_dim"] == 4 and w.to_dict()["dim"] == 6
    loaded = as_transform(tmp_path / "sub" / "white.npz")
    assert isinstance(loaded, Whitening)
    assert as_transform(None) is None and as_transform(w) is w


def test_errors(tmp_path):
    X = _data()
    with pytest.raises(InputError, match="method='pca'"):
        Whitening.fit(X, method="pca")
    with pytest.raises(InputError, match=r"k=7; valid: 1\.\.6"):
        Whitening.fit(X, k=7)
    with pytest.raises(InputError, match=r"k=0"):
        Whitening.fit(X, k=0)
    with pytest.raises(InputError, match="N >= 2"):
        Whitening.fit(X[:1])
    with pytest.raises(InputError, match="N >= 2"):
        Whitening.fit(X[0])
    w = Whitening.fit(X)
    with pytest.raises(InputError, match="width 6; these are 5 wide"):
        w(X[:, :5])
    with pytest.raises(InputError, match="does not exist"):
        Whitening.load(str(tmp_path / "missing.npz"))
    bad = tmp_path / "bad.npz"
    np.savez(bad, mean=np.zeros(3))
    with pytest.raises(InputError, match="not a hubembed transform"):
        Whitening.load(str(bad))
    with pytest.raises(InputError, match="transform=3"):
        as_transform(3)


def test_few_vectors_warn_about_a_singular_covariance(caplog):
    X = _data(n=4)
    with caplog.at_level("WARNING", logger="hubembed"):
        Whitening.fit(X)
    assert "singular" in caplog.text and "k <= 3" in caplog.text
