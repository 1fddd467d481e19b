"""Batches over workers (``denoise --jobs``, ``evaluate --jobs``) and Ray (``denoise --ray``, ``RayDenoiser``).

Outputs must be the bytes that one process writes; failures, refusals and the summary as in one process; a worker
killed mid-file fails that file alone; Ctrl-C leaves no partial file. The Ray tests start a local instance of 2
CPUs in this process and stop it; they are skipped where Ray is not installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import soundfile as sf
from conftest import denoise_cli, speech_like
from test_cli import assert_clean_error, digests, part_files
from test_evaluate import write_pair

from audiodenoise import batch, evaluate
from audiodenoise.cli import main
from audiodenoise.report import format_report, report_json

RATE = 16000
# Not pytest.importorskip: importing Ray here would come before the environment that keeps its local
# instance on loopback (batch.ray_session), which Ray reads when it is first imported.
needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason=f"Ray is not installed: {batch.INSTALL_RAY}"
)


def write_inputs(folder: Path, seconds=(0.5, 0.75, 1.0), broken: bool = True) -> Path:
    """Speech-like files of several lengths (one stereo FLAC) and one that is not audio."""
    folder.mkdir(parents=True)
    for index, length in enumerate(seconds):
        signal = speech_like(length, RATE, seed=index)
        if index == 1:
            sf.write(folder / f"take{index}.flac", np.stack([signal, 0.5 * signal], axis=1), RATE, subtype="PCM_24")
        else:
            sf.write(folder / f"take{index}.wav", signal, RATE, subtype="PCM_16")
    if broken:
        (folder / "broken.wav").write_bytes(b"not audio at all")
    return folder


def outputs(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): digest for p, digest in digests(root).items()}


@pytest.fixture
def model(halving_checkpoint) -> list[str]:
    return ["--model", str(halving_checkpoint), "--engine", "torch"]


def reference(capsys, inputs: Path | list[Path], out: Path, model: list[str]) -> tuple[int, str, str]:
    """What one process writes and says: ``--jobs 1 --threads 1``."""
    return denoise_cli(
        capsys, *(inputs if isinstance(inputs, list) else [inputs]), "-o", out, *model, "--jobs", "1", "--threads", "1"
    )


def test_jobs_write_the_bytes_of_one_process(capsys, tmp_path, model):
    inputs = write_inputs(tmp_path / "in")
    code_one, out_one, err_one = reference(capsys, inputs, tmp_path / "one", model)
    code, out, err = denoise_cli(capsys, inputs, "-o", tmp_path / "two", *model, "--jobs", "2", "--threads", "1")
    assert code == code_one == 1
    assert_clean_error(err, "broken.wav")
    assert err == err_one
    assert out.split(";")[0] == out_one.split(";")[0] == "3 of 4 inputs denoised, 1 failed"
    assert outputs(tmp_path / "two") == outputs(tmp_path / "one")
    assert sorted(outputs(tmp_path / "two")) == ["take0.wav", "take1.flac", "take2.wav"]
    assert part_files(tmp_path) == []


def descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError):
            return False
    return False


def holder(path: Path) -> int | None:
    """The process of ours that has ``path`` open."""
    target = str(path.resolve())
    for entry in Path("/proc").iterdir():
        try:
            opened = entry.name.isdigit() and any(os.readlink(fd) == target for fd in (entry / "fd").iterdir())
        except OSError:
            continue
        if opened and descends_from(int(entry.name), os.getpid()):
            return int(entry.name)
    return None


def kill_whoever_writes(folder: Path, name: str, stop: threading.Event, kills: list[int]) -> None:
    """As an out-of-memory killer that picks the worker of one file every time: SIGKILL whoever writes it."""
    while not stop.is_set():
        for part in folder.glob(f".{name}.*.part"):
            pid = holder(part)
            if pid is not None and pid not in kills:
                os.kill(pid, signal.SIGKILL)
                kills.append(pid)
        time.sleep(0.01)


def test_a_worker_that_dies_fails_its_file_and_the_batch_goes_on(capsys, tmp_path, model):
    inputs = write_inputs(tmp_path / "in", seconds=(0.5, 6.0, 0.75, 0.5), broken=False)  # take1: the victim
    others = [inputs / name for name in ("take0.wav", "take2.wav", "take3.wav")]
    reference(capsys, others, tmp_path / "one", model)
    stop, kills = threading.Event(), []
    killer = threading.Thread(target=kill_whoever_writes, args=(tmp_path / "two", "take1.flac", stop, kills))
    killer.start()
    try:
        code, out, err = denoise_cli(capsys, inputs, "-o", tmp_path / "two", *model, "--jobs", "2", "--threads", "1")
    finally:
        stop.set()
        killer.join()
    assert len(kills) == 2  # in the pool, then alone in a fresh worker: then it is the file's failure
    assert code == 1
    assert_clean_error(err, "take1.flac: its worker died (killed, or out of memory)")
    assert out.startswith("3 of 4 inputs denoised, 1 failed;")
    assert outputs(tmp_path / "two") == outputs(tmp_path / "one")
    assert part_files(tmp_path) == []


def test_ctrl_c_stops_the_workers_and_leaves_no_partial_file(tmp_path, halving_checkpoint):
    inputs = write_inputs(tmp_path / "in", seconds=(6.0, 6.0, 6.0), broken=False)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "audiodenoise", "denoise", str(inputs), "-o", str(out), "--jobs", "2"]
    command += ["--threads", "1", "--model", str(halving_checkpoint), "--engine", "torch"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while not part_files(tmp_path) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to the whole process group
    writing = {part.name[1:].rsplit(".", 2)[0] for part in part_files(tmp_path)}  # .take0.wav.<tag>.part
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stdout + stderr
    assert stderr == "audiodenoise: interrupted\n"
    assert part_files(tmp_path) == []
    assert writing and not any((out / name).exists() for name in writing)  # stopped, not left to finish
    for path in out.rglob("*"):  # whatever was written is whole
        assert sf.info(path).frames == sf.info(inputs / path.name).frames
    assert alive_in_session(process.pid, within=5) == [], "the workers outlived the command"


def alive_in_session(session: int, within: float) -> list[str]:
    """The processes of ``session`` still alive after up to ``within`` seconds (the fork server and Python's
    resource tracker end on their own once the command has; zombies have ended)."""
    deadline = time.monotonic() + within
    while True:
        listing = subprocess.run(["ps", "-s", str(session), "-o", "stat=,args="], capture_output=True, text=True)
        alive = [line for line in listing.stdout.splitlines() if not line.startswith("Z")]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


@pytest.mark.parametrize("value", ["0", "-2"])
def test_jobs_below_one_are_usage_errors(capsys, tmp_path, model, value):
    inputs = write_inputs(tmp_path / "in")
    with pytest.raises(SystemExit) as caught:
        main(["denoise", str(inputs), "--jobs", value, *model])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "--jobs" in err.strip().splitlines()[-1]


def test_ray_without_the_extra_says_how_to_install_it(capsys, tmp_path, model, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    code, _, err = denoise_cli(capsys, write_inputs(tmp_path / "in"), "--ray", "local", *model)
    assert code == 2
    assert_clean_error(err, "pip install 'audiodenoise[ray]'")
    assert part_files(tmp_path) == [] and not list((tmp_path / "in").glob("*_denoised*"))


def test_an_unreachable_ray_address_fails_at_once(capsys, tmp_path, model):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound but not listening: nothing answers there
        address = f"127.0.0.1:{closed.getsockname()[1]}"
        started = time.monotonic()
        code, _, err = denoise_cli(capsys, write_inputs(tmp_path / "in"), "--ray", address, *model)
    assert code == 2
    assert time.monotonic() - started < batch.CONNECT_SECONDS + 1
    assert_clean_error(err, f"--ray {address}: nothing answers")


def test_parallel_options_with_server_or_stream_are_refused(capsys, tmp_path):
    inputs = write_inputs(tmp_path / "in")
    code, _, err = denoise_cli(capsys, inputs, "--server", "http://127.0.0.1:9", "--jobs", "2")
    assert code == 2
    assert_clean_error(err, "--jobs")
    code, _, err = denoise_cli(capsys, "-", "--stream", "--ray", "local")
    assert code == 2
    assert_clean_error(err, "--stream")


def test_evaluate_jobs_scores_the_same_and_says_how_many_workers(tmp_path, halving_checkpoint):
    for index, snr_db in enumerate((0.0, 10.0)):
        write_pair(tmp_path, f"p{index}", snr_db, seconds=1.0 + 0.25 * index, seed=index)
    pairs = evaluate.find_pairs(str(tmp_path / "noisy"), str(tmp_path / "clean"))
    options = {"threads": 1, "engine": "torch", "examples": 1}
    one = evaluate.run(pairs, [str(halving_checkpoint)], jobs=1, **options)
    two = evaluate.run(pairs, [str(halving_checkpoint)], jobs=2, **options)
    assert [(s.pair, s.system) for s in two.scores] == [(s.pair, s.system) for s in one.scores]
    for score, alone in zip(two.scores, one.scores):  # the same outputs; metrics to float64 rounding (BLAS)
        assert score.values == pytest.approx(alone.values, rel=1e-12, abs=1e-12, nan_ok=True)
    assert [r.name for r in two.systems] == [r.name for r in one.systems]
    assert all(r.audio_seconds == o.audio_seconds > 0 for r, o in zip(two.systems, one.systems))
    assert [e.pair for e in two.examples] == [e.pair for e in one.examples]
    assert (one.workers, two.workers) == (1, 2)
    assert report_json(two)["workers"] == 2
    assert format_report(two).startswith("2 pairs, 2 systems, 2 workers at 1 thread each;")


# --- Ray ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    with batch.ray_session("local", 2) as ray:
        yield ray


def ours() -> list[int]:
    """The processes under this one (Ray's: GCS, raylet, agents, workers)."""
    return [
        int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and descends_from(int(e.name), os.getpid())
    ]


def listening_addresses(pids: list[int]) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses that ``pids`` accept TCP connections on (/proc/net/tcp and tcp6)."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            inodes |= {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and f"socket:[{fields[9]}]" in inodes:  # LISTEN
                raw = bytes.fromhex(fields[1].split(":")[0])  # 32-bit words, each little-endian
                found.add(ipaddress.ip_address(b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))))
    return found


@needs_ray
def test_a_local_ray_instance_stays_on_loopback_and_its_probes_go_nowhere(local_ray):
    assert local_ray.cluster_resources()["CPU"] == 2
    assert {node["NodeManagerAddress"] for node in local_ray.nodes()} == {"127.0.0.1"}
    pids = ours()
    addresses = listening_addresses(pids)
    assert addresses  # the GCS, the raylet, the workers
    assert all((getattr(a, "ipv4_mapped", None) or a).is_loopback for a in addresses), addresses
    # The head's cloud-metadata probe (ray 2.60 makes it with usage stats off) goes to a closed loopback port.
    head = next(pid for pid in pids if "dashboard.py" in Path(f"/proc/{pid}/cmdline").read_text())
    environment = dict(
        item.split("=", 1) for item in Path(f"/proc/{head}/environ").read_text().split("\0") if "=" in item
    )
    proxy = urlsplit(environment["http_proxy"])
    assert proxy.hostname == "127.0.0.1" and environment["no_proxy"] == ""
    with pytest.raises(ConnectionRefusedError), socket.create_connection((proxy.hostname, proxy.port), timeout=5):
        pass


@needs_ray
def test_ray_writes_the_bytes_of_one_process(capsys, tmp_path, model, local_ray):
    inputs = write_inputs(tmp_path / "in")
    code_one, _, err_one = reference(capsys, inputs, tmp_path / "one", model)
    code, out, err = denoise_cli(capsys, inputs, "-o", tmp_path / "ray", *model, "--ray", "local")
    assert code == code_one == 1
    assert err == err_one
    assert out.startswith("3 of 4 inputs denoised, 1 failed;")
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "one")
    assert part_files(tmp_path) == []


@needs_ray
def test_ray_data_map_batches_gives_what_the_denoiser_gives(tmp_path, halving_checkpoint, local_ray):
    from audiodenoise.denoiser import Denoiser

    inputs = write_inputs(tmp_path / "in", seconds=(0.5, 0.75), broken=False)
    options = {"model": str(halving_checkpoint), "engine": "torch", "threads": 1}
    noisy = local_ray.data.read_audio(str(inputs), include_paths=True)
    denoised = noisy.map_batches(
        batch.RayDenoiser, fn_constructor_kwargs=options, concurrency=1, batch_size=2, batch_format="numpy"
    )
    rows = {Path(row["path"]).name: row for row in denoised.take_all()}
    assert sorted(rows) == ["take0.wav", "take1.flac"]
    local = Denoiser.from_pretrained(options.pop("model"), **options)
    for name, row in rows.items():
        audio, rate = sf.read(inputs / name, dtype="float32", always_2d=True)
        assert row["sample_rate"] == rate
        assert np.array_equal(row["amplitude"], local(audio.T, rate))  # read_audio's (channels, samples) layout
