"""``fomm-lab lab``: a real JupyterLab on 127.0.0.1 with a random token, stopped like ``docker stop``."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_cli import assert_one_line_error

from fomm_lab.cli import main

URL = re.compile(r"http://127\.0\.0\.1:(\d+)/lab/tree/notebooks/demo\.ipynb\?token=([0-9a-f]+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def lab_root(tmp_path) -> Path:
    import nbformat

    (tmp_path / "notebooks").mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]),
                   tmp_path / "notebooks" / "demo.ipynb")
    return tmp_path


def lab_env(tmp_path: Path) -> dict[str, str]:
    """No inherited token; Jupyter's config, data and runtime folders in tmp_path."""
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_TOKEN"}
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        env[name] = str(tmp_path / "jupyter" / name.lower())
    return env


def start_lab(root: Path, port: int, tmp_path: Path) -> subprocess.Popen:
    """``python -m fomm_lab lab`` in the background; its stderr (Jupyter's log) goes to tmp_path/lab.log."""
    root_flag = ["--allow-root"] if os.geteuid() == 0 else []  # Jupyter refuses root without it
    with open(tmp_path / "lab.log", "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "fomm_lab", "lab", "--port", str(port), "--no-browser",
             "--notebook", str(root / "notebooks" / "demo.ipynb"), *root_flag],
            stdout=subprocess.PIPE, stderr=log, text=True, env=lab_env(tmp_path))


def wait_for_url(proc: subprocess.Popen, timeout: float = 180) -> re.Match:
    """The URL line the command prints once JupyterLab answers."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if proc.poll() is not None and lines.empty():
                break
            continue
        seen.append(line)
        if match := URL.search(line):
            return match
    raise AssertionError(f"no lab URL printed; stdout: {''.join(seen)!r}; exit code {proc.poll()}")


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _connections(process) -> list:
    """A process's internet sockets; none once it has ended (the lab starts short-lived helpers)."""
    import psutil

    try:
        return process.net_connections("inet")
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow
def test_lab_serves_the_notebook_on_localhost_with_a_token(lab_root, tmp_path):
    import psutil

    port = free_port()
    proc = start_lab(lab_root, port, tmp_path)
    try:
        match = wait_for_url(proc)
        assert int(match.group(1)) == port
        token = match.group(2)
        assert len(token) == 48
        base = f"http://127.0.0.1:{port}"
        status, body = get(f"{base}/api/contents/notebooks/demo.ipynb?token={token}")
        assert status == 200 and json.loads(body)["name"] == "demo.ipynb"
        assert get(f"{base}/api/contents/notebooks/demo.ipynb")[0] == 403  # no token
        assert get(f"{base}/api/contents/notebooks/demo.ipynb?token={'0' * 48}")[0] == 403
        assert get(f"{base}/lab/tree/notebooks/demo.ipynb?token={token}")[0] == 200
        listening = {c.laddr.ip for child in psutil.Process(proc.pid).children(recursive=True)
                     for c in _connections(child) if c.status == psutil.CONN_LISTEN}
        assert listening == {"127.0.0.1"}
        jupyter = psutil.Process(proc.pid).children(recursive=True)

        proc.send_signal(signal.SIGTERM)  # what `docker stop` sends
        assert proc.wait(timeout=60) == 130
        gone, alive = psutil.wait_procs(jupyter, timeout=30)
        assert alive == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with socket.socket() as s:  # nothing listens on the port any more (TIME_WAIT sockets aside)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


@pytest.mark.slow
def test_lab_on_a_taken_port(lab_root, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = start_lab(lab_root, port, tmp_path)
        try:
            out, _ = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1
    assert "token=" not in out
    err = (tmp_path / "lab.log").read_text()
    error = [line for line in err.splitlines() if line.startswith("fomm-lab: error:")]
    assert len(error) == 1 and "--port" in error[0] and "Traceback" not in err


def test_lab_with_a_missing_notebook(tmp_path, capsys):
    assert main(["lab", "--notebook", str(tmp_path / "nope.ipynb"), "--no-browser"]) == 1
    assert_one_line_error(capsys.readouterr().err, "nope.ipynb")


def test_lab_port_from_the_environment(monkeypatch):
    from fomm_lab import FommLabError
    from fomm_lab.cli.lab import default_port

    monkeypatch.delenv("FOMM_LAB_PORT", raising=False)
    assert default_port() == 8888
    monkeypatch.setenv("FOMM_LAB_PORT", "9999")
    assert default_port() == 9999
    monkeypatch.setenv("FOMM_LAB_PORT", "eighty")
    with pytest.raises(FommLabError, match="FOMM_LAB_PORT='eighty'"):
        default_port()
