"""The CDNOW transaction log that ships inside ``lifetimes``.

CDNOW is the classic buy-till-you-die data set: the cohort of 23,570 customers who
first bought at CDNOW in the first quarter of 1997, followed to the end of June
1998 (Fader & Hardie). Amounts can be 0. The 1/10th sample has 2,357 customers.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import pandas as pd

from churnguard.data.io import write_table

__all__ = ["cdnow_path", "load_cdnow", "write_cdnow"]


def cdnow_path(sample: bool = False) -> Path:
    """Path of ``CDNOW_master.txt`` (or ``CDNOW_sample.txt``) inside the lifetimes package."""
    name = "CDNOW_sample.txt" if sample else "CDNOW_master.txt"
    return Path(str(resources.files("lifetimes.datasets").joinpath(name)))


def load_cdnow(sample: bool = False) -> pd.DataFrame:
    """Load CDNOW as a raw transaction frame.

    Returns
    -------
    DataFrame
        Columns ``customer_id`` (text, zero-padded as in the source, e.g. ``00001``),
        ``date`` (datetime), ``quantity`` (number of CDs) and ``amount`` (dollars).
    """
    path = cdnow_path(sample)
    if sample:
        names = ["customer_id", "master_id", "date", "quantity", "amount"]
    else:
        names = ["customer_id", "date", "quantity", "amount"]
    # The master file has a header row, the sample does not.
    frame = pd.read_csv(
        path,
        sep=r"\s+",
        header=None,
        skiprows=0 if sample else 1,
        names=names,
        dtype={"customer_id": str, "date": str},
    )
    frame["date"] = pd.to_datetime(frame["date"], format="%Y%m%d")
    return frame[["customer_id", "date", "quantity", "amount"]]


def write_cdnow(path: str | os.PathLike[str], sample: bool = False) -> Path:
    """Write CDNOW as a CSV/Parquet log with ISO dates (``customer_id,date,quantity,amount``)."""
    frame = load_cdnow(sample)
    frame = frame.assign(date=frame["date"].dt.strftime("%Y-%m-%d"))
    return write_table(frame, path)
