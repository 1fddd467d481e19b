"""Nothing phones home: denoise, export and serve, in a network namespace with only loopback, under strace.

They must connect() to no address outside loopback (and to no DNS resolver at all), and write nothing under
a fresh HOME and TMPDIR.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audiodenoise.pretrained import DEFAULT_MODEL

# Runs in the namespace: argv is the output folder and the default model's name. The server lives 11 s past
# its requests (ONNX Runtime's telemetry looks its host up 9 s after import), denoise and export run meanwhile.
DRIVER = r"""
import http.client, re, subprocess, sys, time
out, model = sys.argv[1:]
cli = [sys.executable, "-m", "audiodenoise"]
server = subprocess.Popen([*cli, "serve", "--port", "0", "--engine", "onnxruntime"], stdout=subprocess.PIPE, text=True)
try:
    port = next(int(m[1]) for line in server.stdout if (m := re.search(r"serving on http://[^ ]*:(\d+)/", line)))
    for method, path, body in [("POST", "/v1/denoise", open(f"{out}/in.wav", "rb").read()),
                               ("GET", f"/v1/models/{model}/onnx", None)]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request(method, path, body, {"Content-Type": "audio/wav"} if body else {})
        response = conn.getresponse()
        assert response.status == 200, (method, path, response.status, response.read()[:500])
        response.read()
    deadline = time.monotonic() + 11
    subprocess.run([*cli, "denoise", "-q", "--engine", "onnxruntime", f"{out}/in.wav", "-o", f"{out}/den.wav"],
                   check=True)
    subprocess.run([*cli, "export", "-o", f"{out}/model.onnx"], check=True)
    time.sleep(max(0.0, deadline - time.monotonic()))
finally:
    server.terminate()
    server.wait(30)
"""
ADDRESS = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')
SANDBOX = ["sh", "-c", 'ip link set lo up && exec strace -f -qq -e trace=connect -o "$0" "$@"']


def works(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    except OSError:
        return False


def outside(line: str) -> bool:
    """A connect() to an internet address that is not loopback, or to any DNS port."""
    if "AF_INET" not in line:
        return False
    found = ADDRESS.search(line)
    return not found or not ipaddress.ip_address(found[1] or found[2]).is_loopback or "htons(53)" in line


def test_denoise_export_and_serve_make_no_connections_and_write_no_files(tmp_path):
    unshare = next((u for u in (["unshare", "-n"], ["unshare", "-rn"]) if works([*u, "true"])), None)
    if unshare is None or not works([*unshare, *SANDBOX, os.devnull, "true"]):
        pytest.skip("needs `unshare -n` (or -rn), `ip` and a working strace (ptrace allowed)")
    home, tmp, out = (tmp_path / name for name in ("home", "tmp", "out"))
    for folder in (home, tmp, out):
        folder.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    sf.write(out / "in.wav", 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size), 16000)
    # The defaults under HOME are checked: no XDG folders elsewhere; and no telemetry switch from outside (importing
    # audiodenoise, as conftest does, sets one in this process).
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_") and k != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(home), TMPDIR=str(tmp))
    trace = tmp_path / "connect.trace"
    run = subprocess.run(
        [*unshare, *SANDBOX, trace, sys.executable, "-c", DRIVER, out, DEFAULT_MODEL],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    connects = [line for line in trace.read_text().splitlines() if outside(line)]
    written = sorted(str(p.relative_to(tmp_path)) for folder in (home, tmp) for p in folder.rglob("*"))
    lines = [
        f"{len(connects)} connect() outside loopback, {len(written)} paths under HOME/TMPDIR:",
        *connects,
        *written,
    ]
    assert not connects and not written, "\n".join(lines)
