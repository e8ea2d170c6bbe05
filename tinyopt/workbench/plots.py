"""Readable figures of a sequence run (notebook 01): every variant on one row of a dot plot, and
accuracy against bytes with the Pareto front.

Readability rules, the same in every figure: variant names sit on a categorical axis (they cannot
overlap), only the Pareto-front points carry a text label (they are sorted along both axes, so
alternating offsets keep them apart), the accuracy axis spans the usable variants, and a variant
far below the float32 baseline (more than ``outlier_pt``) is drawn at the axis edge with its value
and listed in the figure's note instead of stretching the axis.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BASELINE = "float32"


def pareto_front(df: pd.DataFrame, cost: str, value: str = "accuracy") -> pd.Series:
    """Boolean mask of the rows no other row beats: lower or equal ``cost`` and higher or equal
    ``value``, one of them strictly. Rows with a missing cost or value are never on the front."""
    ok = df[cost].notna() & df[value].notna()
    c, v = df[cost].to_numpy(float), df[value].to_numpy(float)
    mask = np.zeros(len(df), bool)
    for i in np.flatnonzero(ok.to_numpy()):
        dominated = ok.to_numpy() & (c <= c[i]) & (v >= v[i]) & ((c < c[i]) | (v > v[i]))
        mask[i] = not dominated.any()
    return pd.Series(mask, index=df.index)


def accuracy_window(results: pd.DataFrame, outlier_pt: float = 5.0, pad_pt: float = 0.3):
    """``(low, high, outliers)``: the accuracy axis limits in percent and the rows left out.

    Outliers are the variants more than ``outlier_pt`` points below the float32 baseline (e.g. a
    decomposition before fine-tuning, a 2-bit PTQ without training)."""
    acc = 100 * results["accuracy"].astype(float)
    base = acc[results["variant"] == BASELINE]
    ref = float(base.iloc[0]) if len(base) else float(acc.max())
    keep = acc >= ref - outlier_pt
    low = float(acc[keep].min()) - pad_pt
    high = float(acc[keep].max()) + pad_pt
    return low, high, results[~keep]


def _note(outliers: pd.DataFrame) -> str:
    if outliers.empty:
        return ""
    return "off the accuracy axis: " + ", ".join(
        f"{v} {100 * a:.1f} %" for v, a in zip(outliers["variant"], outliers["accuracy"]))


def variants_figure(results: pd.DataFrame, title: str, tolerance_pt: float = 0.5,
                    outlier_pt: float = 5.0):
    """One row per variant, four panels sharing it: accuracy (zoomed, tolerance band), bytes
    (LiteRT flatbuffer; deployed weights+parameters and whole ELF flash), host latency (LiteRT,
    median with p10-p90) and Cortex-M7 instructions per inference (deployed variants).

    Arguments:
        results: :func:`tinyopt.pipeline.sequence.run_many` rows.
        title: the figure title.
        tolerance_pt: width of the shaded band below and above the baseline.
        outlier_pt: see :func:`accuracy_window`.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    r = results.reset_index(drop=True)
    y = np.arange(len(r))[::-1]
    col = lambda c: r[c].astype(float) if c in r else pd.Series(np.nan, index=r.index)
    fig, ax = plt.subplots(1, 4, figsize=(15, 0.28 * len(r) + 1.8), sharey=True,
                           gridspec_kw={"width_ratios": [1.3, 1, 1, 1]})
    low, high, out = accuracy_window(r, outlier_pt)
    acc = 100 * col("accuracy")
    base = acc[r["variant"] == BASELINE]
    ax[0].scatter(acc.clip(lower=low), y, c=np.where(acc < low, "C3", "C0"), s=18, zorder=3)
    for i in np.flatnonzero(acc < low):
        ax[0].annotate(f"{acc[i]:.1f} %", (low, y[i]), xytext=(4, -3),
                       textcoords="offset points", fontsize=7, color="C3")
    if len(base):
        b = float(base.iloc[0])
        ax[0].axvline(b, color="k", lw=0.8, ls="--")
        ax[0].axvspan(b - tolerance_pt, b + tolerance_pt, color="k", alpha=0.07,
                      label=f"float32 ± {tolerance_pt} pt")
        ax[0].legend(fontsize=7, loc="lower right")
    ax[0].set(xlim=(low, high), xlabel="test accuracy (%)", yticks=y)
    ax[0].set_yticklabels(r["variant"], fontsize=7)
    for c, m, lab in (("size_bytes", "o", "LiteRT flatbuffer"),
                      ("weights_params_bytes", "s", "deployed weights + params"),
                      ("elf_flash_bytes", "D", "deployed ELF flash")):
        ax[1].scatter(col(c) / 1000, y, marker=m, s=16, label=lab)
    ax[1].set(xscale="log", xlabel="kB (log)")
    ax[1].legend(fontsize=7, loc="lower right")
    lat = 1000 * col("latency_ms_median")
    err = [lat - 1000 * col("latency_ms_p10"), 1000 * col("latency_ms_p90") - lat]
    ax[2].errorbar(lat, y, xerr=[e.fillna(0).clip(lower=0) for e in err], fmt="o", ms=3,
                   capsize=2)
    ax[2].set(xscale="log", xlabel="host invoke latency (µs, log)\nmedian, p10-p90")
    ins = col("mcu_instructions") / 1e6
    ax[3].barh(y, ins.fillna(0), color="C2")
    ax[3].set(xlabel="Cortex-M7 instructions / inference (M)")
    for a in ax:
        a.grid(axis="x", alpha=0.3)
    note = _note(out)
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=10)
    fig.tight_layout()
    return fig


def _label_front(ax, pts: pd.DataFrame, x: str, yv: pd.Series) -> None:
    """Label the front points (sorted by cost), alternating above and below the line."""
    for k, (i, row) in enumerate(pts.sort_values(x).iterrows()):
        dy = 8 if k % 2 == 0 else -12
        ax.annotate(row["variant"], (row[x], yv[i]), xytext=(4, dy), textcoords="offset points",
                    fontsize=7, arrowprops=dict(arrowstyle="-", lw=0.4, color="0.5"))


def pareto_figure(results: pd.DataFrame, title: str, tolerance_pt: float = 0.5,
                  outlier_pt: float = 5.0):
    """Accuracy against bytes, the Pareto front drawn and labelled: left, the LiteRT variants by
    flatbuffer size; right, the deployed variants by weights + parameters in flash (whole ELF
    flash in the table). Other points are grey and unlabelled (the dot plot names them).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    r = results.reset_index(drop=True)
    low, high, out = accuracy_window(r, outlier_pt)
    panels = [("size_bytes", "LiteRT: flatbuffer size (B, log)"),
              ("weights_params_bytes", "Cortex-M7: weights + parameters in flash (B, log)")]
    panels = [(c, lab) for c, lab in panels if c in r and r[c].notna().any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5), squeeze=False)
    base = r.loc[r["variant"] == BASELINE, "accuracy"]
    for ax, (c, lab) in zip(axes[0], panels):
        part = r[r[c].notna()]
        acc = 100 * part["accuracy"].astype(float)
        inside = acc >= low
        ax.scatter(part.loc[inside, c], acc[inside], color="0.6", s=18)
        ax.scatter(part.loc[~inside, c], np.full((~inside).sum(), low), marker="v", color="C3",
                   s=22, clip_on=False)
        front = part[pareto_front(part, c) & inside]
        f = front.sort_values(c)
        ax.step(f[c], 100 * f["accuracy"], where="post", color="C0", lw=1, label="Pareto front")
        ax.scatter(f[c], 100 * f["accuracy"], color="C0", s=24, zorder=3)
        _label_front(ax, front, c, 100 * front["accuracy"])
        if len(base):
            b = 100 * float(base.iloc[0])
            ax.axhspan(b - tolerance_pt, b + tolerance_pt, color="k", alpha=0.07,
                       label=f"float32 ± {tolerance_pt} pt")
        ax.set(xscale="log", xlabel=lab, ylabel="test accuracy (%)", ylim=(low, high))
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    note = _note(out)
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=10)
    fig.tight_layout()
    return fig
