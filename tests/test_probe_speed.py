"""Issue 29, item 5: the probe says what it will do, shows its progress, fits in parallel with the same table as
one fit at a time, and checks its labels before any fit."""

import logging

import numpy as np
import pytest

from hubembed import analysis
from hubembed.errors import InputError

pytest.importorskip("sklearn.linear_model")  # hubembed[analysis]; imported here, not in the first test's time
pytest.importorskip("sklearn.model_selection")


def _planted(n=300, seed=0, dims=8):
    """Layer 0: noise; layer 1: noise + the label along one direction; labels balanced."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    noise = rng.normal(size=(n, 2, dims)).astype(np.float32)
    noise[:, 1, 3] += 1.0 * (2 * y - 1)  # weak enough that C matters and folds differ
    return analysis.Features([0, 1], {"mean": noise, "cls": noise[:, ::-1].copy()}), y


def _reference(feats, y, dev, y_dev, folds, Cs, seed=0):
    """The probe as it was: a scikit-learn pipeline per C, cross_val_score, then a fit on all texts for dev."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    rows = []
    for p in feats.poolings:
        for layer in feats.layers:
            X = feats.get(layer, p)

            def model(c):
                return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))

            scores, c = max(((cross_val_score(model(c), X, y, cv=cv), c) for c in Cs), key=lambda t: t[0].mean())
            dev_acc = float(model(c).fit(X, y).score(dev.get(layer, p), y_dev))
            rows.append(
                {
                    "layer": layer,
                    "pooling": p,
                    "cv_mean": float(scores.mean()),
                    "cv_std": float(scores.std()),
                    "C": c,
                    "dev": dev_acc,
                }
            )
    return rows


@pytest.mark.slow
def test_parallel_fits_give_the_table_of_one_fit_at_a_time_and_of_the_pipeline():
    """n_jobs=1 (in this process) and n_jobs=2 (joblib's worker processes) give the same rows, float for float, and
    they are the rows of the former implementation (a Pipeline per C through cross_val_score)."""
    train, y = _planted(200, dims=6)
    dev, y_dev = _planted(100, seed=1, dims=6)
    one = analysis.probe(train, y, dev=(dev, y_dev), folds=3, n_jobs=1)
    two = analysis.probe(train, y, dev=(dev, y_dev), folds=3, n_jobs=2)
    assert one.rows == two.rows
    assert one.rows == _reference(train, y, dev, y_dev, 3, analysis.PROBE_CS)
    assert len({r["C"] for r in one.rows}) > 1  # C chosen per cell: the comparison covers the choice too
    assert one.to_markdown() == two.to_markdown() and one.recommendation() == two.recommendation()


def test_the_plan_is_logged_and_the_bar_counts_every_fit(caplog, capsys):
    train, y = _planted(60)
    dev, y_dev = _planted(40, seed=1)
    with caplog.at_level(logging.INFO, logger="hubembed"):
        table = analysis.probe(train, y, dev=(dev, y_dev), folds=3, C=1.0, n_jobs=1, progress=True)
    assert (
        "probing 4 cells x 1 C x 3 folds = 12 fits (+ 4 on all of them, scored on dev) on 60 texts, 8 dims, n_jobs=1"
        in caplog.text
    )
    err = capsys.readouterr().err
    assert "probe: 100%" in err and "16/16" in err  # 12 cross-validation fits and 4 for dev, on stderr, left
    assert len(table.rows) == 4
    analysis.probe(train, y, folds=3, C=1.0, n_jobs=1, progress=False)
    assert "probe:" not in capsys.readouterr().err


def test_the_bar_is_closed_before_an_error(monkeypatch, capsys):
    from tqdm import tqdm

    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise InputError("the third fit fails")
        return [0.5] * len(args[4])

    monkeypatch.setattr(analysis, "_fit_score", failing)
    train, y = _planted(60)
    with pytest.raises(InputError, match="the third fit fails"):
        analysis.probe(train, y, folds=3, n_jobs=1, progress=True)
    assert calls == [1, 1, 1] and not [b for b in list(tqdm._instances) if b.desc == "probe"]


def test_small_features_are_probed_in_this_process_and_n_jobs_is_checked(caplog, monkeypatch):
    import joblib

    train, y = _planted(60)
    with caplog.at_level(logging.INFO, logger="hubembed"):
        table = analysis.probe(train, y, folds=3, C=1.0)  # 60 x 8: worker processes would cost more than they save
    assert "n_jobs=1" in caplog.text
    for version, kwargs in (("1.2.0", {}), ("1.3.2", {"return_as": "generator"})):  # older joblib: no unordered
        monkeypatch.setattr(joblib, "__version__", version)
        assert analysis._return_as() == kwargs
        assert analysis.probe(train, y, folds=3, C=1.0).rows == table.rows
    monkeypatch.undo()
    assert analysis.cpu_count() >= 1
    for bad in (0, -2, 1.5, True, "2"):
        with pytest.raises(InputError, match=r"n_jobs=.*; valid: a number of fits at once >= 1"):
            analysis.probe(train, y, n_jobs=bad)


@pytest.mark.parametrize(
    "labels, message",
    [
        (
            [f"text {i}" for i in range(60)],
            r"60 distinct value\(s\) over 60 texts \(60 of them only once, e.g. 'text 0'",
        ),
        ([0.5, 1.5, 2.5] * 20, r"numbers with decimals \(0.5, 1.5, 2.5\): a score rather than a class"),
        (["3.8", "4.2"] * 30, r"numbers with decimals \('3.8', '4.2'\)"),
        ([float("nan"), 1.0] * 30, r"numbers with decimals"),
        ([1, "a", None] * 20, r"classes of one type expected"),
        (["pos"] * 60, r"at least two classes; all 60 are 'pos'"),
        ([0] * 59 + [1], r"2 distinct value\(s\) over 60 texts \(1 of them only once, e.g. 1\)"),
        ([0, 1] * 10, r"20 labels for 60 texts"),
    ],
)
def test_labels_are_checked_before_any_fit(monkeypatch, labels, message):
    monkeypatch.setattr(analysis, "_fit_score", lambda *a, **k: pytest.fail("fitted before the labels were checked"))
    train, _ = _planted(60)
    with pytest.raises(InputError, match=message):
        analysis.probe(train, labels, n_jobs=1)


def test_whole_floats_and_number_strings_are_classes_and_dev_labels_are_checked(monkeypatch, caplog):
    train, y = _planted(60)
    dev, y_dev = _planted(40, seed=1)
    a = analysis.probe(train, y.astype(float), folds=3, C=1.0, n_jobs=1)
    b = analysis.probe(train, y.astype(str), folds=3, C=1.0, n_jobs=1)
    assert [r["cv_mean"] for r in a.rows] == [r["cv_mean"] for r in b.rows]
    monkeypatch.setattr(analysis, "_fit_score", lambda *a, **k: pytest.fail("fitted before the labels were checked"))
    with pytest.raises(InputError, match=r"dev labels: none is a class of the training labels .*1 and '1' differ"):
        analysis.probe(train, y.astype(str), dev=(dev, y_dev), n_jobs=1)  # '0'/'1' for training, 0/1 for dev
    with pytest.raises(InputError, match=r"dev: 3 labels for 40 texts"):
        analysis.probe(train, y, dev=(dev, [0, 1, 0]), n_jobs=1)
    with pytest.raises(InputError, match=r"dev labels: numbers with decimals"):
        analysis.probe(train, y, dev=(dev, y_dev + 0.5), n_jobs=1)
    with pytest.raises(InputError, match=r"folds=1; valid: a number of cross-validation folds >= 2"):
        analysis.probe(train, y, folds=1, n_jobs=1)
    monkeypatch.undo()
    with caplog.at_level(logging.WARNING, logger="hubembed"):
        t = analysis.probe(train, y, dev=(dev, np.where(y_dev == 1, 2, 0)), folds=3, C=1.0, n_jobs=1)
    assert "dev labels: 20 of 40 are no class of the training labels (e.g. 2): they count as errors" in caplog.text
    assert all(r["dev"] <= 0.5 for r in t.rows)


def test_the_probe_command_checks_jobs_before_reading_anything(capsys):
    from hubembed.cli import main

    args = ["probe", "--data", "no-such.tsv", "--text-column", "0", "--label-column", "1", "--jobs", "0"]
    assert main(args) == 1
    assert "--jobs=0; valid: a number of fits at once >= 1" in capsys.readouterr().err
