"""``fomm-lab lab``: JupyterLab on the demo notebook, on 127.0.0.1 with a token.

The port is checked before anything starts, and the URL is printed only once the server this
command started answers with its token, so it never points at somebody else's server. JupyterLab's
"official Jupyter news" question is answered (no) in the settings the lab starts with.
"""

from __future__ import annotations

import argparse
import errno
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

from ..allocator import child_environment
from ..errors import LabError, Remedy
from .parser import port as parse_port


def default_port() -> int:
    """``$FOMM_LAB_PORT`` when set (the Docker image's port), else 8888."""
    text = os.environ.get("FOMM_LAB_PORT", "")
    try:
        return parse_port(text) if text else 8888
    except argparse.ArgumentTypeError as exc:
        raise LabError(f"FOMM_LAB_PORT={text!r} is not usable ({exc}); unset it or give --port") from None


def find_notebook(given: Path | None) -> Path:
    """The notebook to open: ``given``, else notebooks/demo.ipynb in the current folder or in the
    checkout this package runs from."""
    if given is not None:
        if not given.is_file():
            raise LabError(f"notebook {given} does not exist; give the path of an .ipynb file")
        return given.resolve()
    checkout = Path(__file__).resolve().parents[2]
    candidates = [Path.cwd() / "notebooks" / "demo.ipynb", checkout / "notebooks" / "demo.ipynb"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise LabError(f"notebooks/demo.ipynb not found (looked in {' and '.join(str(c.parent) for c in candidates)}); "
                   "run `fomm-lab lab` in the fomm-lab checkout or pass --notebook PATH")


def check_port_free(ip: str, port: int) -> None:
    """LabError now when ``ip:port`` cannot be listened on (taken by another program, or not allowed)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((ip, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise LabError(f"port {port} on {ip} is already taken by another program",
                               remedies=[Remedy("pick another one ({})", "lab.port", port + 1)]) from exc
            raise LabError(f"cannot listen on {ip}:{port} ({exc.strerror})",
                           remedies=[Remedy("pick another port ({})", "lab.port", port + 1)]) from exc


def _answers(port: int, token: str) -> bool:
    """True when a Jupyter server on ``port`` accepts ``token`` (i.e. it is the one started here)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/status", headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_for_server(proc: subprocess.Popen, port: int, token: str, root: bool, timeout_s: float = 120.0) -> None:
    """Return once the JupyterLab started here answers; LabError if it exits or never answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if root:
                raise LabError("JupyterLab refuses to run as root",
                               remedies=[Remedy("add {} (or run as a normal user)", "lab.allow_root", True)])
            raise LabError(f"JupyterLab stopped (exit code {proc.returncode}) before it was ready; its messages are "
                           "above")
        if _answers(port, token):
            return
        time.sleep(0.25)
    raise LabError(f"JupyterLab did not answer on port {port} within {timeout_s:.0f} s")


def lab_environment(token: str) -> dict[str, str]:
    """The server's environment: the token (not on the command line, where other users could read it),
    the lab's default settings (no news prompt) ahead of any the user has, and the allocator settings for its
    kernels (:func:`~fomm_lab.allocator.child_environment`)."""
    settings = str(resources.files("fomm_lab.lab") / "jupyter_config")
    extra = os.environ.get("JUPYTER_CONFIG_PATH", "")
    return {**os.environ, **child_environment(), "JUPYTER_TOKEN": token,
            "JUPYTER_CONFIG_PATH": os.pathsep.join(p for p in (extra, settings) if p)}


def run_lab(args: argparse.Namespace) -> int:
    import webbrowser

    notebook = find_notebook(args.notebook)
    root_dir = notebook.parent.parent if notebook.parent.name == "notebooks" else notebook.parent
    port = args.port or default_port()
    check_port_free(args.ip, port)
    token = os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(24)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.ip={args.ip}",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root_dir}"]
    if args.allow_root:
        command.append("--allow-root")
    proc = subprocess.Popen(command, env=lab_environment(token))
    try:
        wait_for_server(proc, port, token, root=os.geteuid() == 0 and not args.allow_root)
        url = f"http://127.0.0.1:{port}/lab/tree/{notebook.relative_to(root_dir).as_posix()}?token={token}"
        print(f"\nfomm-lab: JupyterLab is ready; open\n    {url}\n(Ctrl-C stops it)\n", flush=True)
        if not args.no_browser:
            webbrowser.open(url)
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
