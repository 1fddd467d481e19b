"""``audiodenoise denoise``: exit codes, messages, output naming and the safety of inputs and outputs.

The CLI runs in-process through ``cli.main`` (one subprocess test covers ``python -m audiodenoise``);
every audio file is generated in code into ``tmp_path`` and the model is a checkpoint from conftest.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import denoise_cli

from audiodenoise.cli import main

RATE = 16000


def tone(seconds: float = 0.5, sample_rate: int = RATE, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    columns = [0.3 * np.sin(2 * np.pi * (300 + 120 * c) * t) for c in range(channels)]
    return np.stack(columns, axis=1).astype(np.float32)


def write_wav(path: Path, signal=None, sample_rate: int = RATE, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone() if signal is None else signal, sample_rate, **options)
    return path


def digests(root: Path) -> dict[Path, str]:
    """sha256 of every file under ``root``."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def part_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


def files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def assert_clean_error(err: str, *names: str) -> None:
    """One ``audiodenoise: error:`` line per name, each naming its file, and no traceback."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert len(lines) == len(names), lines
    for line, name in zip(lines, names, strict=True):
        assert line.startswith("audiodenoise: error: ")
        assert name in line


@pytest.fixture
def model(identity_checkpoint) -> list[str]:
    return ["--model", str(identity_checkpoint)]


# --- bad inputs --------------------------------------------------------------------------------


def test_missing_file(capsys, tmp_path, model):
    missing = tmp_path / "nowhere.wav"
    code, out, err = denoise_cli(capsys, missing, *model)
    assert code == 1
    assert_clean_error(err, "nowhere.wav")
    assert "no such file" in err
    assert "0 of 1 inputs denoised, 1 failed" in out
    assert files(tmp_path) == set()


def test_folder_without_audio(capsys, tmp_path, model):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "readme.txt").write_text("no audio here")
    before = digests(tmp_path)
    code, out, err = denoise_cli(capsys, folder, *model)
    assert code == 1
    assert_clean_error(err, str(folder))
    assert "holds no audio files" in err
    assert digests(tmp_path) == before


def _text_as_wav(path: Path) -> None:
    path.write_text("Hello, this is not audio at all.\n" * 40)


def _truncated_wav(path: Path) -> None:
    write_wav(path, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:30])  # the header is cut before the data chunk


def _zero_length(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_text_as_wav, "not a readable audio file"),
        (_truncated_wav, "not a readable audio file"),
        (_zero_length, "empty file"),
    ],
    ids=["text-renamed-wav", "truncated-wav", "zero-length"],
)
def test_unreadable_input_is_reported_without_output(capsys, tmp_path, model, make, reason):
    source = tmp_path / "broken.wav"
    make(source)
    before = digests(tmp_path)
    code, out, err = denoise_cli(capsys, source, *model)
    assert code == 1
    assert_clean_error(err, str(source))
    assert reason in err
    assert "0 of 1 inputs denoised, 1 failed" in out
    assert digests(tmp_path) == before  # no output, no leftovers, input unchanged
    assert part_files(tmp_path) == []


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_samples_are_refused(capsys, tmp_path, model, bad):
    signal = tone()
    signal[2000, 0] = bad
    source = write_wav(tmp_path / "poisoned.wav", signal, subtype="FLOAT")
    before = digests(tmp_path)
    code, out, err = denoise_cli(capsys, source, *model)
    assert code == 1
    assert_clean_error(err, str(source))
    assert "NaN or Inf" in err
    assert digests(tmp_path) == before
    assert not (tmp_path / "poisoned_denoised.wav").exists()
    assert part_files(tmp_path) == []


# --- awkward but valid audio -------------------------------------------------------------------


def test_all_zeros_gives_all_zeros(capsys, tmp_path, model):
    source = write_wav(tmp_path / "silence.wav", np.zeros((RATE // 2, 1), np.float32), subtype="FLOAT")
    before = digests(tmp_path)
    code, out, _ = denoise_cli(capsys, source, *model)
    assert code == 0
    assert "1 of 1 inputs denoised, 0 failed" in out
    data, rate = sf.read(tmp_path / "silence_denoised.wav", dtype="float32")
    assert rate == RATE and len(data) == RATE // 2
    assert np.isfinite(data).all()
    assert np.all(data == 0.0)
    assert digests(tmp_path)[source] == before[source]


def test_clipped_full_scale_audio(capsys, tmp_path, model):
    t = np.arange(RATE // 2) / RATE
    square = np.where(np.sin(2 * np.pi * 200 * t) >= 0, 1.0, -1.0).astype(np.float32)
    source = write_wav(tmp_path / "clipped.wav", square, subtype="FLOAT")
    before = digests(tmp_path)
    code, _, err = denoise_cli(capsys, source, *model)
    assert code == 0, err
    data, rate = sf.read(tmp_path / "clipped_denoised.wav", dtype="float32")
    assert rate == RATE and data.shape == square.shape
    assert np.isfinite(data).all()
    assert np.mean(np.abs(data)) > 0.5  # still a loud square-ish wave
    assert digests(tmp_path)[source] == before[source]


@pytest.mark.parametrize("sample_rate", [8000, 96000])
def test_extreme_sample_rates(capsys, tmp_path, model, sample_rate):
    source = write_wav(tmp_path / "rate.wav", tone(0.5, sample_rate), sample_rate, subtype="PCM_16")
    before = digests(tmp_path)
    code, _, err = denoise_cli(capsys, source, *model)
    assert code == 0, err
    info = sf.info(str(tmp_path / "rate_denoised.wav"))
    assert info.samplerate == sample_rate
    assert info.frames == sf.info(str(source)).frames
    assert digests(tmp_path)[source] == before[source]


def test_six_channels(capsys, tmp_path, model):
    source = write_wav(tmp_path / "surround.wav", tone(0.3, channels=6), subtype="PCM_16")
    code, _, err = denoise_cli(capsys, source, *model)
    assert code == 0, err
    data, _ = sf.read(tmp_path / "surround_denoised.wav", dtype="float32", always_2d=True)
    assert data.shape == (int(0.3 * RATE), 6)
    assert np.all(np.abs(data).max(axis=0) > 0.1)  # every channel carries its tone


def test_flac_stays_flac_with_the_same_subtype(capsys, tmp_path, model):
    source = write_wav(tmp_path / "voice.flac", format="FLAC", subtype="PCM_24")
    before = digests(tmp_path)
    code, _, err = denoise_cli(capsys, source, *model)
    assert code == 0, err
    info = sf.info(str(tmp_path / "voice_denoised.flac"))
    assert (info.format, info.subtype, info.samplerate, info.frames) == ("FLAC", "PCM_24", RATE, RATE // 2)
    assert digests(tmp_path)[source] == before[source]


# --- where outputs go and where they must not go -----------------------------------------------


@pytest.mark.parametrize("spelling", ["same", "dotted"])
def test_output_equal_to_input_is_refused(capsys, tmp_path, model, spelling):
    source = write_wav(tmp_path / "keep.wav", subtype="PCM_16")
    target = source if spelling == "same" else tmp_path / "." / "sub" / ".." / "keep.wav"
    (tmp_path / "sub").mkdir()
    before = digests(tmp_path)
    code, out, err = denoise_cli(capsys, source, "-o", target, *model)
    assert code == 1
    assert_clean_error(err, str(source))
    assert "refusing to overwrite" in err
    assert "0 of 1 inputs denoised, 1 failed" in out
    assert digests(tmp_path) == before
    assert part_files(tmp_path) == []


@pytest.mark.parametrize("layout", ["file-output", "folder-output"])
def test_unwritable_output_location(capsys, tmp_path, model, layout):
    # Tests run as root, so permissions do not block writes: put the output under a regular file.
    blocker = tmp_path / "blocker"
    blocker.write_text("I am a file, not a folder")
    if layout == "file-output":
        inputs, output = [write_wav(tmp_path / "in" / "a.wav")], blocker / "a_out.wav"
    else:
        write_wav(tmp_path / "in" / "a.wav")
        inputs, output = [tmp_path / "in"], blocker / "sub"
    before = digests(tmp_path)
    code, out, err = denoise_cli(capsys, *inputs, "-o", output, *model)
    assert code == 1
    assert_clean_error(err, str(blocker))
    assert "cannot create output folder" in err
    assert "0 of 1 inputs denoised, 1 failed" in out
    assert digests(tmp_path) == before
    assert part_files(tmp_path) == []


def test_batch_with_one_bad_file(capsys, tmp_path, model):
    first = write_wav(tmp_path / "first.wav", subtype="PCM_16")
    bad = tmp_path / "bad.wav"
    _text_as_wav(bad)
    last = write_wav(tmp_path / "last.wav", subtype="PCM_16")
    before = digests(tmp_path)
    code, out, err = denoise_cli(capsys, first, bad, last, *model)
    assert code == 1
    assert_clean_error(err, str(bad))
    assert out.startswith("2 of 3 inputs denoised, 1 failed;")
    for good in (first, last):
        produced = good.with_name(f"{good.stem}_denoised.wav")
        assert sf.info(str(produced)).frames == sf.info(str(good)).frames
    assert not (tmp_path / "bad_denoised.wav").exists()
    after = digests(tmp_path)
    assert {p: after[p] for p in before} == before
    assert part_files(tmp_path) == []


def test_one_file_with_output_file(capsys, tmp_path, model):
    source = write_wav(tmp_path / "in" / "talk.wav", subtype="PCM_16")
    target = tmp_path / "new" / "folder" / "clean.wav"  # missing parents are created
    before = digests(tmp_path)
    code, out, err = denoise_cli(capsys, source, "-o", target, *model)
    assert code == 0, err
    assert "1 of 1 inputs denoised, 0 failed" in out
    assert files(tmp_path) == {"in/talk.wav", "new/folder/clean.wav"}
    assert sf.info(str(target)).frames == RATE // 2
    assert digests(tmp_path)[source] == before[source]


def test_folder_with_output_folder_keeps_relative_paths(capsys, tmp_path, model):
    source = tmp_path / "in"
    write_wav(source / "top.wav", subtype="PCM_16")
    write_wav(source / "sub" / "deeper" / "nested.flac", format="FLAC", subtype="PCM_16")
    (source / "sub" / "notes.txt").write_text("not audio")
    before = digests(tmp_path)
    code, out, err = denoise_cli(capsys, source, "-o", tmp_path / "out", *model)
    assert code == 0, err
    assert "2 of 2 inputs denoised, 0 failed" in out
    assert files(tmp_path / "out") == {"top.wav", "sub/deeper/nested.flac"}
    assert sf.info(str(tmp_path / "out" / "sub" / "deeper" / "nested.flac")).format == "FLAC"
    assert digests(tmp_path / "in") == before  # nothing added next to the inputs


def test_folder_without_output_and_rerun_skips_denoised_files(capsys, tmp_path, model):
    folder = tmp_path / "take"
    source = write_wav(folder / "speech.wav", subtype="PCM_16")
    original = digests(tmp_path)

    code, out, err = denoise_cli(capsys, folder, *model)
    assert code == 0, err
    assert "1 of 1 inputs denoised, 0 failed" in out
    assert files(folder) == {"speech.wav", "speech_denoised.wav"}

    code, out, err = denoise_cli(capsys, folder, *model)
    assert code == 0, err
    assert "1 of 1 inputs denoised, 0 failed" in out  # speech_denoised.wav is not an input
    assert files(folder) == {"speech.wav", "speech_denoised.wav"}
    assert digests(tmp_path)[source] == original[source]


def test_glob_input(capsys, tmp_path, model):
    folder = tmp_path / "in"
    source = write_wav(folder / "a.wav", subtype="PCM_16")
    write_wav(folder / "b.flac", format="FLAC", subtype="PCM_16")
    before = digests(tmp_path)
    code, out, err = denoise_cli(capsys, str(folder / "*.wav"), *model)
    assert code == 0, err
    assert "1 of 1 inputs denoised, 0 failed" in out
    assert files(folder) == {"a.wav", "b.flac", "a_denoised.wav"}
    assert digests(tmp_path)[source] == before[source]


def test_glob_matching_nothing(capsys, tmp_path, model):
    code, out, err = denoise_cli(capsys, str(tmp_path / "*.wav"), *model)
    assert code == 1
    assert_clean_error(err, "*.wav")
    assert "pattern matches no files" in err


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param("a*.wav", id="prefixed"),
        pytest.param("*.wav", id="bare-star"),
    ],
)
def test_glob_with_output_folder_keeps_names_relative_to_the_glob_folder(capsys, tmp_path, model, pattern):
    write_wav(tmp_path / "in" / "a.wav", subtype="PCM_16")
    (tmp_path / "out").mkdir()  # an existing folder, so the one match is not taken for an output file name
    code, _, err = denoise_cli(capsys, str(tmp_path / "in" / pattern), "-o", tmp_path / "out", *model)
    assert code == 0, err
    assert files(tmp_path / "out") == {"a.wav"}


def test_output_path_that_is_a_folder_fails_only_that_file(capsys, tmp_path, model):
    blocked = write_wav(tmp_path / "a.wav", subtype="PCM_16")
    (tmp_path / "a_denoised.wav").mkdir()  # the default output name is taken by a folder
    fine = write_wav(tmp_path / "b.wav", subtype="PCM_16")
    before = digests(tmp_path)
    code, out, err = denoise_cli(capsys, blocked, fine, *model)
    assert part_files(tmp_path) == []
    assert code == 1
    assert_clean_error(err, "a_denoised.wav")
    assert "1 of 2 inputs denoised, 1 failed" in out
    assert (tmp_path / "b_denoised.wav").is_file()
    after = digests(tmp_path)
    assert {p: after[p] for p in before} == before


# --- usage errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "mentions"),
    [(["--bogus"], "--bogus"), (["--strength", "1.5"], "--strength"), (["--threads", "0"], "--threads")],
    ids=["unknown-option", "strength-1.5", "threads-0"],
)
def test_usage_errors_exit_2(capsys, tmp_path, model, option, mentions):
    source = write_wav(tmp_path / "a.wav", subtype="PCM_16")
    with pytest.raises(SystemExit) as caught:
        main(["denoise", str(source), *model, *option])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert mentions in err.strip().splitlines()[-1]
    assert files(tmp_path) == {"a.wav"}


def test_unknown_model_exits_2(capsys, tmp_path):
    source = write_wav(tmp_path / "a.wav", subtype="PCM_16")
    code, _, err = denoise_cli(capsys, source, "--model", "nonexistent-model-name")
    assert code == 2
    assert_clean_error(err, "nonexistent-model-name")
    assert files(tmp_path) == {"a.wav"}


def test_module_entry_point_reports_errors_without_traceback(tmp_path, identity_checkpoint):
    missing = tmp_path / "absent.wav"
    completed = subprocess.run(
        [sys.executable, "-m", "audiodenoise", "denoise", str(missing), "--model", str(identity_checkpoint)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr + completed.stdout
    assert_clean_error(completed.stderr, "absent.wav")
    assert "0 of 1 inputs denoised, 1 failed" in completed.stdout


@pytest.mark.parametrize("option", [["--low-latency"], ["--engine", "torch"], ["--atten-lim-db", "12"]])
def test_local_only_options_with_server_are_refused(capsys, tmp_path, option):
    source = write_wav(tmp_path / "a.wav", subtype="PCM_16")
    code, _, err = denoise_cli(capsys, source, "--server", "http://127.0.0.1:9", *option)
    assert code == 2
    assert_clean_error(err, option[0])
    assert files(tmp_path) == {"a.wav"}
