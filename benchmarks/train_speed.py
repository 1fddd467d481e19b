"""Training throughput (patch pairs per second) of the trainer's step under each hardware setting, and of
on-the-fly mixing, plain and augmented, with the default loader workers (it should outpace the trainer).

Random patches stand in for data in the trainer's rows, so they time the model step alone: forward, loss,
backward, Adam and the weights' moving average. The mixing rows read the corpus (`--mixing`)."""

from __future__ import annotations

import argparse
import time

import torch
from common import CORPUS, print_table, write_results

from audiodenoise.data.mixing import MixConfig
from audiodenoise.data.sources import OnTheFly
from audiodenoise.nets.unet import UNet, UNetConfig
from audiodenoise.spectral import SpectralConfig
from audiodenoise.train import RunConfig, TrainConfig, Trainer

SETTINGS = {
    "fp32": {"channels_last": False, "bf16": False},
    "channels-last": {"channels_last": True, "bf16": False},
    "bf16 autocast": {"channels_last": False, "bf16": True},
    "bf16 + channels-last": {"channels_last": True, "bf16": True},
    "torch.compile": {"channels_last": False, "bf16": False, "compile": True},
    "bf16 + channels-last + waveform loss": {"channels_last": True, "bf16": True, "waveform_weight": 0.003},
}


def pairs_per_second(setting: dict, threads: int, batch: int, steps: int, device: str, n_fft: int) -> float:
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    config = TrainConfig(batch_size=batch, threads=threads, device=device, **setting)
    spectral = SpectralConfig(n_fft=n_fft)
    trainer = Trainer(UNet(UNetConfig()), spectral, config, torch.device(device))
    if config.compile:
        trainer.network = torch.compile(trainer.network)
    shape = (batch, 1, spectral.n_bins, spectral.patch_frames)
    noisy_spec = torch.randn(shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))
    clean_spec = noisy_spec * torch.rand(shape, generator=torch.Generator().manual_seed(2))
    patches = (noisy_spec.abs(), clean_spec.abs())
    if config.waveform_weight:  # the on-the-fly batches that carry spectra
        patches += (noisy_spec, clean_spec)

    def step() -> None:
        loss, *_ = trainer.batch_loss(patches)
        trainer.step(loss)

    for _ in range(3):  # warm-up (and compilation)
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - started)


MIXING = {
    "on-the-fly mixing, plain": MixConfig(),
    "on-the-fly mixing, augmented": MixConfig(
        speech_speed=(0.85, 1.15),
        speech_eq_db=6,
        band_limit_fraction=0.3,
        noise_speed=(0.8, 1.2),
        noise_eq_db=6,
        second_noise_fraction=0.3,
        noise_drift_db=6,
    ),
}


def mixing_pairs_per_second(mixing: MixConfig, batch: int, steps: int, n_fft: int) -> float:
    """Pairs per second that on-the-fly mixing of the corpus delivers with the default loader workers."""
    source = OnTheFly(
        CORPUS / "speech",
        CORPUS / "noise",
        mixing,
        spectral=SpectralConfig(n_fft=n_fft),
        epoch_pairs=batch * (steps + 2),
        workers=RunConfig.loader_workers,
    )
    batches = source.epoch(0, 0, batch, seed=0)
    next(batches)  # the workers start and fill their shuffle buffers
    started = time.perf_counter()
    pairs = sum(len(noisy) for noisy, *_ in batches)
    return pairs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-fft", type=int, default=SpectralConfig.n_fft, help="patch height n_fft // 2 + 1")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--mixing", action="store_true", help="also time on-the-fly mixing of the corpus")
    parser.add_argument("--results", default="train_speed", help="name of the results file")
    args = parser.parse_args()
    rows, results = [], []
    for name in args.settings:
        for threads in args.threads:
            try:
                speed = pairs_per_second(SETTINGS[name], threads, args.batch_size, args.steps, args.device, args.n_fft)
            except Exception as error:  # a setting this machine cannot run is reported, not fatal
                print(f"{name} at {threads} threads failed: {str(error).splitlines()[0]}")
                speed = float("nan")
            rows.append([name, threads, speed])
            results.append({"setting": name, "threads": threads, "pairs_per_second": speed})
    for name, mixing in MIXING.items() if args.mixing else ():
        speed = mixing_pairs_per_second(mixing, args.batch_size, args.steps, args.n_fft)
        rows.append([name, f"{RunConfig.loader_workers} worker(s)", speed])
        results.append({"setting": name, "loader_workers": RunConfig.loader_workers, "pairs_per_second": speed})
    print_table(["setting", "threads", "pairs/s"], rows)
    write_results(
        args.results,
        {"device": args.device, "n_fft": args.n_fft, "batch_size": args.batch_size, "steps": args.steps}
        | {"results": results},
    )


if __name__ == "__main__":
    main()
