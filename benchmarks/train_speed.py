"""Training throughput (patch pairs per second) of the trainer's step under each hardware setting.

Random patches stand in for data (the loader is far faster than training: see prepare.py), so
this times the model step alone: forward, loss, backward, Adam and the weights' moving average."""

from __future__ import annotations

import argparse
import time

import torch
from common import print_table, write_results

from audiodenoise.nets.unet import UNet, UNetConfig
from audiodenoise.spectral import SpectralConfig
from audiodenoise.train import TrainConfig, Trainer

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
        loss, _ = trainer.batch_loss(patches)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-fft", type=int, default=SpectralConfig.n_fft, help="patch height n_fft // 2 + 1")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
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
    print_table(["setting", "threads", "pairs/s"], rows)
    write_results(
        args.results,
        {"device": args.device, "n_fft": args.n_fft, "batch_size": args.batch_size, "steps": args.steps}
        | {"results": results},
    )


if __name__ == "__main__":
    main()
