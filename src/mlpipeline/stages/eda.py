"""EDA stage: a self-contained HTML report (plots inlined as PNG) and a Markdown summary."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from mlpipeline.artifacts import atomic_write_text, read_parquet
from mlpipeline.config import DataConfig, EdaConfig, parse_section
from mlpipeline.signature import dtype_of


def fig_to_img(fig: Any) -> str:
    """Render a matplotlib figure to an inline <img> tag and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'


def html_page(title: str, body: str) -> str:
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "th{background:#f4f4f4}img{max-width:100%}.grid{display:flex;flex-wrap:wrap;gap:12px}"
        ".grid div{flex:0 0 380px}"
    )
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{body}</body></html>"


def _binary_target(df: Any, cfg: DataConfig) -> Any | None:
    """0/1 series for the positive class when the task is binary classification, else None."""
    if cfg.task != "classification":
        return None
    y = df[cfg.target]
    classes = y.dropna().unique().tolist()
    if len(classes) != 2:
        return None
    pos = cfg.positive_class if cfg.positive_class is not None else y.value_counts().idxmin()
    return (y == pos).astype(float)


def eda(
    data_path: str | Path,
    data_cfg: dict[str, Any] | DataConfig,
    eda_cfg: dict[str, Any] | EdaConfig,
    out_html: str | Path,
    out_markdown: str | Path,
) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    dcfg = parse_section(DataConfig, data_cfg, "data")
    ecfg = parse_section(EdaConfig, eda_cfg, "eda")
    df = read_parquet(data_path)
    if len(df) > ecfg.sample_rows:
        df = df.sample(ecfg.sample_rows, random_state=0)
    features = [c for c in df.columns if c != dcfg.target][: ecfg.max_plot_columns]
    kinds = {c: dtype_of(df[c]) for c in features}
    numeric = [c for c in features if kinds[c] in ("int", "float") and df[c].nunique() > 2]
    categorical = [c for c in features if c not in numeric and kinds[c] != "datetime"]
    ybin = _binary_target(df, dcfg)

    sections: list[str] = [f"<h1>EDA: {html.escape(dcfg.source)}</h1>"]
    sections.append(f"<p>{len(df):,} rows (sampled to at most {ecfg.sample_rows:,}), {len(df.columns)} columns; target <b>{html.escape(dcfg.target)}</b>.</p>")
    desc = df[numeric].describe().T.round(3) if numeric else None
    if desc is not None:
        sections.append("<h2>Numeric summary</h2>" + desc.to_html())
    miss = df.isna().mean().sort_values(ascending=False)
    miss = miss[miss > 0]
    sections.append("<h2>Missing values</h2>" + (miss.to_frame("fraction").round(4).to_html() if len(miss) else "<p>none</p>"))

    # target
    fig, ax = plt.subplots(figsize=(5, 3))
    if dcfg.task == "classification":
        df[dcfg.target].astype(str).value_counts().plot.bar(ax=ax, color="#4472c4")
        ax.set_title(f"{dcfg.target} class counts")
    else:
        df[dcfg.target].plot.hist(ax=ax, bins=40, color="#4472c4")
        ax.set_title(f"{dcfg.target} distribution")
    sections.append("<h2>Target</h2>" + fig_to_img(fig))

    # distributions, split by target for binary tasks
    imgs = []
    for c in numeric:
        fig, ax = plt.subplots(figsize=(5, 3))
        vals = df[c].dropna()
        if ybin is not None:
            for lab, colr in ((0.0, "#4472c4"), (1.0, "#c0504d")):
                ax.hist(vals[ybin.loc[vals.index] == lab], bins=30, alpha=0.6, density=True, color=colr, label=f"target={'pos' if lab else 'neg'}")
            ax.legend(fontsize=7)
        else:
            ax.hist(vals, bins=30, color="#4472c4")
        ax.set_title(c)
        imgs.append(f"<div>{fig_to_img(fig)}</div>")
    sections.append("<h2>Distributions</h2><div class='grid'>" + "".join(imgs) + "</div>")

    # target rate by feature (categoricals and binned numerics)
    rate_rows = []
    if ybin is not None:
        imgs = []
        for c in categorical + numeric:
            key = df[c].astype(str) if c in categorical else _qbin(df[c])
            rate = ybin.groupby(key, observed=True).mean().sort_index()
            if len(rate) > 30:
                rate = rate.sort_values(ascending=False).head(30)
            fig, ax = plt.subplots(figsize=(5, 3))
            rate.plot.bar(ax=ax, color="#c0504d")
            ax.axhline(float(ybin.mean()), color="k", lw=0.8, ls="--")
            ax.set_title(f"positive rate by {c}")
            ax.tick_params(axis="x", labelsize=7)
            imgs.append(f"<div>{fig_to_img(fig)}</div>")
            rate_rows.append((c, float(rate.max() - rate.min())))
        sections.append("<h2>Target rate by feature</h2><div class='grid'>" + "".join(imgs) + "</div>")

    # correlations
    corr_top: list[tuple[str, str, float]] = []
    num_all = [c for c in df.columns if kinds.get(c, dtype_of(df[c])) in ("int", "float", "bool")]
    if len(num_all) >= 2:
        corr = df[num_all].astype(float).corr()
        fig, ax = plt.subplots(figsize=(1 + 0.45 * len(num_all), 0.8 + 0.45 * len(num_all)))
        im = ax.imshow(corr.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_xticks(range(len(num_all)), num_all, rotation=90, fontsize=7)
        ax.set_yticks(range(len(num_all)), num_all, fontsize=7)
        fig.colorbar(im, ax=ax)
        sections.append("<h2>Correlations</h2>" + fig_to_img(fig))
        iu = np.triu_indices(len(num_all), 1)
        pairs = [(num_all[i], num_all[j], float(corr.iat[i, j])) for i, j in zip(*iu, strict=True)]
        corr_top = sorted((p for p in pairs if p[2] == p[2]), key=lambda p: -abs(p[2]))[:5]

    atomic_write_text(out_html, html_page(f"EDA {dcfg.source}", "\n".join(sections)))
    md = [
        f"# EDA summary: {dcfg.source}",
        "",
        f"- rows: {len(df):,}; columns: {len(df.columns)}; numeric: {len(numeric)}; categorical: {len(categorical)}",
        f"- columns with missing values: {', '.join(f'{c} ({v:.1%})' for c, v in miss.items()) or 'none'}",
    ]
    if dcfg.task == "classification":
        bal = df[dcfg.target].astype(str).value_counts(normalize=True)
        md.append("- class balance: " + ", ".join(f"{k} {v:.1%}" for k, v in bal.items()))
    if rate_rows:
        top = sorted(rate_rows, key=lambda r: -r[1])[:5]
        md.append("- features with the widest spread of positive rate: " + ", ".join(f"{c} ({s:.2f})" for c, s in top))
    if corr_top:
        md.append("- strongest correlations: " + ", ".join(f"{a}~{b} ({r:+.2f})" for a, b, r in corr_top))
    atomic_write_text(out_markdown, "\n".join(md) + "\n")
    return {"numeric": numeric, "categorical": categorical, "rows": len(df)}


def _qbin(s: Any, q: int = 10) -> Any:
    import pandas as pd

    try:
        return pd.qcut(s, q=q, duplicates="drop").astype(str)
    except ValueError:
        return s.astype(str)
