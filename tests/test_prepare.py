"""`prepare` at scale: determinism, resuming after a kill, config changes, shards and merging, on-the-fly mixing."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import resume_state, speech_like, write_corpus

from audiodenoise.checkpoint import load_checkpoint
from audiodenoise.cli import main
from audiodenoise.data.mixing import MixConfig
from audiodenoise.data.onthefly import MixingDataset, fixed_pairs
from audiodenoise.data.splits import SplitConfig, split_corpora
from audiodenoise.denoiser import Denoiser
from audiodenoise.spectral import STFT_PRESETS, SpectralConfig

SPEAKERS = ("alice", "bob", "carol", "dave", "erin", "frank")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root, SPEAKERS, files_per_speaker=3)
    return root


def prepare_argv(corpus, out, *extra):
    return [
        "prepare",
        "--speech",
        str(corpus / "speech"),
        "--noise",
        str(corpus / "noise"),
        "-o",
        str(out),
        "--files-per-chunk",
        "2",
        "--val-speakers",
        "2",
        "--seed",
        "3",
        *extra,
    ]


def folder_bytes(folder, skip=()):
    """Every file under ``folder`` by relative path -> its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def manifest_of(folder):
    return json.loads((folder / "manifest.json").read_text())


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "data"
    assert main(prepare_argv(corpus, out, "--workers", "1")) == 0
    return out


def test_same_inputs_and_seed_give_an_identical_dataset_whatever_the_workers(corpus, reference, tmp_path):
    out = tmp_path / "data"
    assert main(prepare_argv(corpus, out, "--workers", "2")) == 0
    assert folder_bytes(out) == folder_bytes(reference)
    manifest = manifest_of(reference)
    assert manifest["counts"]["clean_files"] == 19 and manifest["counts"]["failed"] == 1
    assert "broken.wav" in manifest["failures"][0]
    assert len(manifest["splits"]["val"]["speakers"]) == 2
    assert len(manifest["splits"]["train"]["shards"]) > 1


def test_a_different_seed_gives_different_mixes(corpus, reference, tmp_path):
    out = tmp_path / "data"
    assert main(prepare_argv(corpus, out, "--workers", "1", "--seed", "4")) == 0
    first = np.load(reference / "train" / "chunk_00000.noisy.npy")
    assert not np.array_equal(first, np.load(out / "train" / "chunk_00000.noisy.npy"))


def test_a_killed_prepare_resumes_where_it_stopped(corpus, reference, tmp_path):
    out = tmp_path / "data"
    argv = [
        sys.executable,
        "-m",
        "audiodenoise",
        *prepare_argv(corpus, out, "--workers", "1", "--files-per-chunk", "1"),
    ]
    # One clean file per chunk gives a record after every file, so the kill lands between chunks or inside one.
    process = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.glob("train/chunk_*.json")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert list(out.glob("train/chunk_*.json")), "the run should have finished a chunk before the kill"
    assert not (out / "manifest.json").exists()
    (out / "train" / ".chunk_00005.noisy.npy.0123456789ab.part").write_bytes(b"half")  # a write cut short
    assert main(prepare_argv(corpus, out, "--workers", "1", "--files-per-chunk", "1")) == 0
    fresh = tmp_path / "fresh"
    assert main(prepare_argv(corpus, fresh, "--workers", "2", "--files-per-chunk", "1")) == 0
    assert folder_bytes(out) == folder_bytes(fresh)


def test_resuming_a_finished_dataset_changes_nothing(corpus, reference, capsys):
    before = folder_bytes(reference)
    assert main(prepare_argv(corpus, reference, "--workers", "1")) == 0
    assert folder_bytes(reference) == before


def test_a_different_config_is_refused_unless_overwrite(corpus, reference, tmp_path, capsys):
    out = tmp_path / "data"
    assert main(prepare_argv(corpus, out, "--workers", "1")) == 0
    changed = prepare_argv(corpus, out, "--workers", "1", "--snr-db", "0", "10")
    assert main(changed) == 2
    err = capsys.readouterr().err
    assert "different config (mixing)" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert folder_bytes(out) == folder_bytes(reference)  # untouched
    assert main(changed + ["--overwrite"]) == 0
    assert manifest_of(out)["mixing"]["snr_db"] == [0.0, 10.0]
    fresh = tmp_path / "fresh"
    assert main(prepare_argv(corpus, fresh, "--workers", "1", "--snr-db", "0", "10")) == 0
    assert folder_bytes(out) == folder_bytes(fresh)


def test_a_folder_holding_other_files_is_refused(corpus, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(prepare_argv(corpus, tmp_path, "--overwrite")) == 2
    assert "holds no dataset" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_shards_made_apart_merge_into_the_same_dataset(corpus, reference, tmp_path, capsys):
    parts = [tmp_path / "part1", tmp_path / "part2"]
    for k, part in enumerate(parts, 1):
        assert main(prepare_argv(corpus, part, "--workers", "1", "--shard", f"{k}/2")) == 0
        assert not (part / "manifest.json").exists()
    assert "gather them with 'audiodenoise merge'" in capsys.readouterr().out
    merged = tmp_path / "merged"
    assert main(["merge", str(parts[0]), str(parts[1]), "-o", str(merged)]) == 0
    skip = ("manifest.json",)
    assert folder_bytes(merged, skip) == folder_bytes(reference, skip)
    expected = {k: v for k, v in manifest_of(reference).items() if k != "sources"}
    assert manifest_of(merged) == expected


def test_shards_written_into_one_folder_complete_it(corpus, reference, tmp_path):
    out = tmp_path / "data"
    for k in (2, 1):
        assert main(prepare_argv(corpus, out, "--workers", "1", "--shard", f"{k}/2")) == 0
    assert folder_bytes(out) == folder_bytes(reference)


@pytest.mark.parametrize("shard", ["3/2", "0/1", "two"])
def test_bad_shard_is_a_usage_error(corpus, tmp_path, capsys, shard):
    assert main(prepare_argv(corpus, tmp_path / "data", "--shard", shard)) == 2
    assert "--shard" in capsys.readouterr().err


def test_merging_shards_of_different_configs_is_refused(corpus, tmp_path, capsys):
    assert main(prepare_argv(corpus, tmp_path / "a", "--workers", "1", "--shard", "1/2")) == 0
    assert main(prepare_argv(corpus, tmp_path / "b", "--workers", "1", "--shard", "2/2", "--max-files", "8")) == 0
    assert main(["merge", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "c")]) == 2
    assert "different config" in capsys.readouterr().err
    assert main(["merge", str(tmp_path / "a"), "-o", str(tmp_path / "c")]) == 2
    assert "is missing" in capsys.readouterr().err


def test_unreadable_noise_is_reported_and_replaced(corpus, tmp_path):
    noise = tmp_path / "noise"
    (noise / "hiss").mkdir(parents=True)
    for path in (corpus / "noise" / "hiss").iterdir():
        (noise / "hiss" / path.name).write_bytes(path.read_bytes())
    (noise / "hiss" / "corrupt.wav").write_bytes(b"RIFF....WAVEjunk")
    out = tmp_path / "data"
    argv = prepare_argv(corpus, out, "--workers", "1", "--synthetic-noise-fraction", "0")
    argv[argv.index(str(corpus / "noise"))] = str(noise)
    assert main(argv) == 0
    manifest = manifest_of(out)
    assert any("corrupt.wav" in line for line in manifest["failures"])
    assert manifest["splits"]["train"]["pairs"] > 0


def test_on_the_fly_mixing_is_seeded_and_endless(corpus):
    splits = split_corpora(corpus / "speech", corpus / "noise", SplitConfig(val_speakers=2))
    assert not {f.group for f in splits["train"].speech} & {f.group for f in splits["val"].speech}

    def take(seed, n):
        stream = iter(MixingDataset(splits["train"], seed=seed, shuffle_buffer=8))
        return [next(stream) for _ in range(n)]

    first, again, other = take((1, 0), 6), take((1, 0), 6), take((1, 1), 6)
    noisy, clean, noisy_spec, clean_spec = first[0]
    assert noisy.shape == clean.shape == noisy_spec.shape == (1, 128, 128) and noisy_spec.is_complex()
    assert torch.equal(noisy_spec.abs(), noisy) and torch.equal(clean_spec.abs(), clean)  # the magnitude target
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other))
    # More pairs than one pass over the files gives: the stream goes on with new mixes.
    assert len(take((1, 0), 200)) == 200
    validation = fixed_pairs(splits["val"], 5, SpectralConfig(), MixConfig())
    assert len(validation) == 5
    assert all(
        torch.equal(a[1], b[1])
        for a, b in zip(validation, fixed_pairs(splits["val"], 5, SpectralConfig(), MixConfig()))
    )


def test_train_on_the_fly_writes_a_checkpoint(corpus, tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--speech", str(corpus / "speech"), "--noise", str(corpus / "noise"), str(run)]
    options = ["--epoch-pairs", "8", "--batch-size", "4", "--epochs", "1", "--threads", "1"]
    waveform = ["--waveform-weight", "0.003", "--select-by", "val_si_sdr_db"]
    assert main(argv + options + ["--clean-target", "phase-sensitive", *waveform]) == 0
    state = resume_state(run)
    assert state["step"] == 2 and state["epoch"] == 1
    _, spectral, config = load_checkpoint(run / "best")
    assert config["info"]["dataset"].startswith("on the fly")
    assert config["info"]["mixing"]["clean_target"] == "phase-sensitive"
    assert config["info"]["train"]["waveform_weight"] == 0.003
    header, *_, last = (line.split(",") for line in (run / "history.csv").read_text().splitlines())
    assert header[-2:] == ["val_si_sdr_db", "val_envelope_corr"]
    assert float(last[-2]) == pytest.approx(config["info"]["val_si_sdr_db"], abs=1e-3)


def test_stft_options_reach_the_dataset_and_the_checkpoint(corpus, tmp_path):
    out, run = tmp_path / "data", tmp_path / "run"
    stft = ["--stft", "reference", "--n-fft", "511", "--hop-length", "128"]
    assert main(prepare_argv(corpus, out, "--workers", "1", *stft)) == 0
    assert SpectralConfig.from_dict(manifest_of(out)["spectral"]) == SpectralConfig(n_fft=511, hop_length=128)
    argv = ["train", "--speech", str(corpus / "speech"), "--noise", str(corpus / "noise"), str(run), *stft]
    assert main(argv + ["--epoch-pairs", "4", "--batch-size", "2", "--epochs", "1", "--threads", "1"]) == 0
    model, spectral, _ = load_checkpoint(run / "best")
    assert (spectral.n_fft, spectral.hop_length, spectral.n_bins) == (511, 128, 256)
    noisy = speech_like(2.0, 22050) + 0.01 * np.random.default_rng(0).normal(size=44100).astype(np.float32)
    clean = Denoiser(model, spectral)(noisy, 22050)
    assert clean.shape == noisy.shape and np.isfinite(clean).all() and not np.array_equal(clean, noisy)


@pytest.mark.parametrize("preset", STFT_PRESETS)
def test_stft_presets_are_stored_in_the_dataset(corpus, tmp_path, preset):
    out = tmp_path / "data"
    assert main(prepare_argv(corpus, out, "--workers", "1", "--max-files", "4", "--stft", preset)) == 0
    assert SpectralConfig.from_dict(manifest_of(out)["spectral"]) == STFT_PRESETS[preset]


def test_stft_settings_the_unet_cannot_halve_are_refused(corpus, tmp_path, capsys):
    argv = ["train", "--speech", str(corpus / "speech"), "--noise", str(corpus / "noise"), str(tmp_path / "run")]
    assert main(argv + ["--stft", "reference", "--n-fft", "300", "--epoch-pairs", "4", "--batch-size", "2"]) == 2
    error = capsys.readouterr().err
    assert "151 bins" in error and "multiple of 16" in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "argv, mentions",
    [
        (["train", "run"], "DATASET RUN_DIR"),
        (["train", "--speech", "s", "run"], "both --speech and --noise"),
        (["train", "--speech", "s", "--noise", "n", "data", "run"], "RUN_DIR alone"),
    ],
)
def test_train_source_usage_errors(argv, mentions, capsys):
    assert main(argv) == 2
    assert mentions in capsys.readouterr().err


def test_val_fraction_is_a_share_of_the_files_held_out_by_whole_speakers(tmp_path):
    write_corpus(tmp_path, ("big", "mid", "small", "tiny"), files_per_speaker=1)
    for i in range(1, 12):  # "big" holds most of the files
        (tmp_path / "speech" / "big" / f"{i}.wav").write_bytes((tmp_path / "speech" / "big" / "0.wav").read_bytes())
    for seed in range(5):
        splits = split_corpora(tmp_path / "speech", tmp_path / "noise", SplitConfig(val_fraction=0.3, seed=seed))
        val, train = splits["val"], splits["train"]
        total = len(val.speech) + len(train.speech)
        assert len(val.speech) >= 0.3 * total or len(val.speakers) == 3  # all but one speaker held out
        assert train.speech and not set(val.speakers) & set(train.speakers)


def test_noise_is_split_by_file_so_no_category_is_held_out_whole(tmp_path):
    write_corpus(tmp_path, SPEAKERS, files_per_speaker=1)
    hiss = tmp_path / "noise" / "hiss"
    for i in range(2, 10):
        (hiss / f"{i}.flac").write_bytes((hiss / "0.flac").read_bytes())
    splits = split_corpora(tmp_path / "speech", tmp_path / "noise", SplitConfig(val_fraction=0.3))
    assert "hiss" in {f.group for f in splits["train"].noise} & {f.group for f in splits["val"].noise}
    assert not {f.path for f in splits["train"].noise} & {f.path for f in splits["val"].noise}


def test_clean_fraction_leaves_mixes_without_noise(corpus):
    from audiodenoise.data.pairs import mix_signals

    speech = sorted((corpus / "speech" / "alice").glob("*.wav"))
    noises = tuple(sorted((corpus / "noise").rglob("*.flac")))
    for fraction, same in ((1.0, True), (0.0, False)):
        mixing = MixConfig(clean_fraction=fraction)
        (noisy, clean), errors = mix_signals(speech[0], noises, (), np.random.default_rng(0), SpectralConfig(), mixing)
        assert np.array_equal(noisy, clean) == same and not errors


def test_phase_sensitive_target_is_the_clean_magnitude_projected_on_the_noisy_phase():
    from audiodenoise.data.pairs import patches

    rng = np.random.default_rng(0)
    clean = speech_like(1.0, 22050).astype(np.float32)
    noisy = clean + 0.05 * rng.standard_normal(len(clean)).astype(np.float32)
    spectral = SpectralConfig()
    magnitude = patches((noisy, clean), spectral, "magnitude")
    phase_sensitive = patches((noisy, clean), spectral, "phase-sensitive")
    assert np.array_equal(magnitude[0], phase_sensitive[0])  # the input is the same
    spec = torch.stft(
        torch.from_numpy(np.stack([noisy, clean])),
        255,
        63,
        window=torch.hann_window(255),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    expected = (spec[1].abs() * torch.cos(spec[1].angle() - spec[0].angle())).clamp_min(0).numpy()
    frames = expected.shape[-1]
    got = np.concatenate([phase_sensitive[1][0], *(p[:, 64:] for p in phase_sensitive[1][1:])], axis=-1)
    np.testing.assert_allclose(got[:, :frames], expected, atol=1e-4)
    assert 0 < phase_sensitive[1].sum() < magnitude[1].sum()
    same = patches((clean, clean), spectral, "phase-sensitive")  # no noise: the phase error is 0
    np.testing.assert_allclose(same[1], patches((clean, clean), spectral, "magnitude")[1], atol=1e-6)
    with pytest.raises(ValueError, match="clean_target"):
        MixConfig(clean_target="phase")


@pytest.mark.parametrize("content", [b"\xff\xfe not text", b"{not json", b"[1, 2]"])
def test_a_corrupt_manifest_or_checkpoint_config_is_one_line_naming_the_file(tmp_path, capsys, content):
    data, model = tmp_path / "data", tmp_path / "model"
    for folder, name in ((data, "manifest.json"), (model, "config.json")):
        folder.mkdir()
        (folder / name).write_bytes(content)
    assert main(["train", str(data), str(tmp_path / "run"), "--max-steps", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert f"{data / 'manifest.json'}: unreadable manifest" in error and len(error.splitlines()) == 1
    assert main(["export", "--model", str(model), "-o", str(tmp_path / "m.onnx")]) == 2
    error = capsys.readouterr().err.strip()
    assert f"{model / 'config.json'}: unreadable config" in error and len(error.splitlines()) == 1
