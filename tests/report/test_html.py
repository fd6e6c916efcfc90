"""Tests for churnguard.report.html: HTML content, escaping, inputs, and a real browser."""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from churnguard.exceptions import InputDataError
from churnguard.report import figures as report_figures
from churnguard.report.figures import (
    cumulative_share,
    format_compact,
    format_pct,
    top_share,
)
from churnguard.report.html import REQUIRED_COLUMNS, build_report

PLOTS = ("plot-pareto", "plot-tier-risk", "plot-clv-distribution", "plot-segment-churn")
EVALUATION_PLOTS = ("plot-gains", "plot-calibration")
SECTIONS = (
    "section-kpis",
    "section-pareto",
    "section-tier-risk",
    "section-clv-distribution",
    "section-segment-churn",
    "section-contact-list",
)
NASTY_ID = "<b>x</b>"
CHROMIUM = Path("/usr/bin/chromium")


def make_scores(n: int = 120, seed: int = 11) -> tuple[pd.DataFrame, pd.Series]:
    """Scoring-contract frame with every optional column, and outcomes by customer_id."""
    rng = np.random.default_rng(seed)
    clv = rng.lognormal(5.0, 1.2, n)
    p = rng.beta(2.0, 3.0, n)
    var = p * clv
    rank = pd.Series(clv).rank(pct=True, method="first").to_numpy()
    tier = np.where(rank > 0.8, "vip", np.where(rank > 0.2, "stable", "low"))
    segments = np.array(["champions", "loyal", "at risk", "hibernating", "can't lose"])
    scores = pd.DataFrame(
        {
            "customer_id": [f"{i:05d}" for i in range(n)],
            "priority": pd.Series(-var).rank(method="first").astype(int),
            "churn_probability": p,
            "p_alive": np.clip(1.0 - p + rng.normal(0.0, 0.15, n), 0.0, 1.0),
            "expected_purchases": rng.gamma(2.0, 1.0, n),
            "predicted_clv": clv,
            "value_at_risk": var,
            "value_tier": tier,
            "segment": segments[rng.integers(0, segments.size, n)],
            "action": np.where(tier == "vip", "personal call", "e-mail offer"),
            "reasons": "long gap for this customer; spend falling",
            "historical_revenue": clv * rng.lognormal(0.0, 0.4, n),
            "contact": var >= np.quantile(var, 0.5),
            "expected_net_benefit": 0.2 * var - 5.0,
            "growth_candidate": rng.uniform(size=n) < 0.05,
        }
    )
    scores.loc[scores["priority"] == 1, "customer_id"] = NASTY_ID
    outcomes = pd.Series((rng.uniform(size=n) < p).astype(int), index=scores["customer_id"])
    return scores, outcomes


def minimal_scores(clv: list[float], p: list[float]) -> pd.DataFrame:
    n = len(clv)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "priority": np.arange(1, n + 1),
            "churn_probability": p,
            "p_alive": 0.5,
            "expected_purchases": 1.0,
            "predicted_clv": clv,
            "value_at_risk": np.multiply(clv, p),
            "value_tier": "stable",
            "segment": "loyal",
            "action": "e-mail",
            "reasons": "r",
        }
    )


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    scores, outcomes = make_scores()
    folder = tmp_path_factory.mktemp("reports")
    return {
        "plain": build_report(scores, folder / "plain.html"),
        "evaluated": build_report(
            scores, folder / "evaluated.html", outcomes=outcomes, summary={"model": "<lgbm>"}
        ),
    }


def rows_of(page: str, table_id: str) -> list[str]:
    table = re.search(rf'<table id="{table_id}">.*?</table>', page, re.S)
    assert table is not None, f"table {table_id} missing"
    return re.findall(r"<tr>(.*?)</tr>", table.group(0).split("<tbody>")[1], re.S)


def images(page: str) -> dict[str, bytes]:
    found = re.findall(r'<img id="([^"]+)" alt="[^"]+" src="data:image/png;base64,([^"]+)"', page)
    return {img_id: base64.b64decode(data) for img_id, data in found}


# --------------------------------------------------------------------------- content
def test_report_has_sections_and_plots_without_outcomes(reports: dict[str, Path]) -> None:
    page = reports["plain"].read_text(encoding="utf-8")
    for element_id in SECTIONS + PLOTS:
        assert f'id="{element_id}"' in page
    for element_id in EVALUATION_PLOTS + ("section-model-evaluation", "section-summary"):
        assert f'id="{element_id}"' not in page
    assert set(images(page)) == set(PLOTS)


def test_report_with_outcomes_adds_evaluation(reports: dict[str, Path]) -> None:
    page = reports["evaluated"].read_text(encoding="utf-8")
    for element_id in SECTIONS + PLOTS + EVALUATION_PLOTS + ("metrics-table", "summary-table"):
        assert f'id="{element_id}"' in page
    metrics = rows_of(page, "metrics-table")
    assert len(metrics) >= 2 and "model: churn_probability" in metrics[0]
    assert "&lt;lgbm&gt;" in page and "<lgbm>" not in page
    for img_id, png in images(page).items():
        with Image.open(io.BytesIO(png)) as im:
            assert im.format == "PNG" and im.width > 400 and im.height > 200, img_id
        assert b"http" not in png  # matplotlib's default PNG metadata names its web site


def test_report_is_self_contained_and_escaped(reports: dict[str, Path]) -> None:
    for path in reports.values():
        page = path.read_text(encoding="utf-8")
        assert "http://" not in page and "https://" not in page
        assert "<script" not in page.lower()
        assert "&lt;b&gt;x&lt;/b&gt;" in page
        assert NASTY_ID not in page
        assert re.search(r"<img [^>]*alt=\"[^\"]{10,}\"", page)


def test_contact_list_shows_top_n_flagged_customers_in_priority_order(tmp_path: Path) -> None:
    scores, _ = make_scores()
    page = build_report(scores, tmp_path / "r.html", top_n=7).read_text(encoding="utf-8")
    rows = rows_of(page, "contact-list")
    assert len(rows) == 7
    priorities = [int(re.findall(r'<td class="n">(\d+)</td>', row)[0]) for row in rows]
    flagged = scores.loc[scores["contact"], "priority"].sort_values()
    assert priorities == flagged.head(7).tolist()
    assert f"Top 7 of {int(scores['contact'].sum())} customers flagged" in page


def test_outcomes_align_by_customer_id_or_by_index(tmp_path: Path) -> None:
    scores, outcomes = make_scores()
    by_index = pd.Series(outcomes.to_numpy(), index=scores.index)
    shuffled = outcomes.iloc[np.random.default_rng(3).permutation(outcomes.size)]
    pages = [
        build_report(scores, tmp_path / f"{k}.html", outcomes=o).read_text(encoding="utf-8")
        for k, o in enumerate([by_index, shuffled])
    ]
    assert rows_of(pages[0], "metrics-table") == rows_of(pages[1], "metrics-table")


def test_minimal_frame_derives_risk_band_and_headline_figures(tmp_path: Path) -> None:
    scores = minimal_scores([10000.0, 400.0, 300.0, 200.0, 100.0], [0.6, 0.3, 0.29, 0.0, 1.0])
    before = scores.copy()
    page = build_report(scores, tmp_path / "r.html").read_text(encoding="utf-8")
    pd.testing.assert_frame_equal(scores, before)
    bands = re.findall(r'<td class="risk_band">(\w+)</td>', page)
    assert bands == ["High", "Medium", "Low", "Low", "High"]  # plain-English labels
    equity = '11.0k</div><div class="l">Customer equity'
    assert equity in page
    # Top 20% = the first of five customers: 10000 / 11000 of the CLV.
    assert '91%</div><div class="l">Share of CLV held by the top 20%' in page
    assert "Share of revenue" not in page


def test_atomic_write_replaces_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "report.html"
    out.parent.mkdir()
    out.write_text("old", encoding="utf-8")
    scores = minimal_scores([100.0, 50.0], [0.2, 0.7])
    with pytest.raises(InputDataError):
        build_report(scores.drop(columns="segment"), out)
    assert out.read_text(encoding="utf-8") == "old"
    assert build_report(scores, str(out)) == out
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]
    assert out.stat().st_mode & 0o044 == 0o044


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    scores = minimal_scores([100.0, 50.0], [0.2, 0.7])
    with pytest.raises(TypeError, match="pandas DataFrame"):
        build_report(scores.to_dict(), out)  # type: ignore[arg-type]
    with pytest.raises(InputDataError, match=r"lacks column\(s\) \['reasons'\]"):
        build_report(scores.drop(columns="reasons"), out)
    with pytest.raises(InputDataError, match="duplicated customer_id"):
        build_report(scores.assign(customer_id="same"), out)
    with pytest.raises(InputDataError, match="within \\[0, 1\\]"):
        build_report(scores.assign(churn_probability=[20.0, 70.0]), out)
    with pytest.raises(InputDataError, match="missing or non-numeric"):
        build_report(scores.assign(predicted_clv=[1.0, np.nan]), out)
    with pytest.raises(InputDataError, match="matches no scored customer"):
        build_report(scores, out, outcomes=pd.Series([1, 0], index=["x", "y"]))
    with pytest.raises(InputDataError, match="0/1 churn labels"):
        build_report(scores, out, outcomes=pd.Series([1, 3], index=["c0", "c1"]))
    with pytest.raises(TypeError, match="top_n"):
        build_report(scores, out, top_n=0)
    assert not out.exists()
    assert set(REQUIRED_COLUMNS) <= set(scores.columns)


def test_single_class_outcomes_skip_evaluation_plots(tmp_path: Path) -> None:
    scores = minimal_scores([100.0, 50.0, 20.0], [0.2, 0.7, 0.4])
    outcomes = pd.Series([0, 0, np.nan], index=["c0", "c1", "c2"])
    page = build_report(scores, tmp_path / "r.html", outcomes=outcomes).read_text("utf-8")
    assert 'id="section-model-evaluation"' in page and 'id="plot-gains"' not in page
    assert "Evaluated on 2 of 3 customers" in page


# --------------------------------------------------------------------------- figures module
def test_format_helpers() -> None:
    assert [format_compact(x) for x in (3.14159, 980.4, 45_300.0, 1_250_000.0, -2e9)] == [
        "3.14",
        "980",
        "45.3k",
        "1.2M",
        "-2.0B",
    ]
    assert format_compact(float("nan")) == "n/a" and format_pct(float("inf")) == "n/a"
    assert format_pct(0.254) == "25%" and format_pct(0.254, 1) == "25.4%"


def test_cumulative_share_and_top_share() -> None:
    x, y = cumulative_share(pd.Series([1.0, 4.0, "bad", 5.0, np.nan]))
    np.testing.assert_allclose(x, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(y, [0.0, 0.5, 0.9, 1.0, 1.0, 1.0])
    assert top_share(pd.Series([5.0, 4.0, 1.0, 0.0, 0.0])) == pytest.approx(0.5)
    assert np.isnan(top_share(pd.Series([0.0, 0.0])))


def test_figures_are_detached_from_pyplot() -> None:
    import matplotlib.pyplot as plt

    scores, outcomes = make_scores(n=60, seed=5)
    frame = scores.assign(risk_band=np.where(scores["churn_probability"] >= 0.6, "high", "low"))
    before = plt.get_fignums()
    figures = [
        report_figures.pareto_figure(frame),
        report_figures.tier_risk_figure(frame),
        report_figures.clv_figure(frame),
        report_figures.segment_figure(frame),
        report_figures.gains_figure(outcomes.set_axis(frame.index), frame),
        report_figures.calibration_figure(
            outcomes.set_axis(frame.index), frame["churn_probability"]
        ),
    ]
    assert plt.get_fignums() == before
    assert all(len(fig.axes) >= 1 for fig in figures)
    assert set(report_figures.__all__) <= set(dir(report_figures))


# --------------------------------------------------------------------------- browser
def _chromium(*args: str, user_dir: Path) -> subprocess.CompletedProcess[str]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing on CI; install it with `apt-get install chromium`.")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={user_dir}",
    ]  # fmt: skip
    return subprocess.run(
        [str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.browser
@pytest.mark.slow
def test_report_screenshot_in_headless_chromium(reports: dict[str, Path], tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    url = reports["evaluated"].resolve().as_uri()
    done = _chromium(
        f"--screenshot={shot}", "--window-size=1280,2400", url, user_dir=tmp_path / "profile"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 50_000
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=float)
    assert pixels.shape == (2400, 1280, 3)
    assert pixels.std() > 20.0
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200


@pytest.mark.browser
def test_report_images_decode_in_headless_chromium(
    reports: dict[str, Path], tmp_path: Path
) -> None:
    page = reports["evaluated"].read_text(encoding="utf-8")
    # A probe script added to a copy only (the report itself has none) records, after the
    # load event, whether the browser decoded each image; a broken image is the control.
    probe = (
        '<img id="broken-control" alt="control" src="data:image/png;base64,AAAA">'
        '<script>addEventListener("load",()=>{for(const i of document.images)'
        "i.dataset.decoded=String(i.complete&&i.naturalWidth>0);"
        'document.body.dataset.checked="1";});</script></body>'
    )
    copy = tmp_path / "probe.html"
    copy.write_text(page.replace("</body>", probe), encoding="utf-8")
    done = _chromium(
        "--virtual-time-budget=10000", "--dump-dom", copy.as_uri(), user_dir=tmp_path / "p"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert 'data-checked="1"' in dom
    decoded = dict(re.findall(r'<img id="([^"]+)"[^>]*data-decoded="(\w+)"', dom))
    assert decoded.pop("broken-control") == "false"
    assert decoded == dict.fromkeys(PLOTS + EVALUATION_PLOTS, "true")


def test_without_a_campaign_only_contacts_that_pay_are_summed(tmp_path: Path) -> None:
    scores, _ = make_scores()
    benefit = np.linspace(-50.0, 30.0, len(scores))
    scores = scores.drop(columns="contact").assign(expected_net_benefit=benefit)
    page = build_report(scores, tmp_path / "r.html").read_text(encoding="utf-8")
    worth = benefit > 0
    assert f'{int(worth.sum()):,}</div><div class="l">Customers worth a contact' in page
    total = format_compact(float(benefit[worth].sum()))
    assert f'{total}</div><div class="l">Expected net benefit of contacting them' in page
    assert "net benefit of contacts" not in page  # no campaign, no contacts to sum
