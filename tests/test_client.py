"""``audiodenoise denoise --server``: waiting on a busy server and the server's channel limits, against a stub.

The stub is a plain ``http.server`` in a thread that answers ``/healthz`` and ``/v1/models`` with the real
server's JSON shape and ``POST /v1/denoise`` with 503 + Retry-After while it is told to be busy, then 200; no
model is loaded, so each test takes about as long as the waits it asks for.
"""

from __future__ import annotations

import json
import threading
import time
from email.message import Message
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.error import HTTPError

import numpy as np
import pytest
import soundfile as sf
from conftest import denoise_cli

from audiodenoise.client import MAX_BUSY_WAIT_SECONDS, _retry_after

RATE = 16000
DENOISED = b"denoised bytes"


class Stub:
    """What the stub server says and what it was sent."""

    def __init__(self, busy=0, retry_after="1", delay=0.0, **limits):
        self.busy = busy  # 503s still to give, or a function of the body: True for a 503
        self.retry_after = retry_after
        self.delay = delay  # seconds before a 200
        self.health = {"status": "ok", "busy": 0, "capacity": 18, "max_upload_mb": 50.0, "max_seconds": 600.0}
        self.health.update(limits)  # max_channels and max_channel_seconds, when the test plays a newer server
        self.posts: list[bytes] = []
        self.busy_answers = 0

    def is_busy(self, body: bytes) -> bool:
        if callable(self.busy):
            return self.busy(body)
        if self.busy:
            self.busy -= 1
            return True
        return False


def handler(stub: Stub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest's output clean
            pass

        def answer(self, status: int, body: bytes, content_type: str, **headers) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(body)

        def json(self, status: int, payload: dict, **headers) -> None:
            self.answer(status, json.dumps(payload).encode(), "application/json", **headers)

        def do_GET(self):
            if self.path == "/healthz":
                self.json(200, stub.health)
            elif self.path == "/v1/models":
                model = {"name": "tiny", "sample_rate": RATE, "strength": 1.0, "gain_floor": 0.0, "spectral": {}}
                self.json(200, {"default": "tiny", "models": [model]})
            else:
                self.json(404, {"error": "Not Found"})

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            stub.posts.append(body)
            if stub.is_busy(body):
                stub.busy_answers += 1
                self.json(503, {"error": "the server is busy; retry later"}, Retry_After=stub.retry_after)
            else:
                time.sleep(stub.delay)
                self.answer(200, DENOISED, "audio/wav")

    return Handler


@pytest.fixture
def serve():
    """``serve(stub)`` -> the URL of a stub server on 127.0.0.1, shut down after the test."""
    servers = []

    def start(stub: Stub) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler(stub))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def write_wav(path, seconds: float = 0.25, channels: int = 1):
    t = np.arange(int(seconds * RATE)) / RATE
    signal = np.stack([0.3 * np.sin(2 * np.pi * (300 + 100 * c) * t) for c in range(channels)], axis=1)
    sf.write(path, signal.astype(np.float32), RATE, subtype="PCM_16")
    return path


def error_lines(err: str) -> list[str]:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert all(line.startswith("audiodenoise: error: ") for line in lines), lines
    return lines


def test_busy_server_is_waited_on_past_the_old_five_retries(capsys, tmp_path, serve):
    stub = Stub(busy=7, retry_after="0")  # an older server: no channel limits in /healthz
    source = write_wav(tmp_path / "a.wav")
    url = serve(stub)
    code, out, err = denoise_cli(capsys, source, "-o", tmp_path / "out.wav", "--server", url, "--server-deadline", "30")
    assert (code, err) == (0, "")
    assert (tmp_path / "out.wav").read_bytes() == DENOISED
    assert stub.busy_answers == 7 and len(stub.posts) == 8
    assert "1 of 1 inputs denoised, 0 failed" in out


def test_a_file_fails_at_the_deadline_and_the_batch_goes_on(capsys, tmp_path, serve):
    stuck, fine = write_wav(tmp_path / "stuck.wav", 0.25), write_wav(tmp_path / "fine.wav", 0.5)
    stuck_bytes = stuck.read_bytes()
    stub = Stub(busy=lambda body: stuck_bytes in body, retry_after="1")  # busy for stuck.wav only, always
    url = serve(stub)
    started = time.monotonic()
    code, out, err = denoise_cli(capsys, stuck, fine, "-o", tmp_path / "out", "--server", url, "--server-deadline", "2")
    elapsed = time.monotonic() - started
    assert code == 1
    assert error_lines(err) == [f"audiodenoise: error: {stuck}: the server stayed busy for 2 s (HTTP 503)"]
    assert 1.9 <= elapsed < 3.5, elapsed  # the sleeps stop at the deadline, not past it
    assert stub.busy_answers == 2  # at 0 s and 1 s; a Retry-After of 1 s at 1.x s would end past 2 s
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fine.wav"]
    assert "1 of 2 inputs denoised, 1 failed" in out


def test_a_server_slower_than_the_deadline_fails_the_file_at_the_deadline(capsys, tmp_path, serve):
    source = write_wav(tmp_path / "a.wav")
    url = serve(Stub(delay=3.0))
    started = time.monotonic()
    code, _, err = denoise_cli(capsys, source, "-o", tmp_path / "out.wav", "--server", url, "--server-deadline", "1")
    assert code == 1 and time.monotonic() - started < 2.5
    assert error_lines(err) == [f"audiodenoise: error: {source}: no answer from {url} within 1 s"]
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize(
    "limits, words",
    [
        ({"max_channels": 1, "max_channel_seconds": 1000.0}, "2 channels is over the server's limit of 1 channels"),
        (
            {"max_channels": 2, "max_channel_seconds": 1.0},
            "2 channels x 0.8 s is over the server's limit of 1 channel-seconds",
        ),
    ],
)
def test_files_over_the_servers_channel_limits_fail_alone_before_upload(capsys, tmp_path, serve, limits, words):
    stereo = write_wav(tmp_path / "stereo.wav", 0.75, channels=2)  # 1.5 channel-seconds
    mono = write_wav(tmp_path / "mono.wav", 0.75)  # 0.75 channel-seconds
    stub = Stub(**limits)
    url = serve(stub)
    code, out, err = denoise_cli(capsys, stereo, mono, "-o", tmp_path / "out", "--server", url)
    assert code == 1
    assert error_lines(err) == [f"audiodenoise: error: {stereo}: {words}"]
    assert len(stub.posts) == 1 and mono.read_bytes() in stub.posts[0]  # the stereo file was never sent
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mono.wav"]
    assert "1 of 2 inputs denoised, 1 failed" in out


def busy(retry_after: str | None) -> HTTPError:
    headers = Message()
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return HTTPError("http://x/v1/denoise", 503, "Service Unavailable", headers, None)


def test_retry_after_seconds_dates_and_nonsense():
    assert _retry_after(busy("3")) == 3.0
    assert _retry_after(busy("0.5")) == 0.5
    assert _retry_after(busy("-4")) == 0.0
    assert _retry_after(busy("86400")) == MAX_BUSY_WAIT_SECONDS
    assert 5 <= _retry_after(busy(formatdate(time.time() + 10, usegmt=True))) <= 10
    assert _retry_after(busy(formatdate(time.time() - 100, usegmt=True))) == 0.0  # a date already past
    for nonsense in (None, "", "soon", "nan"):
        assert _retry_after(busy(nonsense)) == 1.0
