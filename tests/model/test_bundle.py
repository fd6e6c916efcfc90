"""Model folders: verified before unpickling, edits refused, written like any output."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnguard.data import clean_transactions
from churnguard.data.io import current_umask
from churnguard.exceptions import InvalidModelError
from churnguard.model import ChurnGuardModel
from churnguard.model.bundle import METADATA_FILE, MODEL_FILE, load_model, save_model


def _log(n: int = 300, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    counts = 1 + rng.poisson(3.0, n)
    owner = np.repeat(np.arange(n), counts)
    day = rng.integers(0, 700, len(owner))
    return pd.DataFrame(
        {
            "customer_id": np.char.add("k", owner.astype(str)),
            "date": pd.Timestamp("2023-01-01") + pd.to_timedelta(day, unit="D"),
            "amount": np.round(rng.gamma(2.0, 15.0, len(owner)), 2),
        }
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tx = clean_transactions(_log()).transactions
    model = ChurnGuardModel(
        value_model="bgnbd",
        max_snapshots=2,
        classifier_params={"lgbm_params": {"n_estimators": 10}},
    ).fit(tx)
    return save_model(model, tmp_path_factory.mktemp("bundle") / "model")


@pytest.fixture
def copy(saved: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "model"))


def test_a_saved_model_loads_and_records_its_digest(copy: Path) -> None:
    meta = json.loads((copy / METADATA_FILE).read_text())
    assert len(meta["model_sha256"]) == 64
    assert isinstance(load_model(copy), ChurnGuardModel)


def test_a_replaced_model_file_is_not_unpickled(copy: Path) -> None:
    (copy / MODEL_FILE).write_bytes(b"not the pickle that was trained")
    with pytest.raises(InvalidModelError, match="does not match the digest"):
        load_model(copy)


def test_edited_metadata_is_refused(copy: Path) -> None:
    meta = json.loads((copy / METADATA_FILE).read_text())
    meta["horizon_days"] = 30
    (copy / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(InvalidModelError, match="edited after training"):
        load_model(copy)


def test_another_format_is_refused_with_what_to_do(copy: Path) -> None:
    meta = json.loads((copy / METADATA_FILE).read_text())
    meta["format_version"] = 1
    (copy / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(InvalidModelError, match="Retrain"):
        load_model(copy)


def test_a_folder_that_is_not_a_model_says_what_it_found(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidModelError, match="notes.txt"):
        load_model(tmp_path)


def test_the_folder_gets_the_users_umask_and_leaves_no_temporaries(
    saved: Path, tmp_path: Path
) -> None:
    model = load_model(saved)
    old = os.umask(0o027)
    try:
        target = save_model(model, tmp_path / "m")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o750
    assert (target / MODEL_FILE).stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert current_umask() == old


def test_a_killed_save_is_cleaned_by_the_next_one(saved: Path, tmp_path: Path) -> None:
    # What a save killed mid-write leaves: a hidden working folder of a dead process.
    stale = tmp_path / ".m.999999999.abcd1234.cgtmp"
    stale.mkdir()
    (stale / MODEL_FILE).write_bytes(b"half")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    save_model(load_model(saved), tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_a_save_over_an_existing_folder_cleans_its_leftovers(saved: Path, tmp_path: Path) -> None:
    # Retraining into the same --model-dir: the leftovers of a killed save sit beside the
    # folder (a working folder, and the old folder moved aside just before the swap).
    target = save_model(load_model(saved), tmp_path / "m")
    old = time.time() - 2 * 3600
    for name in (".m.999999999.abcd1234.cgtmp", ".m.999999999.old.cgtmp"):
        (tmp_path / name).mkdir()
        (tmp_path / name / MODEL_FILE).write_bytes(b"half")
        os.utime(tmp_path / name, (old, old))
    save_model(load_model(target), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert isinstance(load_model(target), ChurnGuardModel)


def test_an_edited_version_is_refused(copy: Path) -> None:
    meta = json.loads((copy / METADATA_FILE).read_text())
    meta["churnguard_version"] = "9.9.9"
    (copy / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(InvalidModelError, match="churnguard_version"):
        load_model(copy)


def test_a_model_of_another_version_loads_with_a_warning(
    copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = load_model(copy)
    model.churnguard_version_ = "0.0.1"  # as if an older churnguard had trained it
    target = save_model(model, copy.parent / "old")
    assert json.loads((target / METADATA_FILE).read_text())["churnguard_version"] == "0.0.1"
    with caplog.at_level("WARNING", logger="churnguard.model.bundle"):
        load_model(target)
    assert "trained with churnguard 0.0.1" in caplog.text


def test_metadata_records_the_churn_level_choice(copy: Path) -> None:
    meta = json.loads((copy / METADATA_FILE).read_text())
    level = meta["churn_model"]["level"]
    assert set(level) == {"applied", "source", "weight", "offset_log_odds", "reason", "sources"}
    assert level["applied"] == (meta["churn_model"]["chosen"] == "prior")
    assert level["source"] in ("none", "season", "latest")
    if level["source"] == "none":  # no correction, so no offset
        assert level["offset_log_odds"] == 0.0
        assert level["weight"] == 0.0


def test_metadata_records_the_level_blend(copy: Path) -> None:
    meta = json.loads((copy / METADATA_FILE).read_text())
    blend = meta["churn_model"]["level_blend"]
    assert set(blend) == {
        "applied", "offset_log_odds", "scale", "calibration_spread", "learned_mean",
        "prior_mean", "prior_weight", "reason",
    }  # fmt: skip
    model = load_model(copy)
    assert blend["offset_log_odds"] == pytest.approx(model.level_blend_.offset)
    assert blend["scale"] == pytest.approx(model.level_blend_.scale)
    if meta["churn_model"]["chosen"] == "prior":  # the prior keeps its own level
        assert not blend["applied"] and blend["offset_log_odds"] == 0.0
        assert blend["scale"] == 1.0


def test_metadata_records_the_spend_level(copy: Path) -> None:
    meta = json.loads((copy / METADATA_FILE).read_text())
    level = meta["value_choice"]["spend_level"]
    assert set(level) == {"source", "weight", "factor", "reason", "sources"}
    assert level["source"] in ("none", "season")
    if level["source"] == "none":
        assert level["factor"] == 1.0


def test_predict_features_leaves_the_callers_frame_alone(saved: Path) -> None:
    model = load_model(saved)
    tx = clean_transactions(_log()).transactions
    frame = model.features(tx, "2024-06-30")
    before = frame.copy()
    scored = model.predict_features(frame, reasons_limit=5)
    pd.testing.assert_frame_equal(frame, before)
    assert "churn_probability" in scored.columns
    assert "churn_probability" not in frame.columns
    # copy=False is the documented way to let it add columns in place
    model.predict_features(frame, reasons_limit=0, copy=False)
    assert "churn_probability" in frame.columns
