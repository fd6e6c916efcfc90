"""Tests for churnguard.decision.segments: RFM scores and rule-based segments."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnguard.decision.segments import (
    SegmentRule,
    SegmentRules,
    assign_segments,
    load_segment_rules,
    rfm_score,
    rfm_scores,
)
from churnguard.exceptions import InputDataError


def _raw(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i:03d}" for i in range(n)],
            "days_since_last": rng.permutation(n) * 3.0,
            "frequency": rng.permutation(n),
            "monetary_value": rng.permutation(n) * 1.5 + 10,
        }
    )


def _scores(rows: list[tuple[int, ...]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["r_score", "f_score", "m_score"])


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- RFM scores


@pytest.mark.parametrize("n", [10, 1000])
def test_distinct_values_split_into_exact_quintiles(n: int) -> None:
    scores = rfm_scores(_raw(n, seed=1))
    for col in scores.columns:
        assert scores[col].value_counts().to_dict() == {k: n // 5 for k in range(1, 6)}


def test_score_direction_5_is_best() -> None:
    df = pd.DataFrame(
        {
            "days_since_last": [1.0, 400.0, 50.0, 100.0, 200.0],
            "frequency": [9, 0, 3, 4, 5],
            "monetary_value": [500.0, 1.0, 20.0, 30.0, 40.0],
        }
    )
    scores = rfm_scores(df)
    assert scores.iloc[0].tolist() == [5, 5, 5]  # most recent, most frequent, highest spend
    assert scores.iloc[1].tolist() == [1, 1, 1]
    assert scores["r_score"].tolist() == [5, 1, 4, 3, 2]


def test_heavy_ties_share_a_score_and_do_not_depend_on_row_order() -> None:
    rng = np.random.default_rng(2)
    freq = np.r_[np.zeros(60), np.ones(20), rng.integers(2, 9, 20)]
    df = pd.DataFrame(
        {"days_since_last": rng.uniform(0, 300, 100), "frequency": freq, "monetary_value": 10.0}
    )
    scores = rfm_scores(df)
    assert (scores.loc[freq == 0, "f_score"] == 1).all()  # one-time buyers are the worst
    assert (scores.loc[freq == 1, "f_score"] == 4).all()  # beats 60 of the 80 others
    assert scores.loc[freq == freq.max(), "f_score"].eq(5).all()
    assert (scores["m_score"] == 3).all()  # a constant column carries no information
    shuffled = df.iloc[np.random.default_rng(3).permutation(len(df))]
    pd.testing.assert_frame_equal(rfm_scores(shuffled).sort_index(), scores)


def test_small_bases_score_sensibly() -> None:
    one = rfm_scores(_raw(1, seed=4))
    assert one.iloc[0].tolist() == [3, 3, 3]
    two = rfm_scores(
        pd.DataFrame({"days_since_last": [5, 9], "frequency": [1, 0], "monetary_value": [2, 1]})
    )
    assert two.to_numpy().tolist() == [[5, 5, 5], [1, 1, 1]]
    assert rfm_scores(_raw(0, seed=4)).empty


def test_rfm_scores_need_their_columns() -> None:
    with pytest.raises(InputDataError, match=r"days_since_last.*recency_col="):
        rfm_scores(_raw(5, seed=5).drop(columns="days_since_last"))
    renamed = _raw(5, seed=5).rename(columns={"days_since_last": "dsl"})
    assert rfm_scores(renamed, recency_col="dsl").shape == (5, 3)


# --------------------------------------------------------------------------- segments


@pytest.mark.parametrize(
    ("r", "f", "segment"),
    [
        (5, 5, "champions"),
        (5, 4, "champions"),
        (4, 5, "loyal"),
        (3, 4, "loyal"),
        (1, 5, "cant_lose"),
        (2, 5, "cant_lose"),
        (2, 3, "at_risk"),
        (1, 4, "at_risk"),
        (4, 2, "potential_loyalist"),
        (5, 3, "potential_loyalist"),
        (5, 1, "new"),
        (4, 1, "promising"),
        (3, 3, "need_attention"),
        (3, 1, "about_to_sleep"),
        (3, 2, "about_to_sleep"),
        (1, 1, "lost"),
        (2, 1, "hibernating"),
        (1, 2, "hibernating"),
    ],
)
def test_default_segment_map(r: int, f: int, segment: str) -> None:
    assert assign_segments(_scores([(r, f, 3)])).iloc[0] == segment


def test_default_map_covers_every_score_combination() -> None:
    grid = _scores(list(itertools.product(range(1, 6), repeat=3)))
    segments = assign_segments(grid)
    assert "other" not in set(segments)
    assert segments.name == "segment" and len(segments) == 125


def test_segments_from_raw_columns_match_segments_from_scores() -> None:
    raw = _raw(40, seed=6)
    pd.testing.assert_series_equal(assign_segments(raw), assign_segments(rfm_scores(raw)))


def test_out_of_range_scores_are_rejected() -> None:
    with pytest.raises(InputDataError, match="1..5"):
        assign_segments(_scores([(6, 1, 1)]))


def test_rfm_score_uses_configured_weights(tmp_path: Path) -> None:
    scores = _scores([(5, 1, 2), (1, 1, 1)])
    assert rfm_score(scores).tolist() == [8.0, 3.0]
    path = _write(
        tmp_path,
        '[weights]\nr = 2.0\nf = 1.0\nm = 0.0\n[[segments]]\nname = "all"\n',
    )
    assert rfm_score(scores, path).tolist() == [11.0, 3.0]
    assert rfm_score(scores, load_segment_rules(path)).name == "rfm_score"


def test_user_rules_first_match_wins_and_unmatched_is_other(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[[segments]]
name = "big_spenders"
m = [5, 5]

[[segments]]
name = "recent"
description = "bought lately"
r = [4, 5]
""",
    )
    rules = load_segment_rules(path)
    assert rules.names == ["big_spenders", "recent", "other"]
    got = assign_segments(_scores([(5, 1, 5), (5, 1, 1), (1, 1, 1)]), rules)
    assert got.tolist() == ["big_spenders", "recent", "other"]
    assert list(got.cat.categories) == ["big_spenders", "recent", "other"]
    assert rules.weights == {"r": 1.0, "f": 1.0, "m": 1.0}


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ('[[segments]]\nname = "a"\nr = [0, 5]\n', ValueError, "1 <= low <= high <= 5"),
        ('[[segments]]\nname = "a"\nr = [4, 2]\n', ValueError, "1 <= low <= high <= 5"),
        ('[[segments]]\nname = "a"\nr = 5\n', ValueError, r"r = \[4, 5\]"),
        ('[[segments]]\nname = "a"\nrecency = [1, 2]\n', ValueError, r"unknown key.*recency"),
        ('[[segments]]\nname = "a"\n[extras]\nx = 1\n', ValueError, r"unknown key.*extras"),
        ('[weights]\nq = 1.0\n[[segments]]\nname = "a"\n', ValueError, r"unknown key.*'q'"),
        ('[weights]\nr = -1.0\n[[segments]]\nname = "a"\n', ValueError, "weight r"),
        ('[[segments]]\nname = "Champions!"\n', ValueError, "snake_case"),
        ("[[segments]]\nr = [1, 2]\n", ValueError, "no name"),
        ("[weights]\nr = 1.0\n", ValueError, r"\[\[segments\]\]"),
        (
            '[[segments]]\nname = "a"\n[[segments]]\nname = "b"\nr = [1, 2]\n',
            ValueError,
            "catch-all segment 'a'",
        ),
        (
            '[[segments]]\nname = "a"\nr = [1, 2]\n[[segments]]\nname = "a"\nr = [3, 5]\n',
            ValueError,
            "more than once",
        ),
        ("[[segments]\nname =", ValueError, "not valid TOML"),
    ],
)
def test_config_errors(tmp_path: Path, text: str, error: type[Exception], match: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(error, match=match):
        load_segment_rules(path)


def test_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="segments.toml"):
        load_segment_rules(tmp_path / "nope.toml")


def test_rules_built_in_code() -> None:
    rules = SegmentRules((SegmentRule("top", r=(5, 5)), SegmentRule("rest")), {"r": 1.0})
    assert rules.names == ["top", "rest"]
    assert rules.weights == {"r": 1.0, "f": 1.0, "m": 1.0}
    assert assign_segments(_scores([(5, 1, 1), (4, 5, 5)]), rules).tolist() == ["top", "rest"]
    with pytest.raises(TypeError, match="SegmentRules"):
        assign_segments(_scores([(5, 1, 1)]), rules=42)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rename_segments_equals_renaming_the_text(seed: int) -> None:
    from churnguard.decision.segments import rename_segments

    rng = np.random.default_rng(seed)
    names = ["loyal", "champions", "at risk", "other", "hibernating"]
    codes = rng.integers(-1 if seed == 2 else 0, len(names), 5_000).astype(np.int16)
    segment = pd.Series(pd.Categorical.from_codes(codes, categories=pd.Index(names)))
    mask = rng.random(5_000) < (0.0 if seed == 1 else 0.1)
    text = np.asarray(segment.astype(str), dtype=object)
    text[mask] = "win-back"
    expected = pd.Categorical(text)
    got = rename_segments(segment, mask, "win-back")
    assert list(got.categories) == list(expected.categories)
    np.testing.assert_array_equal(got.codes, expected.codes)
    assert got.codes.dtype == expected.codes.dtype
