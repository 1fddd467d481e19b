"""The trainer: exact resume after kill -9, two-process DDP, NaN handling, corrupt checkpoints, losses, early stop,
the weights' moving average, and the waveform and envelope losses."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import resume_state, speech_like, write_corpus
from safetensors import safe_open

from audiodenoise.checkpoint import load_checkpoint, save_checkpoint
from audiodenoise.cli import main
from audiodenoise.engine import bf16_native
from audiodenoise.losses import LOSSES
from audiodenoise.nets.unet import UNet, UNetConfig
from audiodenoise.spectral import STFT_PRESETS, SpectralConfig
from audiodenoise.train import TrainConfig, TrainingError, train


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-corpus")
    write_corpus(root, ("alice", "bob", "carol", "dave"), files_per_speaker=3)
    out = root / "data"
    argv = ["prepare", "--speech", str(root / "speech"), "--noise", str(root / "noise"), "-o", str(out)]
    assert main(argv + ["--val-speakers", "1", "--workers", "1"]) == 0
    return out


def weights(run, folder="last"):
    with safe_open(run / folder / "model.safetensors", "pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


TRAIN = ["--batch-size", "2", "--threads", "1", "--epochs", "1", "--checkpoint-every", "2", "--validate-every", "4"]


def test_kill_9_then_resume_gives_the_uninterrupted_weights(dataset, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main(["train", str(dataset), str(straight), *TRAIN]) == 0
    command = [sys.executable, "-m", "audiodenoise", "train", str(dataset), str(killed), *TRAIN]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resume_point = killed / "last" / "training.safetensors"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if resume_point.is_file() and resume_state(killed)["step"] >= 4:
            break
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    total = resume_state(straight)["step"]
    assert 4 <= resume_state(killed)["step"] < total, "the kill should land in the middle of training"
    assert main(["train", str(dataset), str(killed), *TRAIN, "--resume"]) == 0
    assert resume_state(killed)["step"] == total
    assert same_weights(weights(killed), weights(straight))
    assert same_weights(weights(killed, "best"), weights(straight, "best"))

    def logged(run):  # step, epoch, train, validation loss and SNR: all but the timing
        return [line.split(",")[:5] for line in (run / "history.csv").read_text().splitlines()]

    assert logged(killed) == logged(straight)
    assert (killed / "history.png").read_bytes()[:4] == b"\x89PNG"


def test_stop_after_ends_early_on_the_full_schedule_and_resume_completes_it(dataset, tmp_path):
    # No warm-up, so every step's learning rate depends on the planned length of the cosine.
    planned = TrainConfig(epochs=1, max_steps=6, batch_size=2, threads=1, warmup_steps=0, validate_every=3)
    straight = train(dataset, tmp_path / "straight", UNetConfig(), planned)
    stopped = train(dataset, tmp_path / "stopped", UNetConfig(), replace(planned, stop_after=3))
    assert (straight["step"], stopped["step"]) == (6, 3)
    resumed = train(dataset, tmp_path / "stopped", UNetConfig(), planned, resume=True)
    assert resumed["step"] == 6 and resumed["weights_sha256"] == straight["weights_sha256"]

    def validated_steps(run):  # a step validated in the loop is not validated again at the run's end
        return [line.split(",")[0] for line in (run / "history.csv").read_text().splitlines()[1:]]

    assert validated_steps(tmp_path / "stopped") == validated_steps(tmp_path / "straight") == ["3", "6"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_rank(rank: int, world: int, port: int, dataset, run, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    config = TrainConfig(epochs=1, max_steps=3, batch_size=2, threads=1, validate_every=0, device="cpu")
    state = train(dataset, run, UNetConfig(), config)
    results.put((rank, state["weights_sha256"], state["step"]))
    torch.distributed.destroy_process_group()


def test_two_ddp_processes_end_with_the_same_weights(dataset, tmp_path):
    context = torch.multiprocessing.get_context("spawn")
    results = context.Queue()
    port = _free_port()
    ranks = [context.Process(target=_ddp_rank, args=(r, 2, port, dataset, tmp_path / "run", results)) for r in (0, 1)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=300)
    assert [process.exitcode for process in ranks] == [0, 0]
    outcome = {rank: (digest, step) for rank, digest, step in (results.get(timeout=5) for _ in ranks)}
    assert outcome[0] == outcome[1] and outcome[0][1] == 3
    assert (tmp_path / "run" / "last" / "model.safetensors").is_file()  # written by rank 0


def test_a_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(dataset, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert main(["train", str(dataset), str(run), *TRAIN[:-4], "--epochs", "1", "--checkpoint-every", "2"]) == 0
    before = weights(run)
    monkeypatch.setattr("audiodenoise.train.loss_value", lambda *args, **kwargs: torch.tensor(float("nan")))
    assert main(["train", str(dataset), str(run), *TRAIN[:-4], "--epochs", "2", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "loss became nan" in err and str(run / "last") in err and "Traceback" not in err
    assert same_weights(weights(run), before)


def test_corrupt_or_mismatched_checkpoints_are_exit_2(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(dataset), str(run), *TRAIN[:-4], "--epochs", "1"]) == 0
    resume_point = run / "last" / "training.safetensors"
    resume_point.write_bytes(resume_point.read_bytes()[:1000])  # truncated
    assert main(["train", str(dataset), str(run), "--resume", "--epochs", "2"]) == 2
    assert "corrupt resume checkpoint" in capsys.readouterr().err
    weights_file = run / "best" / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:1000])
    assert main(["denoise", str(dataset / "manifest.json"), "--model", str(run / "best")]) == 2
    assert "corrupt or incompatible weights" in capsys.readouterr().err
    assert main(["train", str(tmp_path), str(tmp_path / "other")]) == 2
    assert "not a dataset" in capsys.readouterr().err


def test_resuming_with_other_stft_settings_is_refused(dataset, tmp_path):
    from audiodenoise.train import Trainer

    run = tmp_path / "run"
    assert main(["train", str(dataset), str(run), *TRAIN[:-4], "--epochs", "1"]) == 0
    other = Trainer(UNet(UNetConfig()), SpectralConfig(hop_length=32), TrainConfig(), torch.device("cpu"))
    with pytest.raises(TrainingError, match="STFT settings differ"):
        other.load_resume_point(run / "last" / "training.safetensors")


def test_fine_tuning_may_start_from_weights_of_another_stft_but_not_another_sample_rate(dataset, tmp_path, capsys):
    source = tmp_path / "long"  # the dataset has the reference settings
    save_checkpoint(source, UNet(UNetConfig(target="mask")), STFT_PRESETS["long"])
    run = tmp_path / "run"
    argv = ["train", str(dataset), str(run), *TRAIN, "--max-steps", "1", "--learning-rate", "0", "--ema-decay", "0"]
    assert main([*argv, "--init-from", str(source)]) == 0
    assert "other STFT settings: n_fft 511 -> 255, hop_length 128 -> 63" in capsys.readouterr().out
    assert load_checkpoint(run / "last")[1] == SpectralConfig()
    assert same_weights(weights(run), weights(source, "."))
    save_checkpoint(source, UNet(UNetConfig(target="mask")), SpectralConfig(sample_rate=16000))
    argv[2] = str(tmp_path / "other")
    assert main([*argv, "--init-from", str(source)]) == 2
    assert "22050 Hz, but the checkpoint" in (error := capsys.readouterr().err) and "is for 16000 Hz" in error


@pytest.mark.parametrize("option, expected", [([], bf16_native(torch.device("cpu"))), (["--no-bf16"], False)])
def test_bf16_defaults_to_what_the_cpu_computes_natively_and_is_recorded(dataset, tmp_path, option, expected):
    run = tmp_path / "run"
    assert main(["train", str(dataset), str(run), *TRAIN, "--max-steps", "1", *option]) == 0
    _, _, config = load_checkpoint(run / "last")
    assert config["info"]["train"]["bf16"] is expected


@pytest.mark.parametrize("loss", [loss for loss in LOSSES if loss != "hybrid"])
@pytest.mark.parametrize("target", ["mask", "noise"])
def test_every_magnitude_loss_trains_both_targets(dataset, tmp_path, loss, target):
    config = TrainConfig(epochs=1, max_steps=2, batch_size=2, threads=1, loss=loss, validate_every=0)
    state = train(dataset, tmp_path / "run", UNetConfig(target=target), config)
    assert state["step"] == 2 and torch.isfinite(torch.tensor(state["best"]))


def test_the_hybrid_loss_needs_spectra(dataset, tmp_path):
    config = TrainConfig(max_steps=1, batch_size=2, threads=1, loss="hybrid")
    with pytest.raises(TrainingError, match="the hybrid loss needs on-the-fly mixing"):
        train(dataset, tmp_path / "run", UNetConfig(), config)


def test_early_stopping_ends_the_run(dataset, tmp_path):
    # With a zero learning rate nothing improves after the first validation, so patience 2 stops at the third.
    config = TrainConfig(epochs=50, batch_size=2, threads=1, learning_rate=0.0, validate_every=1, patience=2)
    state = train(dataset, tmp_path / "run", UNetConfig(), config)
    assert state["step"] == 3 and state["stale"] == 2


@pytest.mark.parametrize("decay", [0.0, 0.5])
def test_checkpoints_hold_the_moving_average_of_the_weights(dataset, tmp_path, decay):
    run = tmp_path / "run"
    assert main(["train", str(dataset), str(run), *TRAIN, "--max-steps", "3", "--ema-decay", str(decay)]) == 0
    with safe_open(run / "last" / "training.safetensors", "pt") as handle:
        raw = {key[6:]: handle.get_tensor(key) for key in handle.keys() if key.startswith("model.")}
        average = {key[15:]: handle.get_tensor(key) for key in handle.keys() if key.startswith("average.module.")}
        updates = handle.get_tensor("average.n_averaged") if decay else None
    assert same_weights(weights(run), average if decay else raw)
    if decay:
        assert int(updates) == 3  # one update per step
        assert not same_weights(raw, average)
    else:  # no average is kept without a decay
        assert not average


def test_the_waveform_si_sdr_scores_patches_and_skips_those_without_speech():
    from audiodenoise.data.pairs import spectrum_patches
    from audiodenoise.losses import SI_SDR_CEILING_DB, patch_si_sdr, waveform_loss

    spectral = SpectralConfig()
    rng = np.random.default_rng(0)
    clean = np.concatenate([speech_like(1.5, 22050), np.zeros(22050)]).astype(np.float32)
    noise = 0.03 * rng.standard_normal(len(clean)).astype(np.float32)
    noisy_spec, clean_spec = (s.unsqueeze(1) for s in spectrum_patches((clean + noise, clean), spectral))
    perfect, voiced = patch_si_sdr(clean_spec, clean_spec, clean_spec, spectral)
    assert voiced[0] and not voiced[-1]  # the last patch holds noise only
    assert perfect[voiced].min() == pytest.approx(SI_SDR_CEILING_DB, abs=0.01)  # soft-limited
    passed, _ = patch_si_sdr(noisy_spec, noisy_spec, clean_spec, spectral)
    assert 0 < passed[voiced].mean() < 25
    scaled, _ = patch_si_sdr(0.5 * noisy_spec, noisy_spec, clean_spec, spectral)
    torch.testing.assert_close(scaled[voiced], passed[voiced], atol=1e-3, rtol=0)  # scale-invariant
    assert waveform_loss(noisy_spec, noisy_spec, clean_spec, spectral) == -passed[voiced].mean()


def test_the_envelope_correlation_ranks_noise_levels_as_stoi_does_and_skips_patches_without_speech():
    from pystoi import stoi

    from audiodenoise.data.pairs import spectrum_patches
    from audiodenoise.losses import envelope_correlation, envelope_loss, holds_speech

    spectral = SpectralConfig()
    rng = np.random.default_rng(1)
    clean = np.concatenate([speech_like(3.0, 22050), np.zeros(22050)]).astype(np.float32)
    noise = rng.standard_normal(len(clean)).astype(np.float32)
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2))
    proxies, scores = [], []
    for snr_db in (0, 10, 20):
        noisy = clean + noise * 10 ** (-snr_db / 20)
        noisy_mag, clean_mag = (s.abs().unsqueeze(1) for s in spectrum_patches((noisy, clean), spectral))
        voiced = holds_speech(noisy_mag, clean_mag)
        assert voiced[0] and not voiced[-1]  # the last patch holds noise only
        correlation = envelope_correlation(noisy_mag, clean_mag, spectral)
        proxies.append(float(correlation[voiced].mean()))
        scores.append(stoi(clean, noisy, 22050))
        loss = envelope_loss(noisy_mag, noisy_mag, clean_mag, spectral)
        assert float(loss) == pytest.approx(1 - proxies[-1], abs=1e-6)
    assert proxies == sorted(proxies) and scores == sorted(scores)
    assert proxies[-1] - proxies[0] > 0.02
    exact = envelope_correlation(clean_mag[voiced], clean_mag[voiced], spectral)
    scaled = envelope_correlation(0.5 * clean_mag[voiced], clean_mag[voiced], spectral)
    torch.testing.assert_close(exact, torch.ones_like(exact), atol=1e-4, rtol=0)
    torch.testing.assert_close(scaled, exact, atol=1e-4, rtol=0)  # scale-invariant
    silent = clean_mag[~voiced]
    assert float(envelope_loss(silent, noisy_mag[~voiced], silent, spectral)) == 0


def test_the_envelope_loss_trains_on_a_prepared_dataset_and_can_pick_the_best(dataset, tmp_path):
    run = tmp_path / "run"
    options = ["--max-steps", "4", "--envelope-weight", "0.1", "--select-by", "val_envelope_corr"]
    assert main(["train", str(dataset), str(run), *TRAIN, *options]) == 0
    _, _, config = load_checkpoint(run / "best")
    assert config["info"]["train"]["envelope_weight"] == 0.1
    header, *_, last = (line.split(",") for line in (run / "history.csv").read_text().splitlines())
    assert header[-1] == "val_envelope_corr" and last[-2] == ""  # no SI-SDR without spectra
    assert 0 < config["info"]["val_envelope_corr"] <= 1
    assert float(last[-1]) == pytest.approx(config["info"]["val_envelope_corr"], abs=1e-4)


@pytest.mark.parametrize("option", [["--waveform-weight", "0.01"], ["--select-by", "val_si_sdr_db"]])
def test_the_waveform_loss_and_metric_need_mixing_on_the_fly(dataset, tmp_path, capsys, option):
    assert main(["train", str(dataset), str(tmp_path / "run"), *TRAIN, *option]) == 2
    err = capsys.readouterr().err
    assert "holds magnitudes only" in err and "--speech/--noise" in err and "Traceback" not in err


def test_a_moving_average_that_never_moves_is_refused(dataset, tmp_path, capsys):
    assert main(["train", str(dataset), str(tmp_path / "run"), *TRAIN, "--ema-decay", "1"]) == 2
    err = capsys.readouterr().err
    assert "ema_decay: must be below 1" in err and "Traceback" not in err


def test_the_moving_average_warms_up_to_its_decay():
    from audiodenoise.train import _moving_average

    averaged, current = [torch.zeros(3)], [torch.ones(3)]
    update = _moving_average(0.999)
    update(averaged, current, torch.tensor(1))  # decay (1 + 1) / (10 + 1) on the first averaging
    torch.testing.assert_close(averaged[0], torch.full((3,), 9 / 11))
    averaged = [torch.zeros(3)]
    update(averaged, current, torch.tensor(100_000))  # capped at 0.999 late in a run
    torch.testing.assert_close(averaged[0], torch.full((3,), 0.001))


def test_every_config_field_has_a_command_line_option():
    import argparse
    import dataclasses

    from audiodenoise.cli import build_parser
    from audiodenoise.data.mixing import MixConfig
    from audiodenoise.data.splits import SplitConfig
    from audiodenoise.limits import Limits

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    dests = {name: {action.dest for action in parser._actions} for name, parser in commands.items()}
    sections = {
        "train": [("train", TrainConfig), ("model", UNetConfig), ("mixing", MixConfig), ("spectral", SpectralConfig)],
        "prepare": [("mixing", MixConfig), ("split", SplitConfig), ("spectral", SpectralConfig)],
        "serve": [("limits", Limits)],
    }
    missing = [
        f"{command} {section}.{field.name}"
        for command, configs in sections.items()
        for section, cls in configs
        for field in dataclasses.fields(cls)
        if f"{section}.{field.name}" not in dests[command]
    ]
    assert not missing


def test_a_run_records_its_config_and_train_config_of_it_reproduces_the_run(dataset, tmp_path):
    first, again = tmp_path / "first", tmp_path / "again"
    options = [*TRAIN, "--max-steps", "3", "--warmup-steps", "1", "--final-learning-rate", "1e-4"]
    assert main(["train", str(dataset), str(first), *options]) == 0
    recorded = json.loads((first / "config.json").read_text())
    assert recorded["dataset"] == str(dataset) and recorded["train"]["warmup_steps"] == 1
    assert recorded["train"]["final_learning_rate"] == 1e-4 and recorded["version"] == 1
    assert main(["train", "--config", str(first / "config.json"), str(again)]) == 0
    assert same_weights(weights(again), weights(first))
    assert json.loads((again / "config.json").read_text()) == recorded


def test_options_override_a_toml_config(dataset, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(f'dataset = "{dataset}"\n[train]\nmax_steps = 2\nbatch_size = 2\nthreads = 1\nepochs = 1\n')
    assert main(["train", "--config", str(config), str(tmp_path / "run"), "--max-steps", "1"]) == 0
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["train"]["max_steps"] == 1 and recorded["train"]["batch_size"] == 2
    assert resume_state(tmp_path / "run")["step"] == 1


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        ("[train]\nepochz = 3\n", "unknown setting train.epochz"),
        ("[train]\nepochs = 'three'\n", "train.epochs: must be of type int"),
        ("[mixing]\nclean_fraction = 2.0\n", "mixing.clean_fraction: must be at most 1"),
        ("version = 7\n", "version: must be one of 1"),
        ("[train\n", "not valid TOML"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_key_and_the_file(dataset, tmp_path, capsys, text, mentions):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    assert main(["train", "--config", str(config), str(dataset), str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err.strip()
    assert mentions in error and str(config) in error and len(error.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_the_tuned_strength_is_recorded_as_the_checkpoints_default(tmp_path):
    from audiodenoise.checkpoint import read_config, set_inference_defaults
    from audiodenoise.denoiser import Denoiser

    save_checkpoint(tmp_path, UNet(UNetConfig()), SpectralConfig(), {"step": 3})
    set_inference_defaults(tmp_path, strength=0.8)
    assert read_config(tmp_path)["inference"] == {"strength": 0.8} and read_config(tmp_path)["info"] == {"step": 3}
    assert Denoiser.from_pretrained(tmp_path, engine="torch").strength == 0.8


def test_each_stage_of_the_shipped_recipe_is_a_valid_run_config():
    import tomllib

    from audiodenoise.train import RunConfig

    stages = sorted((Path(__file__).parents[1] / "recipes" / "unet-mask").glob("stage*.toml"))
    runs = [RunConfig.from_dict(tomllib.loads(stage.read_text())) for stage in stages]
    assert len(runs) == 6 and runs[0].dataset and all(run.speech for run in runs[1:])
    assert [run.spectral.n_fft for run in runs] == [255] * 4 + [511] * 2
