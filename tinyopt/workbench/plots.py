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


def _log_axis(ax, values, axis: str = "x") -> None:
    """Log scale with labels only at 1-2-3-5 ticks inside the data's range (no crowded minor
    labels such as 2x10^1 3x10^1 4x10^1)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
    v = pd.Series(values, dtype=float).dropna()
    v = v[v > 0]
    getattr(ax, f"set_{axis}scale")("log")
    if v.empty:
        return
    lo, hi = np.floor(np.log10(v.min())), np.ceil(np.log10(v.max()))
    ticks = [m * 10 ** e for e in np.arange(lo, hi + 1) for m in (1, 2, 3, 5)]
    ticks = [t for t in ticks if v.min() / 1.5 <= t <= v.max() * 1.5] or [v.min(), v.max()]
    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_locator(FixedLocator(ticks))
    a.set_major_formatter(FuncFormatter(lambda t, _: f"{t:g}"))
    a.set_minor_formatter(NullFormatter())


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
    _log_axis(ax[1], pd.concat([col(c) / 1000 for c in ("size_bytes", "weights_params_bytes",
                                                           "elf_flash_bytes")]))
    ax[1].set(xlabel="kB (log)")
    ax[1].legend(fontsize=7, loc="lower right")
    lat = 1000 * col("latency_ms_median")
    err = [lat - 1000 * col("latency_ms_p10"), 1000 * col("latency_ms_p90") - lat]
    ax[2].errorbar(lat, y, xerr=[e.fillna(0).clip(lower=0) for e in err], fmt="o", ms=3,
                   capsize=2)
    _log_axis(ax[2], pd.concat([lat, 1000 * col("latency_ms_p90")]))
    ax[2].set(xlabel="host invoke latency (µs, log)\nmedian, p10-p90")
    ins = col("mcu_instructions") / 1e6
    ax[3].scatter(ins, y, color="C2", s=18)
    if ins.notna().any():  # zoomed to the deployed variants: they differ by a few per cent
        span = max(float(ins.max() - ins.min()), 0.05 * float(ins.max()))
        ax[3].set_xlim(float(ins.min()) - 0.15 * span, float(ins.max()) + 0.15 * span)
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
    out = accuracy_window(r, outlier_pt)[2]
    panels = [("size_bytes", "LiteRT: flatbuffer size (B, log)"),
              ("weights_params_bytes", "Cortex-M7: weights + parameters in flash (B, log)")]
    panels = [(c, lab) for c, lab in panels if c in r and r[c].notna().any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5), squeeze=False)
    base = r.loc[r["variant"] == BASELINE, "accuracy"]
    for ax, (c, lab) in zip(axes[0], panels):
        part = r[r[c].notna()]
        # each panel zoomed to its own variants (and the baseline's band)
        low, high, _ = accuracy_window(pd.concat([part, r[r["variant"] == BASELINE]]),
                                       outlier_pt)
        if len(base):
            low = min(low, 100 * float(base.iloc[0]) - tolerance_pt - 0.1)
            high = max(high, 100 * float(base.iloc[0]) + tolerance_pt + 0.1)
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
        _log_axis(ax, part[c])
        ax.set(xlabel=lab, ylabel="test accuracy (%)", ylim=(low, high))
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    note = _note(out)
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ notebooks 02-06
def ptq_qat_figure(df: pd.DataFrame, dataset: str):
    """Notebook 02: PTQ and QAT fake-quant accuracy per (policy, granularity, fold), one panel
    per model, the float32 accuracy dashed."""
    import matplotlib.pyplot as plt
    n = df.model.nunique()
    fig, axes = plt.subplots(1, n, figsize=(7 * n, 4.5), squeeze=False)
    for ax, (name, part) in zip(axes[0], df.groupby("model", sort=False)):
        q = part[part.method.isin(["PTQ", "QAT"])].copy()
        q["config"] = q.policy + "\n" + q.granularity + "/" + q.fold
        configs = list(dict.fromkeys(q.config))
        xs = np.arange(len(configs))
        for k, method in enumerate(["PTQ", "QAT"]):
            sub = q[q.method == method].set_index("config").accuracy.reindex(configs)
            ax.bar(xs + (k - 0.5) * 0.38, sub.values, 0.38, label=method)
        ref = part[part.method == "float32"].accuracy.iloc[0]
        ax.axhline(ref, color="k", ls="--", lw=1, label=f"float32 {ref:.3f}")
        ax.set_xticks(xs, configs, fontsize=7)
        ax.set_ylim(max(0.0, q.accuracy.min() - 0.05), 1.0)
        ax.set_title(f"{name} on {dataset}")
        ax.set_ylabel("test accuracy (fake-quant)")
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def layer_error_figure(errors: pd.DataFrame, model_names, configs, floor: float = 1e-6):
    """Notebook 04: share of each layer's outputs where the integer graph differs from the
    fake-quant model, chained and isolated (log scale; 0 drawn at ``floor``)."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(model_names), figsize=(6.5 * len(model_names), 4),
                             squeeze=False)
    for ax, name in zip(axes[0], model_names):
        for config, marker in zip(configs, "osd"):
            e = errors[(errors.model == name) & (errors.config == config)]
            x = np.arange(len(e))
            ax.semilogy(x, np.maximum(e.chained_frac_diff, floor), marker=marker,
                        label=f"{config} chained")
            ax.semilogy(x, np.maximum(e.isolated_frac_diff, floor), marker=marker, ls="--",
                        alpha=0.6, label=f"{config} isolated")
        ax.set_xticks(x, e.layer, rotation=90, fontsize=7)
        ax.set_ylim(floor / 2, 1.5)
        ax.set_title(f"{name}: outputs differing from fake quant")
        ax.set_ylabel("fraction of outputs")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def fakequant_integer_figure(summary: pd.DataFrame):
    """Notebook 04: fake-quant vs integer-graph top-1 per (model, config)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = [f"{r.model}\n{r.config}" for r in summary.itertuples()]
    xs = np.arange(len(summary))
    ax.bar(xs - 0.2, 100 * summary.fakequant_acc, 0.4, label="fake quant")
    ax.bar(xs + 0.2, 100 * summary.integer_acc, 0.4, label="integer graph")
    ax.set_xticks(xs, labels, fontsize=7)
    lo = 100 * min(summary.fakequant_acc.min(), summary.integer_acc.min())
    ax.set_ylim(max(0, lo - 5), 100)
    ax.set_ylabel("top-1 (%)")
    ax.legend()
    fig.tight_layout()
    return fig


def iso_memory_figure(results: pd.DataFrame, best, title: str):
    """Notebook 06: MACs (latency proxy) vs integer-only top-1 per member and policy, the
    Pareto frontier and the best int8 member that fits (``best``: its row)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    style = {"int8": ("o", "C0"), "Mix-PL": ("s", "C1"), "Mix-PC": ("^", "C2"),
             "Acc-PL": ("D", "C3"), "Acc-PC": ("v", "C4")}
    ok = results[results.integer_acc.notna()].sort_values("qmacs")
    for pol, g in ok.groupby("policy"):
        m, c = style.get(pol, ("x", "k"))
        ax.scatter(g.qmacs / 1e6, 100 * g.integer_acc, marker=m, color=c, label=pol, s=45)
        for r in g.itertuples():
            ax.annotate(r.member, (r.qmacs / 1e6, 100 * r.integer_acc), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    front = ok[pareto_front(ok.assign(accuracy=ok.integer_acc), "qmacs")].sort_values("qmacs")
    ax.plot(front.qmacs / 1e6, 100 * front.integer_acc, "k-", lw=0.8, alpha=0.5,
            label="Pareto frontier")
    ax.axhline(100 * best.integer_acc, color="C0", ls="--", lw=0.8,
               label=f"best int8 that fits ({best.member})")
    ax.set_xscale("log")
    ax.set_xlabel("MMACs per image (latency proxy)")
    ax.set_ylabel("integer-only top-1 (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def instructions_figure(steps: pd.DataFrame):
    """Notebook 05: Cortex-M7 instructions per image of every step, one panel per model (the
    per-step table of :func:`tinyopt.deploy.mcu.deploy`, concatenated)."""
    import matplotlib.pyplot as plt
    models = list(dict.fromkeys(steps["model"]))
    rows = (len(models) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(15, 4 * rows), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 5]})
    for ax, model in zip(axes.ravel(), models):
        df = steps[steps["model"] == model]
        ax.bar(range(len(df)), df["insns_per_image"] / 1e6)
        ax.set_xticks(range(len(df)), [s[:14] for s in df["name"]], rotation=90, fontsize=7)
        ax.set_title(f"{model}: {df['insns_per_image'].sum() / 1e6:.2f} M instructions / image",
                     fontsize=9)
        ax.set_ylabel("M instructions / image")
    for ax in axes.ravel()[len(models):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig
