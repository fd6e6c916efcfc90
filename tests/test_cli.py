"""The CLI contract: train then score on CDNOW, the retention list, and bad input.

One model is trained per session on the 2,357-customer CDNOW sample (converted to
CSV with ISO dates) through the real ``churnguard train`` command, logging to a
throw-away SQLite MLflow store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churnguard.cli import app
from churnguard.data import load_transactions, write_cdnow
from churnguard.decision.retention import CONTRACT_COLUMNS
from churnguard.model import load_model

runner = CliRunner()


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="session")
def cdnow_csv(workdir: Path) -> Path:
    return write_cdnow(workdir / "cdnow.csv", sample=True)


@pytest.fixture(scope="session")
def trained(workdir: Path, cdnow_csv: Path) -> Path:
    model_dir = workdir / "model"
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    args = ["train", "--transactions", str(cdnow_csv), "--horizon-days", "90", "--model-dir",
            str(model_dir), "--value-model", "bgnbd", "--max-snapshots", "6"]  # fmt: skip
    # MLflow puts a SQLite store's run files in ./mlruns of the current folder.
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        result = runner.invoke(app, args, env=env)
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    assert "ROC-AUC" in result.output and "MLflow run" in result.output
    # The summary calls the validation out of time only when the plan is (else optimistic).
    honest = json.loads((model_dir / "metadata.json").read_text())["snapshots"]["validation"]
    label = "out-of-time validation:" if honest["honest"] else "(optimistic: closer than"
    assert label in result.output
    return model_dir


@pytest.fixture(scope="session")
def scored(workdir: Path, cdnow_csv: Path, trained: Path) -> pd.DataFrame:
    out = workdir / "list.csv"
    result = runner.invoke(
        app, ["score", "--transactions", str(cdnow_csv), "--model", str(trained), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return pd.read_csv(out, dtype={"customer_id": str})


@pytest.mark.slow
def test_model_dir_metadata(trained: Path) -> None:
    meta = json.loads((trained / "metadata.json").read_text())
    assert meta["horizon_days"] == 90
    assert meta["training_data_end"] == "1998-06-30"
    assert meta["value_model"]["purchase_model"] == "BG/NBD"
    assert set(meta["value_model"]["purchase_params"]) == {"r", "alpha", "a", "b"}
    assert set(meta["value_model"]["spend_params"]) == {"p", "q", "v"}
    assert meta["value_model"]["time_unit"] == "W"
    assert "days_since_last" in meta["feature_names"] and meta["churnguard_version"]
    for key in ("roc_auc", "pr_auc", "brier", "top_decile_lift"):
        assert 0 <= meta["metrics"][key] < 100


@pytest.mark.slow
def test_retention_list_contract(scored: pd.DataFrame, cdnow_sample_tx: pd.DataFrame) -> None:
    assert list(scored.columns[: len(CONTRACT_COLUMNS)]) == CONTRACT_COLUMNS
    assert scored["customer_id"].is_unique
    assert set(scored["customer_id"]) == set(cdnow_sample_tx["customer_id"])
    assert scored["customer_id"].str.len().eq(5).all()  # 00001 stays 00001
    assert scored["priority"].tolist() == list(range(1, len(scored) + 1))
    assert scored["value_at_risk"].is_monotonic_decreasing
    # Value at risk is the churn probability times the value if retained; the CSV rounds
    # money to cents and probabilities to 4 decimals, hence the tolerance.
    churn, kept = scored["churn_probability"], scored["value_if_retained"]
    slack = 0.006 + 5e-5 * kept + 0.005 * churn
    assert ((scored["value_at_risk"] - churn * kept).abs() <= slack).all()
    assert scored["churn_probability"].between(0, 1).all()
    known = scored["p_alive"].notna()
    assert known.any() and scored.loc[known, "p_alive"].between(0, 1).all()
    # Left empty only where BG/NBD assumes it: customers without a repeat purchase.
    assert (scored.loc[~known, "frequency"] == 0).all()
    assert set(scored["value_tier"]) == {"vip", "stable", "low"}
    assert scored["value_tier"].value_counts(normalize=True)["vip"] == pytest.approx(0.2, abs=0.01)
    assert scored["segment"].notna().all() and scored["action"].notna().all()
    assert scored["reasons"].str.contains("risk:").all()


@pytest.mark.slow
def test_score_as_of_uses_only_the_past(workdir: Path, cdnow_csv: Path, trained: Path) -> None:
    """Scoring as of a date from the full log equals scoring a log cut at that date."""
    full = pd.read_csv(cdnow_csv, dtype={"customer_id": str})
    cut = workdir / "cut.csv"
    full[full["date"] <= "1997-03-31"].to_csv(cut, index=False)
    outs = []
    for src, name in ((cdnow_csv, "asof_full.csv"), (cut, "asof_cut.csv")):
        result = runner.invoke(
            app,
            [
                "score",
                "-t",
                str(src),
                "-m",
                str(trained),
                "--as-of",
                "1997-03-31",
                "-o",
                str(workdir / name),
            ],
        )
        assert result.exit_code == 0, result.output
        outs.append(pd.read_csv(workdir / name, dtype={"customer_id": str}))
    pd.testing.assert_frame_equal(outs[0], outs[1])
    first_buy = full.groupby("customer_id")["date"].min()
    assert set(outs[0]["customer_id"]) == set(first_buy[first_buy <= "1997-03-31"].index)


@pytest.mark.slow
def test_parquet_in_and_out_and_column_flags(workdir: Path, cdnow_csv: Path, trained: Path) -> None:
    raw = pd.read_csv(cdnow_csv, dtype={"customer_id": str}).rename(
        columns={"customer_id": "client", "date": "day", "amount": "revenue"}
    )
    src = workdir / "renamed.parquet"
    raw.to_parquet(src)
    out = workdir / "list.parquet"
    result = runner.invoke(
        app,
        [
            "score",
            "-t",
            str(src),
            "-m",
            str(trained),
            "-o",
            str(out),
            "--customer-col",
            "client",
            "--date-col",
            "day",
            "--amount-col",
            "revenue",
        ],
    )
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(out)["customer_id"].str.len().eq(5).all()


@pytest.mark.slow
def test_bad_rows_go_to_quarantine_file(workdir: Path, cdnow_csv: Path, trained: Path) -> None:
    raw = pd.read_csv(cdnow_csv, dtype={"customer_id": str})
    bad = pd.DataFrame(
        {
            "customer_id": [None, "00001", "00002"],
            "date": ["1997-05-01", "someday", "1997-05-01"],
            "quantity": [1, 1, 1],
            "amount": [1.0, 2.0, "lots"],
        }
    )
    src = workdir / "dirty.csv"
    pd.concat([raw, bad], ignore_index=True).to_csv(src, index=False)
    out = workdir / "dirty_list.csv"
    result = runner.invoke(app, ["score", "-t", str(src), "-m", str(trained), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 unusable rows" in result.output
    q = pd.read_csv(workdir / "dirty_list.quarantine.csv")
    assert sorted(q["reason"]) == ["missing customer id", "non-numeric amount", "unparsable date"]


@pytest.mark.slow
def test_an_output_over_the_input_log_is_refused(workdir: Path, trained: Path) -> None:
    log = workdir / "own.csv"
    log.write_text("customer_id,date,amount\n00042,1997-01-01,5\n00042,1997-02-01,7\n")
    before = log.read_bytes()
    _fails(["features", "-t", str(log), "--out", str(log)], "is the input log")
    _fails(["score", "-t", str(log), "-m", str(trained), "-o", str(log)], "is the input log")
    assert log.read_bytes() == before


def _fails(args: list[str], *needles: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output


@pytest.mark.slow
def test_bad_input_is_one_paragraph_and_exit_2(
    workdir: Path, cdnow_csv: Path, trained: Path
) -> None:
    out = str(workdir / "x.csv")
    _fails(
        ["score", "-t", str(workdir / "missing.csv"), "-m", str(trained), "-o", out],
        "does not exist",
    )
    _fails(
        ["score", "-t", str(cdnow_csv), "-m", str(trained), "-o", out, "--amount-col", "value"],
        "'value' not found",
        "--amount-col",
    )
    dates = workdir / "dates.csv"
    dates.write_text("customer_id,date,amount\n1,yesterday,3\n2,tomorrow,4\n")
    _fails(
        ["score", "-t", str(dates), "-m", str(trained), "-o", out],
        "could be parsed",
        "--date-format",
    )
    amounts = workdir / "amounts.csv"
    amounts.write_text("customer_id,date,amount\n1,2024-01-01,three\n")
    _fails(["score", "-t", str(amounts), "-m", str(trained), "-o", out], "numeric")
    empty = workdir / "empty.csv"
    empty.write_text("")
    _fails(["score", "-t", str(empty), "-m", str(trained), "-o", out], "empty")
    _fails(["score", "-t", str(cdnow_csv), "-m", str(workdir), "-o", out], "not a churnguard model")
    _fails(
        ["score", "-t", str(cdnow_csv), "-m", str(workdir / "nomodel"), "-o", out], "does not exist"
    )
    short = workdir / "short.csv"
    short.write_text("customer_id,date,amount\n1,2024-01-01,3\n1,2024-01-05,4\n")
    _fails(
        ["train", "-t", str(short), "--model-dir", str(workdir / "m2"), "--no-mlflow"], "horizon"
    )


@pytest.mark.slow
def test_a_short_history_says_its_validation_is_optimistic(tmp_path: Path, cdnow_csv: Path) -> None:
    # Eight months of CDNOW with a 90-day horizon: no room for a horizon between the
    # learning and evaluation snapshots, so the figures come from adjacent ones.
    log = pd.read_csv(cdnow_csv, dtype={"customer_id": str})
    short = tmp_path / "eight_months.csv"
    log.loc[log["date"] <= "1997-08-31"].to_csv(short, index=False)
    args = ["train", "-t", str(short), "--horizon-days", "90", "--max-snapshots", "6",
            "--model-dir", str(tmp_path / "model"), "--no-mlflow"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "validation on adjacent snapshots (optimistic: closer than the horizon)" in result.output
    assert "out-of-time validation" not in result.output


@pytest.mark.slow
def test_console_script_has_no_traceback(workdir: Path) -> None:
    """The installed entry point, in a real process, exits 2 with one paragraph."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "churnguard.cli",
            "score",
            "-t",
            str(workdir / "none.csv"),
            "-m",
            "x",
            "-o",
            "y.csv",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "does not exist" in proc.stderr


@pytest.mark.slow
def test_evaluate_against_outcomes(workdir: Path, cdnow_csv: Path) -> None:
    """A model trained on data to 1997-09-30 is evaluated on the following 90 days."""
    full = pd.read_csv(cdnow_csv, dtype={"customer_id": str})
    early = workdir / "to_0930.csv"
    full[full["date"] <= "1997-09-30"].to_csv(early, index=False)
    model_dir = workdir / "model_0930"
    result = runner.invoke(
        app,
        [
            "train",
            "-t",
            str(early),
            "--model-dir",
            str(model_dir),
            "--no-mlflow",
            "--value-model",
            "bgnbd",
            "--max-snapshots",
            "6",
        ],
    )
    assert result.exit_code == 0, result.output
    out_dir = workdir / "eval"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "-t",
            str(cdnow_csv),
            "-m",
            str(model_dir),
            "--as-of",
            "1997-09-30",
            "--out-dir",
            str(out_dir),
            "--no-mlflow",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "out-of-time evaluation as of 1997-09-30" in result.output
    table = pd.read_csv(out_dir / "metrics.csv", index_col=0)
    assert list(table.index) == ["churnguard", "recency", "btyd_expected", "btyd_p_no_purchase"]
    assert 0.6 < table.loc["churnguard", "roc_auc"] < 1
    assert table.loc["churnguard", "ece"] < 0.1
    assert (out_dir / "gains.png").stat().st_size > 1000
    assert (out_dir / "reliability.png").stat().st_size > 1000
    # Before the end of the training data: the headline says the figures are optimistic.
    result = runner.invoke(
        app,
        ["evaluate", "-t", str(cdnow_csv), "-m", str(model_dir), "--as-of", "1997-06-30",
         "--out-dir", str(workdir / "eval_in_sample"), "--no-mlflow"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "out-of-time evaluation" not in result.output
    assert "partly in-sample: the model was trained on data up to 1997-09-30" in result.output
    _fails(
        [
            "evaluate",
            "-t",
            str(cdnow_csv),
            "-m",
            str(model_dir),
            "--as-of",
            "1998-06-01",
            "--no-mlflow",
        ],
        "outcome window",
    )


@pytest.mark.slow
def test_report_command_from_scores(workdir: Path, scored: pd.DataFrame) -> None:
    out = workdir / "report.html"
    result = runner.invoke(
        app,
        ["report", "--scores", str(workdir / "list.csv"), "--out", str(out), "--currency", "EUR"],
    )
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert 'id="plot-pareto"' in html and 'id="plot-tier-risk"' in html
    assert str(scored["customer_id"].iloc[0]) in html
    # As the report of 'score --report': the value if retained shown, money in the currency.
    assert "<th>Value if retained</th>" in html
    assert "EUR" in html


@pytest.mark.slow
def test_partitioned_score_equals_in_memory(workdir: Path, cdnow_csv: Path, trained: Path) -> None:
    src = workdir / "cdnow.parquet"
    pd.read_csv(cdnow_csv, dtype={"customer_id": str}).to_parquet(src)
    lists = []
    for extra, name in (([], "mem.parquet"), (["--partitions", "3"], "part.parquet")):
        out = workdir / name
        result = runner.invoke(
            app, ["score", "-t", str(src), "-m", str(trained), "-o", str(out), *extra]
        )
        assert result.exit_code == 0, result.output
        lists.append(pd.read_parquet(out))
    assert "3 partitions" in result.output
    pd.testing.assert_frame_equal(
        lists[0][CONTRACT_COLUMNS], lists[1][CONTRACT_COLUMNS], check_dtype=False
    )


@pytest.mark.slow
def test_value_in_the_list_is_net_of_returns(
    workdir: Path, cdnow_csv: Path, trained: Path, scored: pd.DataFrame
) -> None:
    tx = pd.read_csv(cdnow_csv, dtype={"customer_id": str})
    top = scored.sort_values("value_if_retained", ascending=False)["customer_id"].tolist()
    everything, quarter = top[0], top[1]
    spent = tx.groupby("customer_id")["amount"].sum()
    last = tx.groupby("customer_id")["date"].min()  # returns dated early: same as-of date
    returns = pd.DataFrame(
        {
            "customer_id": [everything, quarter],
            "date": [last[everything], last[quarter]],
            "amount": [-spent[everything], -spent[quarter] / 4],
        }
    )
    src = workdir / "returns.parquet"
    pd.concat([tx, returns], ignore_index=True).to_parquet(src)
    for extra in ([], ["--partitions", "2"]):
        out = workdir / f"returns{len(extra)}.parquet"
        result = runner.invoke(
            app, ["score", "-t", str(src), "-m", str(trained), "-o", str(out), *extra]
        )
        assert result.exit_code == 0, result.output
        got = pd.read_parquet(out).set_index("customer_id")
        before = scored.set_index("customer_id")
        # Each customer's kept share is shrunk towards the training base's (CDNOW: no
        # returns), so returning everything once leaves a sliver of the value.
        model = load_model(trained)
        prior = model.kept_prior_
        assert prior is not None and prior.share == 1.0
        feats = model.features(load_transactions(src).transactions).set_index("customer_id")
        for who, kept in ((everything, 0.0), (quarter, 0.75)):
            g = spent[who]
            assert feats.loc[who, "kept_share"] == pytest.approx(
                (kept * g + prior.weight) / (g + prior.weight)
            )
        rows = feats.loc[[everything, quarter]].reset_index()
        want = model.value_columns(rows)["value_if_retained"]
        np.testing.assert_allclose(
            got.loc[[everything, quarter], "value_if_retained"], want, rtol=1e-9
        )
        assert (
            got.loc[everything, "value_if_retained"]
            < 0.05 * before.loc[everything, "value_if_retained"]
        )
        # Net revenue 0 ranks last; the shrunk value if retained that is left keeps it out of
        # the VIPs, not necessarily out of the middle tier.
        assert before.loc[everything, "value_tier"] == "vip" != got.loc[everything, "value_tier"]
        # Its RFM monetary score is that of a one-time buyer (no repeat spend).
        nothing = before.loc[before["frequency"] == 0, "m_score"].unique().tolist()
        assert nothing == [got.loc[everything, "m_score"]] != [before.loc[everything, "m_score"]]
        assert (
            0.7 * before.loc[quarter, "value_if_retained"]
            < got.loc[quarter, "value_if_retained"]
            < before.loc[quarter, "value_if_retained"]
        )
        others = got.index.difference([everything, quarter])
        np.testing.assert_allclose(
            got.loc[others, "value_if_retained"].round(2),
            before.loc[others, "value_if_retained"],
        )


def test_json_log_lines_for_batch_schedulers(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("customer_id,date,amount\n1,2024-01-01,3\n1,2024-02-05,4\n,2024-01-01,5\n")
    proc = subprocess.run(
        [sys.executable, "-m", "churnguard.cli", "--log-format", "json", "features",
         "-t", str(log), "--out", str(tmp_path / "f.csv")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    assert any("unusable rows" in x["message"] for x in lines)
    assert (tmp_path / "f.quarantine.csv").exists()


def _features(tmp_path: Path, log: Path, out: str, *root: str) -> subprocess.CompletedProcess[str]:
    """``churnguard [root options] features`` in a real process (its log lines on stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "churnguard.cli", *root, "features", "-t", str(log),
         "--out", str(tmp_path / out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_raw_csv_writes_cells_as_they_are(tmp_path: Path) -> None:
    log = tmp_path / "inj.csv"
    log.write_text(
        'customer_id,date,amount\n"=HYPERLINK(""x"")",2024-01-01,10\n'
        '"=HYPERLINK(""x"")",2024-03-01,10\n@SUM(1+1),2024-01-05,5\n'
        "ok,2024-01-05,lots\n"
    )
    assert _features(tmp_path, log, "safe.csv").returncode == 0
    safe = pd.read_csv(tmp_path / "safe.csv", dtype=str)["customer_id"]
    assert set(safe) == {'\'=HYPERLINK("x")', "'@SUM(1+1)"}
    assert _features(tmp_path, log, "raw.csv", "--raw-csv").returncode == 0
    raw = pd.read_csv(tmp_path / "raw.csv", dtype=str)["customer_id"]
    assert set(raw) == {'=HYPERLINK("x")', "@SUM(1+1)"}
    # In one process (a notebook, the tests) the switch ends with the command.
    result = runner.invoke(
        app, ["--raw-csv", "features", "-t", str(log), "-o", str(tmp_path / "r.csv")]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["features", "-t", str(log), "-o", str(tmp_path / "s.csv")])
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(tmp_path / "s.csv", dtype=str)["customer_id"]) == set(safe)


def test_returns_only_customers_are_named_and_counted(tmp_path: Path) -> None:
    log = tmp_path / "ret.csv"
    log.write_text(
        "customer_id,date,amount\nA,2024-01-01,10\nA,2024-03-01,10\n"
        "RET1,2024-01-05,-5\nRET1,2024-02-05,-10\n"
    )
    proc = _features(tmp_path, log, "f.csv")
    assert proc.returncode == 0, proc.stderr
    assert "1 customers" in proc.stderr and "only returns" in proc.stderr
    assert "'RET1'" in proc.stderr and "..." not in proc.stderr  # shown whole, not cut
    assert list(pd.read_csv(tmp_path / "f.csv", dtype=str)["customer_id"]) == ["A"]


def test_a_clean_rerun_removes_the_old_quarantine_file(tmp_path: Path) -> None:
    dirty = tmp_path / "dirty.csv"
    dirty.write_text("customer_id,date,amount\nA,2024-01-01,10\nA,2024-03-01,oops\n")
    clean = tmp_path / "clean.csv"
    clean.write_text("customer_id,date,amount\nA,2024-01-01,10\nA,2024-03-01,4\n")
    assert (
        runner.invoke(app, ["features", "-t", str(dirty), "-o", str(tmp_path / "f.csv")]).exit_code
        == 0
    )
    assert (tmp_path / "f.quarantine.csv").exists()
    assert (
        runner.invoke(app, ["features", "-t", str(clean), "-o", str(tmp_path / "f.csv")]).exit_code
        == 0
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.csv", "dirty.csv", "f.csv"]


def test_no_bool_placeholders_in_help() -> None:
    commands = ["", "features", "train", "score", "evaluate", "backtest", "report", "demo"]
    for command in commands:
        result = runner.invoke(app, [*command.split(), "--help"], terminal_width=200)
        assert result.exit_code == 0, (command, result.output)
        assert "<bool>" not in result.output, command


@pytest.mark.slow
def test_bad_options_are_refused_before_any_work(
    workdir: Path, cdnow_csv: Path, trained: Path
) -> None:
    base = ["score", "-t", str(cdnow_csv), "-m", str(trained), "-o", str(workdir / "o.csv")]
    _fails([*base, "--as-of", "2024-13-45"], "--as-of")
    _fails([*base, "--as-of", "01/02/1998"], "--as-of")
    _fails([*base, "--top", "-3"], "--top")
    result = runner.invoke(app, [*base[:-1], str(workdir / "x.xlsx")])
    assert result.exit_code == 2 and ".csv" in result.output, result.output
    assert "customers" not in result.output  # refused before the log was scored
    assert not (workdir / "x.xlsx").exists() and not (workdir / "o.csv").exists()


@pytest.mark.slow
def test_evaluate_quarantines_unparsable_dates(
    workdir: Path, cdnow_csv: Path, trained: Path
) -> None:
    raw = pd.read_csv(cdnow_csv, dtype={"customer_id": str})
    bad = pd.DataFrame({"customer_id": ["00001", "00002"], "date": ["someday", "1997-02-30"],
                        "quantity": [1, 1], "amount": [2.0, 3.0]})  # fmt: skip
    src = workdir / "dirty_eval.csv"
    pd.concat([raw, bad], ignore_index=True).to_csv(src, index=False)
    out = workdir / "eval_dirty"
    args = ["evaluate", "-t", str(src), "-m", str(trained), "--as-of", "1998-03-31",
            "--out-dir", str(out), "--no-mlflow"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    q = pd.read_csv(out / "quarantine.csv")
    assert list(q["reason"]) == ["unparsable date", "unparsable date"]


def test_mlflow_stays_quiet_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing MLflow resets its loggers: the CLI's quiet level must be MLflow's own."""
    from churnguard.cli._console import setup_logging

    monkeypatch.delenv("MLFLOW_LOGGING_LEVEL", raising=False)
    setup_logging(False)
    assert os.environ["MLFLOW_LOGGING_LEVEL"] == "ERROR"
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "INFO")
    setup_logging(False)
    assert os.environ["MLFLOW_LOGGING_LEVEL"] == "INFO"  # the user's choice wins


def test_drift_correction_option_reaches_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import churnguard.pipeline as pipeline

    seen: dict[str, object] = {}

    def stop(*args: object, **kwargs: object) -> None:
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(pipeline, "train_model", stop)
    monkeypatch.setattr(pipeline, "run_backtest", stop)
    log = tmp_path / "tx.csv"
    log.write_text("customer_id,date,amount\na,2024-01-01,1\n")
    for extra, expected in (([], True), (["--no-drift-correction"], False)):
        seen.clear()
        runner.invoke(app, ["train", "-t", str(log), "--no-mlflow", *extra])
        assert seen["drift_correction"] is expected
        seen.clear()
        args = ["backtest", "-t", str(log), "--as-of", "2024-01-01", "--no-mlflow", *extra]
        runner.invoke(app, args)
        assert seen["drift_correction"] is expected


def test_backtest_prints_each_kinds_mean_with_its_own_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import churnguard.pipeline as pipeline
    from churnguard.evaluation.backtest import BacktestResult

    table = pd.DataFrame(
        {
            "as_of": ["2024-01-01"] * 3,
            "horizon_days": [90] * 3,
            "kind": ["churn", "value", "value"],
            "score": ["churnguard", "churnguard", "recent_spend"],
            **{m: [0.5, np.nan, np.nan] for m in ["roc_auc", "pr_auc", "brier", "log_loss"]},
            **{m: [0.5, np.nan, np.nan] for m in ["ece", "top_decile_lift"]},
            **{m: [np.nan, 0.5, 0.4] for m in ["gini", "spearman", "top_decile_share"]},
            **{m: [np.nan, 0.5, 0.4] for m in ["top20_share", "decile_mape", "aggregate_error"]},
        }
    )
    aggregate = pd.DataFrame(
        {"roc_auc": [0.8, np.nan, np.nan], "aggregate_abs_error": [np.nan, 0.2, 0.3]},
        index=pd.MultiIndex.from_tuples(
            [("churn", "churnguard"), ("value", "churnguard"), ("value", "recent_spend")],
            names=["kind", "score"],
        ),
    )
    fake = BacktestResult(runs=[], table=table, aggregate=aggregate, out_dir=tmp_path)
    monkeypatch.setattr(pipeline, "run_backtest", lambda *a, **k: fake)
    log = tmp_path / "tx.csv"
    log.write_text("customer_id,date,amount\na,2024-01-01,1\n")
    args = ["backtest", "-t", str(log), "--as-of", "2024-01-01", "--no-mlflow"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    churn_part, value_part = result.output.split("churn: mean over runs")[1].split(
        "value: mean over runs"
    )
    assert "roc_auc" in churn_part and "aggregate_abs_error" not in churn_part
    assert "aggregate_abs_error" in value_part and "roc_auc" not in value_part
