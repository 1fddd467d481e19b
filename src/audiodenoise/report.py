"""An evaluation ``Report`` as terminal tables, and as a folder: per-file CSV, JSON, Markdown and plots.

Every file is written atomically.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import numpy as np

from .atomic import write_atomic, write_json
from .evaluate import Example, FileScore, Report, Stat, mean_ci
from .metrics import METRICS

LABELS = {
    "pesq": "PESQ",
    "stoi": "STOI",
    "estoi": "ESTOI",
    "si_sdr": "SI-SDR (dB)",
    "snr": "SNR (dB)",
    "csig": "CSIG",
    "cbak": "CBAK",
    "covl": "COVL",
    "top_band_lsd": "top-band LSD (dB)",
}
DECIMALS = {"stoi": 3, "estoi": 3}  # the others: 2
TERMINAL_METRICS = ("pesq", "stoi", "estoi", "si_sdr", "csig", "cbak", "covl")  # SNR, top-band LSD: in the files
IMPROVEMENT_METRICS = ("pesq", "stoi", "si_sdr")
REFERENCE = "noisy"
NOTE = (
    "Wide-band PESQ, STOI, ESTOI and the composite measures at 16 kHz; SI-SDR and SNR at the clean file's rate. "
    "A file where a metric cannot be computed is left out of that metric's mean."
)


def _cell(metric: str, stat: Stat) -> str:
    digits = DECIMALS.get(metric, 2)
    if math.isnan(stat.mean):
        return "-"
    ci = "" if math.isnan(stat.ci95) else f"±{stat.ci95:.{digits}f}"
    return f"{stat.mean:.{digits}f}{ci}"


def _metric_rows(report: Report, scores: list[FileScore], columns: tuple[str, ...]) -> list[list[str]]:
    rows = []
    for name, stats in report.summary(scores).items():
        files = sum(1 for s in scores if s.system == name and not s.error)
        rows.append([name, str(files), *(_cell(m, stats[m]) for m in columns)])
    return rows


def _timing_rows(report: Report) -> list[list[str]]:
    failed = Counter(s.system for s in report.failures)
    return [[r.name, f"{r.load_seconds:.2f}", f"{r.real_time_factor:.3f}", str(failed[r.name])] for r in report.systems]


def _render(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:  # names left, numbers right
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join(line(cells) for cells in [headers, *rows])


def _markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _bucket_label(snr_db: float) -> str:
    return f"{snr_db:g} dB"


def _heading(report: Report) -> str:
    threads = f"{report.threads} thread{'s' if report.threads != 1 else ''}" if report.threads else "default threads"
    if report.workers > 1:  # every system on the same workers: its real-time factor is measured under that load
        threads = f"{report.workers} workers at {threads} each"
    return f"{report.pairs} pairs, {len(report.systems)} systems, {threads}; mean ± 95% CI"


def format_report(report: Report) -> str:
    """The terminal tables: all files, each input-SNR bucket, then load time and real-time factor."""
    headers = ["system", "files", *(LABELS[m] for m in TERMINAL_METRICS)]
    parts = [_heading(report), _render(headers, _metric_rows(report, report.scores, TERMINAL_METRICS))]
    for snr_db, scores in report.buckets().items():
        parts += [
            f"\ninput SNR {_bucket_label(snr_db)}",
            _render(headers, _metric_rows(report, scores, TERMINAL_METRICS)),
        ]
    parts += ["", _render(["system", "load (s)", "real-time factor", "failed files"], _timing_rows(report))]
    parts += list(report.skipped.values())
    return "\n".join(parts)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN


def _stats_json(summary: dict[str, dict[str, Stat]]) -> dict:
    return {
        name: {m: {"mean": _finite(s.mean), "ci95": _finite(s.ci95), "n": s.n} for m, s in stats.items()}
        for name, stats in summary.items()
    }


def report_json(report: Report) -> dict:
    summary = _stats_json(report.summary())
    failed = Counter(s.system for s in report.failures)
    return {
        "pairs": report.pairs,
        "threads": report.threads,
        "workers": report.workers,
        "metrics": list(METRICS),
        "systems": {
            r.name: {
                "load_seconds": r.load_seconds,
                "processing_seconds": r.processing_seconds,
                "audio_seconds": r.audio_seconds,
                "real_time_factor": _finite(r.real_time_factor),
                "failed_files": failed[r.name],
                "metrics": summary[r.name],
            }
            for r in report.systems
        },
        "snr_buckets": {f"{k:g}": _stats_json(report.summary(v)) for k, v in report.buckets().items()},
        "skipped": report.skipped,
        "failures": [{"pair": s.pair, "system": s.system, "error": s.error} for s in report.failures],
        "problems": [
            {"pair": s.pair, "system": s.system, "metric": m, "reason": why}
            for s in report.scores
            for m, why in s.problems.items()
        ],
    }


def _write_csv(report: Report, path: Path) -> None:
    def write(temp: Path) -> None:
        with temp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["pair", "system", "input_snr_db", *METRICS, "error", "problems"])
            for s in report.scores:
                values = ["" if not math.isfinite(s.values.get(m, math.nan)) else f"{s.values[m]:.6g}" for m in METRICS]
                problems = "; ".join(f"{m}: {why}" for m, why in s.problems.items())
                snr_db = f"{s.snr_db:.3g}" if math.isfinite(s.snr_db) else ""
                writer.writerow([s.pair, s.system, snr_db, *values, s.error or "", problems])

    write_atomic(path, write)


def _markdown_report(report: Report, images: list[str]) -> str:
    headers = ["system", "files", *(LABELS[m] for m in METRICS)]
    overall = _markdown(headers, _metric_rows(report, report.scores, METRICS))
    parts = ["# Evaluation", "", _heading(report) + ". " + NOTE, "", overall]
    parts += ["", "## Load time and speed", "", "Model load is timed apart from processing.", ""]
    parts.append(_markdown(["system", "load (s)", "real-time factor", "failed files"], _timing_rows(report)))
    parts += ["", "## By input SNR"]
    for snr_db, scores in report.buckets().items():
        parts += ["", f"### {_bucket_label(snr_db)}", "", _markdown(headers, _metric_rows(report, scores, METRICS))]
    parts += ["", "## Plots"] + [f"\n![{Path(image).stem}]({image})" for image in images]
    if report.skipped:
        parts += ["", "## Skipped systems", ""] + [f"- {line}" for line in report.skipped.values()]
    if report.failures:
        parts += ["", "## Failed files", ""] + [f"- {s.pair}, {s.system}: {s.error}" for s in report.failures]
    problems = [(s, m, why) for s in report.scores for m, why in s.problems.items()]
    if problems:
        parts += ["", "## Metrics that could not be computed", ""]
        parts += [f"- {s.pair}, {s.system}, {m}: {why}" for s, m, why in problems]
    return "\n".join(parts) + "\n"


def _save(figure, path: Path) -> None:
    figure.tight_layout()
    write_atomic(path, lambda temp: figure.savefig(temp, format="png", dpi=100))


def _plot_metrics(report: Report, path: Path) -> None:
    from matplotlib.figure import Figure

    summary = report.summary()
    names = list(summary)
    rows = math.ceil(len(METRICS) / 4)
    figure = Figure(figsize=(4 * 4, rows * 3.2))
    for i, metric in enumerate(METRICS):
        axis = figure.add_subplot(rows, 4, i + 1)
        means = [summary[n][metric].mean for n in names]
        errors = [0 if math.isnan(summary[n][metric].ci95) else summary[n][metric].ci95 for n in names]
        axis.bar(range(len(names)), means, yerr=errors, capsize=3, color=[f"C{j}" for j in range(len(names))])
        axis.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        axis.set_title(LABELS[metric])
    _save(figure, path)


def _improvement(scores: list[FileScore], system: str, metric: str) -> float:
    """Mean gain of ``system`` over the unprocessed input, pair by pair."""
    reference = {s.pair: s.values[metric] for s in scores if s.system == REFERENCE and not s.error}
    return mean_ci(
        s.values[metric] - reference[s.pair]
        for s in scores
        if s.system == system and not s.error and s.pair in reference
    ).mean


def _plot_improvement(report: Report, path: Path) -> None:
    from matplotlib.figure import Figure

    buckets = report.buckets()
    figure = Figure(figsize=(5 * len(IMPROVEMENT_METRICS), 3.6))
    for i, metric in enumerate(IMPROVEMENT_METRICS):
        axis = figure.add_subplot(1, len(IMPROVEMENT_METRICS), i + 1)
        for j, run in enumerate(report.systems):
            if run.name == REFERENCE:
                continue
            gains = [_improvement(scores, run.name, metric) for scores in buckets.values()]
            axis.plot(list(buckets), gains, marker="o", color=f"C{j}", label=run.name)
        axis.axhline(0, color="grey", linewidth=0.8)
        axis.set_xlabel("input SNR (dB)")
        axis.set_title(f"{LABELS[metric]} improvement over the input")
    figure.axes[0].legend(fontsize=8)
    _save(figure, path)


def _plot_spectrograms(example: Example, path: Path) -> None:
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    colours = colormaps["magma"].with_extremes(bad=colormaps["magma"](0.0))  # digital silence: the quietest colour
    order = ["clean", REFERENCE, *(k for k in example.signals if k not in ("clean", REFERENCE))]
    figure = Figure(figsize=(9, 2.2 * len(order)))
    axes = figure.subplots(len(order), 1, sharex=True, squeeze=False)[:, 0]
    for axis, label in zip(axes, order):
        with np.errstate(divide="ignore"):  # digital silence has no dB value
            axis.specgram(
                example.signals[label], NFFT=512, Fs=example.rate, noverlap=384, cmap=colours, vmin=-120, vmax=-20
            )
        axis.set_title(f"{example.pair}: {label}")
        axis.set_ylabel("Hz")
    axes[-1].set_xlabel("seconds")
    _save(figure, path)


def write_report(report: Report, folder: str | Path) -> None:
    """scores.csv, report.json, report.md, metrics.png, improvement.png (where a system is compared with the
    input) and spectrograms/<pair>.png."""
    folder = Path(folder)
    (folder / "spectrograms").mkdir(parents=True, exist_ok=True)
    images = ["metrics.png"]
    _plot_metrics(report, folder / "metrics.png")
    if any(r.name != REFERENCE for r in report.systems):
        images.append("improvement.png")
        _plot_improvement(report, folder / "improvement.png")
    for example in report.examples:
        name = f"spectrograms/{example.pair.replace('/', '_')}.png"
        _plot_spectrograms(example, folder / name)
        images.append(name)
    _write_csv(report, folder / "scores.csv")
    write_json(folder / "report.json", report_json(report))
    write_atomic(folder / "report.md", lambda temp: temp.write_text(_markdown_report(report, images)))
