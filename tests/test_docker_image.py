"""The real image, as a user gets it: built from the Dockerfile by build.sh and started by
run_no_cuda.sh, through the `docker` command the scripts call (here a thin shim that runs podman,
.ci/docker-shim/docker).

What differs from a user's GPU machine is only the base and torch: a Debian bookworm minbase made
with mmdebstrap (no registry is needed) and the CPU build of the torch release CI tests
(TORCH_INDEX=torch==2.13.0), instead of nvidia/cuda and the cu128 build. pip inside the build uses
this machine's pip configuration (index, find-links, CA bundle), mounted into the build and kept
out of the image. The base image and the build's layers (torch's above all) stay in a podman
storage of their own between runs (/var/lib/fomm-lab-ci for root), so a second run rebuilds only
what changed.

CI runs it as root: rootful podman, where the lab's files must still be root's. A normal user's run
takes rootless podman (run.sh's keep-id route), which CI does not try (its sandbox has neither
rootless overlay nor slirp4netns networking). Needs podman, runc and mmdebstrap (.ci/install.sh
installs them); a missing one fails the test. A quick local run can leave it out:
pytest -m "not docker".
"""

from __future__ import annotations

import ast
import configparser
import hashlib
import json
import os
import pwd
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIM = REPO / ".ci" / "docker-shim"
CONTAINERS_CONF = REPO / ".ci" / "podman" / "containers.conf"
BASE_IMAGE = "localhost/fomm-lab-ci-base:bookworm"
IMAGE = "fomm-lab"  # the scripts' default name: the check runs them as a user would
BASE_MAX_AGE_S = 7 * 24 * 3600  # a fresher Debian (security updates) once a week
DEBIAN_MIRROR = os.environ.get("FOMM_LAB_CI_DEBIAN_MIRROR", "http://deb.debian.org/debian")
STOCK_CERTS = "usr/share/ca-certificates/mozilla"  # Debian's and Ubuntu's ca-certificates
MOUNT = "/mnt"  # where the build sees the pip configuration: empty in every base, nothing left behind
URL = re.compile(r"http://127\.0\.0\.1:(\d+)/lab/tree/notebooks/demo\.ipynb\?token=([0-9a-f]{48})")

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(2700)]


def ci_torch() -> str:
    """The torch requirement CI installs (.ci/install.sh): the image's CPU route uses the same."""
    match = re.search(r"install-python-deps\.sh\s+(torch==[0-9.]+)\s", (REPO / ".ci" / "install.sh").read_text())
    assert match, ".ci/install.sh must install torch==X.Y.Z through install-python-deps.sh"
    return match.group(1)


# ------------------------------------------------------------------------------ podman setup


def state_dir() -> Path:
    """Where the check keeps its podman storage (base image, build cache) between runs."""
    if os.geteuid() == 0:
        return Path(os.environ.get("FOMM_LAB_CI_STATE", "/var/lib/fomm-lab-ci"))
    data = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return Path(os.environ.get("FOMM_LAB_CI_STATE", data / "fomm-lab-ci"))


def run_root() -> Path:
    if os.geteuid() == 0:
        return Path("/run/fomm-lab-ci")
    return Path(os.environ.get("XDG_RUNTIME_DIR", f"/tmp/fomm-lab-ci-run-{os.getuid()}")) / "fomm-lab-ci"


def require_tools() -> None:
    for name, why in [("podman", "builds and runs the image"), ("runc", "podman's runtime here"),
                      ("mmdebstrap", "makes the Debian base"), ("ffmpeg", "makes the test clip")]:
        if not shutil.which(name):
            pytest.fail(f"`{name}` is not installed ({why}): .ci/install.sh installs podman, runc, mmdebstrap "
                        "and ffmpeg from Debian; or leave the image check out with -m 'not docker'")
    if os.geteuid() != 0:
        user = pwd.getpwuid(os.getuid()).pw_name
        for ids in ("/etc/subuid", "/etc/subgid"):
            text = Path(ids).read_text() if Path(ids).exists() else ""
            if not re.search(rf"^({re.escape(user)}|{os.getuid()}):", text, re.M):
                pytest.fail(f"rootless podman needs subordinate ids for {user} in {ids}: "
                            f"sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}")
        for name in ("newuidmap", "slirp4netns"):
            if not shutil.which(name):
                pytest.fail(f"rootless podman needs `{name}` (apt-get install uidmap slirp4netns; .ci/install.sh does)")


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory) -> dict[str, str]:
    """Environment for podman and the scripts: the repository's containers.conf (runc, cgroupfs,
    fixed ulimits: what CI sandboxes need), a storage of its own, and the docker shim first on PATH."""
    require_tools()
    state, run = state_dir(), run_root()
    (state / "storage").mkdir(parents=True, exist_ok=True)
    (run / "storage").mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # Debian 12's podman 4.3 (containers/storage 1.43) fails on a kernel that can idmap overlay
        # layers when the uid map is not one block, as run.sh's for a root caller is: it makes a
        # chowned copy of the image for that map, then mounts that copy through idmapped layers as
        # well, and the mount fails ("mapped/0/l/diff1 ... permission denied"). The copy alone is
        # right: record for this storage that idmapped lower layers are not to be used (the cached
        # result of storage's own probe, kept in its run root).
        flags = run / "storage" / "overlay"
        flags.mkdir(exist_ok=True)
        (flags / "idmapped-lower-dir-true").unlink(missing_ok=True)
        (flags / "idmapped-lower-dir-false").write_text(
            "idmapped lower layers are turned off for the fomm-lab image check (containers/storage 1.43 bug)")
    storage_conf = state / "storage.conf"
    storage_conf.write_text('[storage]\ndriver = "overlay"\n'
                            f'graphroot = "{state / "storage"}"\nrunroot = "{run / "storage"}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FOMM_LAB_", "JUPYTER_", "TORCH_INDEX"))}
    env.update(CONTAINERS_CONF=str(CONTAINERS_CONF), CONTAINERS_STORAGE_CONF=str(storage_conf),
               PATH=f"{SHIM}{os.pathsep}{os.environ['PATH']}")
    return env


def podman(env: dict[str, str], *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"podman {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def timed(label: str, start: float) -> float:
    seconds = time.monotonic() - start
    print(f"[docker image check] {label}: {seconds:.0f} s", flush=True)
    return seconds


@pytest.fixture(scope="module")
def base_image(podman_env, tmp_path_factory) -> str:
    """A Debian bookworm minbase from mmdebstrap, imported as BASE_IMAGE; kept between runs for a week."""
    found = podman(podman_env, "image", "inspect", "--format", "{{.Created.Unix}}", BASE_IMAGE, check=False)
    if found.returncode == 0 and time.time() - int(found.stdout.strip()) < BASE_MAX_AGE_S:
        return BASE_IMAGE
    start = time.monotonic()
    tarball = tmp_path_factory.mktemp("base") / "bookworm.tar"
    sources = [f"deb {DEBIAN_MIRROR} bookworm main", f"deb {DEBIAN_MIRROR} bookworm-updates main",
               f"deb {DEBIAN_MIRROR.replace('/debian', '/debian-security')} bookworm-security main"]
    result = subprocess.run(["mmdebstrap", "--variant=minbase", "--quiet", "bookworm", str(tarball), *sources],
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"mmdebstrap failed:\n{result.stderr[-4000:]}"
    podman(podman_env, "import", "--quiet", str(tarball), BASE_IMAGE)
    tarball.unlink()
    timed("Debian base (mmdebstrap + import)", start)
    return BASE_IMAGE


# -------------------------------------------------------------- pip's configuration for the build


def host_pip_config() -> dict[str, dict[str, str]]:
    """pip's configuration on this machine by section, as `pip config list` merges files and
    PIP_* variables (these override [global])."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                         check=True).stdout
    files: dict[str, dict[str, str]] = {}
    env: dict[str, str] = {}
    for line in out.splitlines():
        name, sep, value = line.partition("=")
        if not sep or "." not in name:
            continue
        section, _, key = name.rpartition(".")
        key, value = key.replace("_", "-"), ast.literal_eval(value)
        if section == ":env:":
            env[key] = value
        else:
            files.setdefault(section, {})[key] = value
    files.setdefault("global", {}).update(env)
    return files


class BuildPipConfig:
    """The host's pip configuration rewritten for the build: a pip.conf in ``folder`` (mounted at
    /mnt), its CA bundle and constraint files copied beside it, and the local folders it names
    (find-links, file:// indexes) mounted below /mnt. Everything comes in as podman build --volume
    mounts, so nothing is copied into the image."""

    PATH_KEYS = {"cert", "client-cert", "constraint"}
    FOLDER_KEYS = {"find-links", "index-url", "extra-index-url"}

    def __init__(self, folder: Path):
        self.folder = folder
        self.volumes: list[tuple[Path, str]] = [(folder, MOUNT)]
        self.copied: list[Path] = []
        self.certs: list[Path] = []
        config = configparser.ConfigParser(interpolation=None)
        for section, values in host_pip_config().items():
            config[section] = {}
            for key, value in values.items():
                rewritten = self.rewrite(key, value)
                if rewritten is not None:
                    config[section][key] = rewritten
        with open(folder / "pip.conf", "w") as f:
            config.write(f)

    def _mount_folder(self, path: Path, kind: str) -> str:
        inside = f"{kind}-{len(self.volumes)}"
        (self.folder / inside).mkdir()  # the mount point, in the host folder: not in the image
        self.volumes.append((path, f"{MOUNT}/{inside}"))
        return f"{MOUNT}/{inside}"

    def _copy_file(self, path: Path, kind: str) -> str:
        inside = f"{kind}-{len(self.copied)}{path.suffix}"
        shutil.copyfile(path, self.folder / inside)
        self.copied.append(path)
        return f"{MOUNT}/{inside}"

    def rewrite(self, key: str, value: str) -> str | None:
        if key in self.PATH_KEYS:
            paths = [Path(item) for item in value.split()]
            if key == "cert":
                self.certs += [p for p in paths if p.is_file()]
            return " ".join(self._mount_folder(p, key) if p.is_dir() else self._copy_file(p, key) for p in paths)
        if key in self.FOLDER_KEYS:
            items = []
            for item in value.split():
                if re.match(r"https?://", item):
                    items.append(item)
                    continue
                path = Path(item.removeprefix("file://"))
                if key == "find-links":
                    items.append(self._mount_folder(path, "links") if path.is_dir() else self._copy_file(path, "links"))
                else:  # a PEP 503 folder (.../simple) whose pages link to files beside it (../../files/x.whl)
                    items.append(f"file://{self._mount_folder(path.parent, 'index')}/{path.name}")
            return " ".join(items)
        if value.startswith("/"):  # a host path (cache-dir, log, ...): meaningless in the build
            return None
        return value

    def build_args(self) -> list[str]:
        args = ["--build-arg", f"PIP_CONFIG_FILE={MOUNT}/pip.conf"]
        for source, target in self.volumes:
            args += ["--volume", f"{source}:{target}:ro"]
        return args


# ------------------------------------------------------------------------------------ the build


@pytest.fixture(scope="module")
def built_image(podman_env, base_image, tmp_path_factory) -> dict:
    """build.sh through the shim: the Dockerfile on the Debian base with CI's torch."""
    pip_config = BuildPipConfig(tmp_path_factory.mktemp("pip-for-build"))
    env = {**podman_env, "TORCH_INDEX": ci_torch()}
    log = tmp_path_factory.mktemp("build") / "build.log"
    start = time.monotonic()
    with open(log, "w") as out:
        result = subprocess.run(["bash", str(REPO / "build.sh"), "--build-arg", f"BASE_IMAGE={base_image}",
                                 *pip_config.build_args()], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                timeout=2400)
    seconds = timed("image build (build.sh)", start)
    text = log.read_text()
    assert result.returncode == 0, f"build.sh failed ({result.returncode}); end of its log:\n{text[-6000:]}"
    # Images the rebuild replaced (untagged, unused): removed, so the storage does not grow run by run.
    podman(podman_env, "image", "prune", "--force", check=False)
    return {"log": text, "seconds": seconds, "pip_config": pip_config}


IMAGE_SCAN = """
import hashlib, json, os, sys

size, found = int(sys.argv[1]), {"paths": [], "same_size": {}, "certificates": {}}
for folder, dirs, names in os.walk("/"):
    if folder == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    found["paths"] += [os.path.join(folder, name) for name in dirs + names]
    for name in names:
        path = os.path.join(folder, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        if os.path.getsize(path) == size:
            found["same_size"][path] = hashlib.sha256(open(path, "rb").read()).hexdigest()
        if name.endswith((".crt", ".pem")):
            found["certificates"][path] = open(path, "rb").read().decode("latin-1")
print(json.dumps(found))
"""


def scan_image(env: dict[str, str], size: int) -> tuple[list[str], dict[str, str], dict[str, bytes]]:
    """The image's files, listed by its own Python as root in a container without network or
    mounts (rootless too): every path, the SHA-256 of those of ``size`` bytes, the certificates."""
    found = json.loads(podman(env, "run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "python",
                              IMAGE, "-c", IMAGE_SCAN, str(size)).stdout)
    certificates = {path: text.encode("latin-1") for path, text in found["certificates"].items()}
    return found["paths"], found["same_size"], certificates


def pem_blocks(data: bytes) -> set[bytes]:
    return set(re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", data, re.S))


def test_the_build_uses_the_hosts_pip_config_and_keeps_it_out_of_the_image(podman_env, built_image):
    pip_config = built_image["pip_config"]
    torch = podman(podman_env, "run", "--rm", "--entrypoint", "python", IMAGE, "-c",
                   "from importlib.metadata import version; print(version('torch'))").stdout.strip()
    assert torch == ci_torch().partition("==")[2] + "+cpu", f"the image has torch {torch}, not CI's CPU build"
    inspect = json.loads(podman(podman_env, "image", "inspect", IMAGE).stdout)[0]
    config = inspect["Config"]
    assert config["User"] not in ("", "0", "root", "0:0")
    assert (inspect.get("Healthcheck") or {}).get("Test", [None])[0] == "CMD", "the HEALTHCHECK was dropped"
    assert [e for e in config["Env"] if e.startswith("PIP_")] == ["PIP_DISABLE_PIP_VERSION_CHECK=1"]
    history = podman(podman_env, "history", "--no-trunc", "--format", "{{.CreatedBy}}", IMAGE).stdout
    for source in [*(source for source, _ in pip_config.volumes), *pip_config.copied]:
        assert str(source) not in history

    # No pip configuration, no file of the build's mounts and no CA certificate of this machine's
    # own (one that is neither among Debian's stock certificates here nor the image's, e.g. a
    # TLS-intercepting proxy's) is in it.
    generated = (pip_config.folder / "pip.conf").read_bytes()
    host_certs = set().union(*(pem_blocks(Path(path).read_bytes()) for path in pip_config.certs))
    stock = set().union(*(pem_blocks(p.read_bytes()) for p in Path(f"/{STOCK_CERTS}").glob("*.crt")))
    listing, same_size, certificates = scan_image(podman_env, len(generated))
    assert [path for path in listing if path.startswith(f"{MOUNT}/")] == [], "the build's mounts left files behind"
    for leftover in ["/etc/pip.conf", "/etc/xdg/pip/pip.conf", "/root/.config/pip/pip.conf", "/root/.pip/pip.conf",
                     "/opt/venv/pip.conf"]:
        assert leftover not in listing, f"{leftover}: a pip configuration in the image"
    digest = hashlib.sha256(generated).hexdigest()
    assert digest not in same_size.values(), f"the build's pip.conf is in the image: {same_size}"
    image_stock = set().union(*(pem_blocks(data) for name, data in certificates.items()
                                if name.startswith(f"/{STOCK_CERTS}/")))
    assert image_stock, "the image has no CA certificates (ca-certificates)"
    own = host_certs - stock - image_stock
    for name, data in certificates.items():
        assert not own & pem_blocks(data), f"{name} holds a CA certificate of this machine's"


# ------------------------------------------------------------------------------ the running lab


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, data: bytes | None = None, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


class Lab:
    """run_no_cuda.sh in a checkout of its own (the scripts copied into an empty folder, so temp/,
    source_image_inputs/ and the cache are made by the script, for the caller) in the background."""

    def __init__(self, root: Path, env: dict[str, str], name: str):
        self.root, self.name, self.port = root, name, free_port()
        self.checkout = root / "checkout"
        (self.checkout / ".ci").mkdir(parents=True, exist_ok=True)
        for script in ["run.sh", "run_no_cuda.sh", ".ci/docker-common.sh"]:
            shutil.copy2(REPO / script, self.checkout / script)
        self.env = {**env, "HOME": str(root / "home"), "FOMM_LAB_PORT": str(self.port)}
        self.env.pop("XDG_CACHE_HOME", None)
        self.cache = root / "home" / ".cache" / "fomm-lab"
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        # A session of its own: Ctrl-C is a SIGINT to the whole foreground group (bash and docker).
        self.proc = subprocess.Popen(["bash", str(self.checkout / "run_no_cuda.sh"), "--name", name],
                                     cwd=root, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def log(self) -> str:
        return "".join(self.output)[-6000:]

    def url(self, timeout: float = 60) -> tuple[str, str]:
        """The URL run.sh prints, once the lab answers it (the first start maps the image's files
        for the caller's ids, which takes a while)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                assert self.proc.poll() is None, f"run_no_cuda.sh ended ({self.proc.returncode}):\n{self.log()}"
                continue
            if match := URL.search(line):
                return match.group(0), match.group(2)
        raise AssertionError(f"run_no_cuda.sh printed no URL:\n{self.log()}")

    def wait_until_up(self, url: str, timeout: float = 600) -> int:
        deadline = time.monotonic() + timeout
        status = 0
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"run_no_cuda.sh ended ({self.proc.returncode}):\n{self.log()}"
            try:
                status = get(url)[0]
            except (OSError, urllib.error.URLError):
                status = 0
            if status == 200:
                return status
            time.sleep(1)
        raise AssertionError(f"the lab did not answer {url} with 200 (last: {status}):\n{self.log()}")

    def exec(self, *command: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return podman(self.env, "exec", self.name, *command, check=False, timeout=timeout)

    def stop(self, how: str) -> float:
        """Ctrl-C (SIGINT to the script's process group) or SIGTERM to the script alone; seconds
        until the script has exited."""
        start = time.monotonic()
        if how == "ctrl-c":
            os.killpg(self.proc.pid, signal.SIGINT)
        else:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        return time.monotonic() - start

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        podman(self.env, "rm", "--force", "--time", "0", self.name, check=False)


@pytest.fixture()
def lab(podman_env, built_image, tmp_path) -> Iterator[Lab]:
    lab = Lab(tmp_path, podman_env, f"fomm-lab-check-{os.getpid()}-{tmp_path.name[-12:]}".replace("_", "-"))
    try:
        yield lab
    finally:
        lab.cleanup()


def make_media(folder: Path) -> dict[str, Path]:
    """A photo, a 5-frame driving clip and the tiny test model, in the lab's temp/."""
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).save(folder / "photo.png")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10",
                    "-t", "0.5", "-pix_fmt", "yuv420p", str(folder / "driving.mp4")], check=True, timeout=120)
    golden = REPO / "tests" / "fixtures" / "fomm-golden"
    for name in ("tiny-vox.yaml", "tiny-vox-cpk.pth.tar"):
        shutil.copyfile(golden / name, folder / name)
    return {name: folder / name for name in ("photo.png", "driving.mp4", "tiny-vox.yaml", "tiny-vox-cpk.pth.tar")}


def video_frames(path: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_frames", "-of", "csv=p=0", str(path)], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return int(out.strip())


def host_addresses() -> set[str]:
    import psutil

    return {a.address for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family == socket.AF_INET and not a.address.startswith("127.")}


def listening(port: int) -> set[str]:
    import psutil

    return {c.laddr.ip for c in psutil.net_connections("inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def test_run_no_cuda_serves_the_lab_safely_and_writes_as_the_caller(lab):
    me = (os.getuid(), os.getgid())
    start = time.monotonic()
    url, token = lab.url()
    assert lab.wait_until_up(url) == 200
    timed("lab start (run_no_cuda.sh until the URL answers)", start)
    base = f"http://127.0.0.1:{lab.port}"

    # The token opens it, nothing else does.
    assert get(f"{base}/api/contents/notebooks/demo.ipynb?token={token}")[0] == 200
    assert get(f"{base}/api/contents/notebooks/demo.ipynb")[0] == 403
    assert get(f"{base}/api/contents/notebooks/demo.ipynb?token={'0' * 48}")[0] == 403

    # Published on 127.0.0.1 only: nothing listens on another address, none of them reaches it.
    assert listening(lab.port) == {"127.0.0.1"}
    for address in host_addresses():
        with socket.socket() as s:
            s.settimeout(3)
            assert s.connect_ex((address, lab.port)) != 0, f"the lab answers on {address}:{lab.port}"

    # The image's HEALTHCHECK passes.
    health = podman(lab.env, "healthcheck", "run", lab.name, check=False)
    assert health.returncode == 0, health.stdout + health.stderr
    assert podman(lab.env, "inspect", "--format", "{{.State.Health.Status}}", lab.name).stdout.strip() == "healthy"

    # Every process in the container is an unprivileged user: not root, no capabilities.
    status = lab.exec("sh", "-c", "for f in /proc/[0-9]*/status; do grep -E '^(Uid|CapEff):' $f; done")
    assert status.returncode == 0, status.stderr
    uids = {int(line.split()[1]) for line in status.stdout.splitlines() if line.startswith("Uid:")}
    caps = {line.split()[1] for line in status.stdout.splitlines() if line.startswith("CapEff:")}
    assert uids and 0 not in uids and caps == {"0000000000000000"}, status.stdout

    # What the lab writes into the mounted folders belongs to the caller.
    temp = lab.checkout / "temp"
    saved = get(f"{base}/api/contents/temp/from-the-lab.txt?token={token}", method="PUT",
                data=json.dumps({"type": "file", "format": "text", "content": "written by JupyterLab"}).encode())
    assert saved[0] == 201, saved
    written = temp / "from-the-lab.txt"
    assert written.read_text() == "written by JupyterLab"
    assert (written.stat().st_uid, written.stat().st_gid) == me
    touched = lab.exec("touch", "/cache/fomm-lab/from-the-lab", "/app/source_image_inputs/from-the-lab")
    assert touched.returncode == 0, touched.stderr
    for path in [lab.cache / "from-the-lab", lab.checkout / "source_image_inputs" / "from-the-lab"]:
        assert (path.stat().st_uid, path.stat().st_gid) == me, path

    # fomm-lab animate in the container turns the photo and the clip into a video.
    make_media(temp)
    start = time.monotonic()
    animate = lab.exec("fomm-lab", "animate", "--source", "/app/temp/photo.png", "--driving", "/app/temp/driving.mp4",
                       "--output", "/app/temp/animated.mp4", "--config", "/app/temp/tiny-vox.yaml",
                       "--checkpoint", "/app/temp/tiny-vox-cpk.pth.tar", "--device", "cpu",
                       "--no-crop-driving")  # (the test pattern has no face; cropping is tested without the image)
    timed("fomm-lab animate in the container", start)
    assert animate.returncode == 0, animate.stdout + animate.stderr
    video = temp / "animated.mp4"
    assert (video.stat().st_uid, video.stat().st_gid) == me
    assert video_frames(video) == video_frames(temp / "driving.mp4") == 5

    # Ctrl-C stops it within 10 s, and the container is gone.
    seconds = lab.stop("ctrl-c")
    assert lab.proc.poll() is not None and seconds <= 10, f"still running {seconds:.0f} s after Ctrl-C:\n{lab.log()}"
    assert podman(lab.env, "container", "exists", lab.name, check=False).returncode == 1


def test_run_no_cuda_stops_on_sigterm(lab):
    url, _ = lab.url()
    lab.wait_until_up(url)
    seconds = lab.stop("sigterm")
    assert lab.proc.poll() is not None and seconds <= 10, f"still running {seconds:.0f} s after SIGTERM:\n{lab.log()}"
    assert podman(lab.env, "container", "exists", lab.name, check=False).returncode == 1
