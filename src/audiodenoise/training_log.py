"""What a training run reports at each validation: a row of RUN_DIR/history.csv, its plot (history.png), a console
line, and TensorBoard scalars on request. Every file is replaced atomically."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tqdm import tqdm

from .atomic import write_atomic

HISTORY, PLOT = "history.csv", "history.png"
HISTORY_COLUMNS = [
    "step",
    "epoch",
    "train_loss",
    "val_loss",
    "val_snr_db",
    "learning_rate",
    "seconds",
    "val_si_sdr_db",
    "val_envelope_corr",
]


class TrainingLog:
    """The history of one run folder. Made at a resumed step, it drops the rows logged after that step."""

    def __init__(self, run_dir: Path, resumed_step: int = 0, board=None):
        """``board``: a TensorBoard ``SummaryWriter`` that also gets the metrics."""
        self.run_dir, self.board = run_dir, board
        self.rows = _history_rows(run_dir / HISTORY, resumed_step)
        _write_history(run_dir / HISTORY, self.rows)

    def validation(self, state: dict, learning_rate: float, metrics: dict[str, float]) -> None:
        """Log the validation ``metrics`` at the step and epoch of ``state``, beside its running training loss."""
        running = state["running_loss"]
        waveform = "val_si_sdr_db" in metrics
        self.rows.append(
            [
                str(state["step"]),
                str(state["epoch"]),
                f"{running:.6f}",
                f"{metrics['val_loss']:.6f}",
                f"{metrics['val_snr_db']:.3f}",
                f"{learning_rate:.3e}",
                f"{state['seconds']:.0f}",
                f"{metrics['val_si_sdr_db']:.3f}" if waveform else "",
                f"{metrics['val_envelope_corr']:.4f}",
            ]
        )
        _write_history(self.run_dir / HISTORY, self.rows)
        _plot_history(self.rows, self.run_dir / PLOT)
        tqdm.write(
            f"step {state['step']}: train loss {running:.5f}, validation loss {metrics['val_loss']:.5f}, "
            f"validation SNR {metrics['val_snr_db']:.2f} dB"
            + (f", SI-SDR {metrics['val_si_sdr_db']:.2f} dB" if waveform else "")
            + f", envelope correlation {metrics['val_envelope_corr']:.4f}"
        )
        if self.board is not None:
            for name, value in metrics.items():
                self.board.add_scalar(name, value, state["step"])
            self.board.add_scalar("train_loss", running, state["step"])
            self.board.flush()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def _history_rows(path: Path, up_to_step: int) -> list[list[str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    return [row for row in rows if int(row[0]) <= up_to_step]


def _write_history(path: Path, rows: list[list[str]]) -> None:
    def write(temp: Path) -> None:
        with temp.open("w", newline="") as handle:
            csv.writer(handle).writerows([HISTORY_COLUMNS, *rows])

    write_atomic(path, write)


def _plot_history(rows: list[list[str]], path: Path) -> None:
    """Training and validation loss, and validation SNR (and SI-SDR), against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [int(r[0]) for r in rows]
    figure, (losses, snr) = plt.subplots(1, 2, figsize=(10, 3.5))
    train_loss, val_loss = [float(r[2]) for r in rows], [float(r[3]) for r in rows]
    losses.plot(steps, train_loss, label="train (running)")
    losses.plot(steps, val_loss, label="validation")
    positive = min(train_loss + val_loss, default=1) > 0  # a waveform loss in dB can be negative
    losses.set(xlabel="step", ylabel="loss", yscale="log" if positive else "linear")
    losses.legend()
    snr.plot(steps, [float(r[4]) for r in rows], color="tab:green", label="magnitude SNR")
    waveform = [(int(r[0]), float(r[7])) for r in rows if len(r) > 7 and r[7]]
    if waveform:
        snr.plot(*zip(*waveform), color="tab:purple", label="waveform SI-SDR")
        snr.legend()
    snr.set(xlabel="step", ylabel="validation (dB)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    write_atomic(path, lambda temp: temp.write_bytes(buffer.getvalue()))
