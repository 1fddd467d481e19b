"""What each crunet size costs: parameters, multiply-accumulates per second of audio (convolutions, linear layers
and GRUs, counted from the layers' shapes on a real forward pass), and the trainer's step time on 3 s segments
(what bounds how much audio a CPU run sees)."""

from __future__ import annotations

import argparse
import time

import torch
from common import print_table, write_results

from audiodenoise.nets.crunet import CRUNet, CRUNetConfig
from audiodenoise.spectral import SpectralConfig
from audiodenoise.train import TrainConfig, Trainer

SIZES = {
    "small": CRUNetConfig(channels=(12, 24, 32, 32), hidden=32, blocks=1),
    "medium": CRUNetConfig(),
}
SPECTRAL = SpectralConfig(n_fft=511, hop_length=128, patch_frames=512, patch_hop=512)


def macs_per_frame(model: CRUNet, frames: int = 200) -> float:
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.ConvTranspose2d):
            total += inputs[0].numel() * module.weight[0].numel()
        elif isinstance(module, torch.nn.Conv2d):
            total += output.numel() * module.weight[0].numel()
        elif isinstance(module, torch.nn.Linear):
            total += output.numel() // output.shape[-1] * module.weight.numel()
        elif isinstance(module, torch.nn.GRU):
            steps = inputs[0].shape[0] * inputs[0].shape[1]
            directions = 2 if module.bidirectional else 1
            total += steps * directions * 3 * module.hidden_size * (module.input_size + module.hidden_size)

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model.enhance_spectrum(torch.randn(1, SPECTRAL.n_bins, frames, dtype=torch.complex64))
    for hook in hooks:
        hook.remove()
    return total / (frames + model.config.lookahead_frames)


def step_seconds(config: CRUNetConfig, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    trainer = Trainer(CRUNet(config), SPECTRAL, TrainConfig(batch_size=batch, waveform_weight=0.1), torch.device("cpu"))
    shape = (batch, 1, SPECTRAL.n_bins, SPECTRAL.patch_frames)
    noisy_spec = torch.randn(shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))
    clean_spec = noisy_spec * torch.rand(shape, generator=torch.Generator().manual_seed(2))
    batch_pairs = (noisy_spec.abs(), clean_spec.abs(), noisy_spec, clean_spec)
    for step in range(steps + 1):  # the first is a warm-up
        if step == 1:
            started = time.perf_counter()
        loss, *_ = trainer.batch_loss(batch_pairs)
        trainer.step(loss)
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames_per_second = SPECTRAL.sample_rate / SPECTRAL.hop_length
    segment_seconds = SPECTRAL.patch_frames / frames_per_second
    rows, results = [], {}
    for name, config in SIZES.items():
        model = CRUNet(config)
        params = sum(p.numel() for p in model.parameters())
        gmacs = macs_per_frame(model) * frames_per_second / 1e9
        seconds = step_seconds(config, args.batch_size, args.steps)
        audio_rate = args.batch_size * segment_seconds / seconds
        results[name] = {
            "config": config.to_dict(),
            "parameters": params,
            "gmac_per_audio_second": gmacs,
            "train_step_seconds": seconds,
            "audio_seconds_per_train_second": audio_rate,
        }
        rows.append([name, params, gmacs, seconds, audio_rate])
    print_table(["size", "parameters", "GMAC/s of audio", "train step s", "audio s per train s"], rows)
    write_results("cost", {"threads": args.threads, "batch_size": args.batch_size, "sizes": results})


if __name__ == "__main__":
    main()
