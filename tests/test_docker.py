"""The Docker lab: Dockerfile and scripts pass their linters, install what CI installs, and the run
scripts start the container safely (127.0.0.1 only, a fresh random token, the right mounts).

No Docker engine is needed: the scripts run against a ``docker`` on PATH that records its
arguments, so what is checked is exactly the command line each script would run.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ["build.sh", "run.sh", "run_no_cuda.sh", ".ci/docker-common.sh", ".ci/install-python-deps.sh", ".ci/install.sh", ".ci/run"]
INSTALL = ".ci/install-python-deps.sh"


def tool(name: str) -> str:
    """Path of a linter binary (PATH, or beside this Python: the venv's bin); fail clearly if missing."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail(f"`{name}` is not installed: hadolint comes with the test extras (pip install -e '.[test]'), "
                    "shellcheck with the system packages (apt-get install shellcheck); see .ci/install.sh")
    return found


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    logical, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            keyword, _, rest = current.strip().partition(" ")
            logical.append((keyword.upper(), rest.strip()))
        current = ""
    return logical


def install_calls(text: str) -> list[list[str]]:
    """Argument lists of every call of the shared install script in a shell text."""
    calls = []
    for line in text.replace("\\\n", " ").splitlines():
        if INSTALL not in line or line.lstrip().startswith("#"):
            continue
        words = shlex.split(line)
        start = next(i for i, word in enumerate(words) if word.endswith(INSTALL)) + 1
        calls.append(list(itertools.takewhile(lambda w: w not in ("&&", "||", ";", "|"), words[start:])))
    return calls


# ------------------------------------------------------------------------------------ linters


def test_dockerfile_is_clean_under_hadolint():
    result = subprocess.run([tool("hadolint"), "--no-color", "Dockerfile"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scripts_are_clean_under_shellcheck():
    ci_scripts = [str(p.relative_to(REPO)) for p in (REPO / ".ci").iterdir()
                  if p.is_file() and p.read_text().startswith("#!/usr/bin/env bash")]
    files = sorted(set(SCRIPTS + ci_scripts))
    result = subprocess.run([tool("shellcheck"), "--external-sources", *files], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scripts_are_strict_bash_and_executable():
    for name in ["build.sh", "run.sh", "run_no_cuda.sh", INSTALL]:
        path = REPO / name
        assert os.access(path, os.X_OK), f"{name} is not executable"
        head = path.read_text().splitlines()[:20]
        assert head[0] == "#!/usr/bin/env bash" and "set -euo pipefail" in head, name
    for path in [*SCRIPTS, "Dockerfile"]:
        assert "xhost" not in (REPO / path).read_text(), path


# ------------------------------------------------------------------------ same install as CI


def test_the_image_installs_what_ci_installs():
    steps = dockerfile_instructions()
    runs = [args for keyword, args in steps if keyword == "RUN"]
    assert not any(re.search(r"\bpip3? install\b|-m pip\b", run) for run in runs), \
        "the Dockerfile must install Python packages only through " + INSTALL
    docker_calls = install_calls("\n".join(runs))
    assert docker_calls and docker_calls[-1] == ["--torch-version", "$TORCH_VERSION", "$TORCH_INDEX", "lab"]
    assert all(call[-1] == "lab" and call[-4:-2] == ["--torch-version", "$TORCH_VERSION"] for call in docker_calls)

    ci_texts = [p.read_text() for p in (REPO / ".ci").iterdir() if p.is_file() and p.name != Path(INSTALL).name]
    ci_calls = [call for text in ci_texts for call in install_calls(text)]
    assert ci_calls, f"CI (.ci/) must install through {INSTALL}"
    assert all(not re.search(r"\bpip3? install\b|-m pip install", t) for t in ci_texts), \
        "CI must install Python packages only through " + INSTALL
    for call in ci_calls:
        extras = [w for w in call if not w.startswith("--")][1]
        assert extras == "test"
    # CI's "test" extra is the image's "lab" extra plus the test tools.
    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "fomm-lab[lab]" in optional["test"]

    # The script names no package: everything but torch's source comes from pyproject.toml.
    script = (REPO / INSTALL).read_text()
    pip_lines = [line for line in script.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
    assert len(pip_lines) == 2
    assert not re.search(r"pip install[^\n]*\b(numpy|jupyterlab|opencv|torch)\b", script)


def test_the_image_copies_what_the_install_needs():
    steps = dockerfile_instructions()
    copied = " ".join(args for keyword, args in steps if keyword == "COPY")
    for needed in ["pyproject.toml", "README.md", INSTALL, "fomm_lab/", "notebooks/", "source_image_inputs/"]:
        assert needed in copied, needed
        assert (REPO / needed.rstrip("/")).exists() or needed == "README.md"
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for needed in ["pyproject.toml", "README.md", INSTALL, "fomm_lab", "notebooks/demo.ipynb",
                   "fomm_lab/configs/vox-256.yaml", "source_image_inputs"]:
        assert not any(fnmatch.fnmatch(needed, pattern) or needed.startswith(pattern.rstrip("/") + "/")
                       for pattern in ignored), f".dockerignore leaves {needed} out of the build context"


def test_the_torch_index_matches_the_cuda_base_image():
    """The default base is nvidia/cuda's smallest flavour, and the torch index is the CUDA build
    of the same CUDA release; the base stays replaceable (CI builds on Debian)."""
    text = (REPO / "Dockerfile").read_text()
    froms = [args for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert froms == ["${BASE_IMAGE}"]
    base = re.search(r"^ARG BASE_IMAGE=(\S+)", text, re.M).group(1)
    cuda = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-base-ubuntu\d+\.\d+", base)
    assert cuda, base
    index = re.search(r"ARG TORCH_INDEX=(\S+)", text).group(1)
    assert index == f"https://download.pytorch.org/whl/cu{cuda.group(1)}{cuda.group(2)}"


def test_the_image_pins_the_torch_release_ci_tests():
    image = re.search(r"^ARG TORCH_VERSION=(\S+)", (REPO / "Dockerfile").read_text(), re.M).group(1)
    ci = [call[0] for call in install_calls((REPO / ".ci" / "install.sh").read_text())]
    assert ci == [f"torch=={image}"]


def test_the_image_runs_the_lab_safely():
    steps = dockerfile_instructions()
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert ("EXPOSE", "8888") in steps
    volumes = json.loads(next(args for keyword, args in steps if keyword == "VOLUME"))
    home = re.search(r"FOMM_LAB_HOME=(\S+)", (REPO / "Dockerfile").read_text()).group(1)
    assert home in volumes and "/app/temp" in volumes
    assert any(keyword == "HEALTHCHECK" for keyword, _ in steps)
    command = json.loads(next(args for keyword, args in steps if keyword == "CMD"))
    assert command[:2] == ["fomm-lab", "lab"]
    from fomm_lab.cli import build_parser

    args = build_parser().parse_args(command[1:])  # the CLI accepts the image's command
    assert args.ip == "0.0.0.0" and args.no_browser


def test_install_script_reads_the_torch_requirement_from_pyproject(tmp_path):
    """The index form installs pyproject's torch requirement; an unreachable index is never asked
    because the installed torch already satisfies it."""
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["bash", INSTALL, "--torch-only", "http://127.0.0.1:9/simple", "lab"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    spec = next(d for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
                if d.startswith("torch"))
    assert f"Requirement already satisfied: {spec} " in result.stdout


def test_install_script_checks_the_torch_release(tmp_path):
    """--torch-version: the installed torch must be that release, whatever its build tag."""
    from importlib.metadata import version

    env = {**os.environ, "PYTHON": sys.executable}
    installed = version("torch").split("+")[0]
    ok = subprocess.run(["bash", INSTALL, "--torch-only", "--torch-version", installed, "torch", "lab"], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    wrong = subprocess.run(["bash", INSTALL, "--torch-only", "--torch-version", "1.0.0", "torch", "lab"], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=300)
    assert wrong.returncode != 0
    assert f"torch {version('torch')} is installed, not release 1.0.0" in wrong.stderr


@pytest.mark.parametrize("argv", [[], ["only-one"], ["a", "b", "c"], ["--fast", "a", "b"],
                                  ["--torch-version", "a", "b"], ["a", "b", "--torch-version"]])
def test_install_script_usage(argv):
    result = subprocess.run(["bash", INSTALL, *argv], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert "usage:" in result.stderr


# ------------------------------------------------------------------------ the scripts' docker


@pytest.fixture()
def fake_docker(tmp_path) -> Path:
    """A ``docker`` that records its arguments (one per line) and the lab's environment, then exits
    with $FAKE_DOCKER_RC."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(
        "#!/usr/bin/env bash\n"
        'printf "%s\\n" "$@" > "$FAKE_DOCKER_LOG"\n'
        'printf "%s\\n" "${JUPYTER_TOKEN:-}" > "$FAKE_DOCKER_LOG.token"\n'
        'exit "${FAKE_DOCKER_RC:-0}"\n')
    (bin_dir / "docker").chmod(0o755)
    return bin_dir


def run_script(name: str, fake_docker: Path, tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, list[str], str]:
    log = tmp_path / "docker-args.txt"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("FOMM_LAB_", "JUPYTER_", "TORCH_INDEX"))}
    full_env.update(PATH=f"{fake_docker}{os.pathsep}{os.environ['PATH']}", HOME=str(tmp_path / "home"),
                    FAKE_DOCKER_LOG=str(log), **env)
    full_env.pop("XDG_CACHE_HOME", None)
    result = subprocess.run(["bash", str(REPO / name), *args], cwd=tmp_path, env=full_env,
                            capture_output=True, text=True, timeout=60)
    argv = log.read_text().splitlines() if log.exists() else []
    token = (tmp_path / "docker-args.txt.token").read_text().strip() if log.exists() else ""
    return result, argv, token


def option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv) if word == option]


def test_run_sh_publishes_on_localhost_with_a_fresh_token(fake_docker, tmp_path):
    result, argv, token = run_script("run.sh", fake_docker, tmp_path)
    assert result.returncode == 0, result.stderr
    assert argv[0] == "run" and argv[-1] == "fomm-lab"
    assert option_values(argv, "--gpus") == ["all"]
    assert option_values(argv, "--publish") == ["127.0.0.1:8888:8888"]
    envs = option_values(argv, "--env")
    assert "JUPYTER_TOKEN" in envs and "FOMM_LAB_PORT=8888" in envs
    assert re.fullmatch(r"[0-9a-f]{48}", token)
    assert token not in " ".join(argv)  # handed over in the environment, not visible in `ps`
    assert f"http://127.0.0.1:8888/lab/tree/notebooks/demo.ipynb?token={token}" in result.stdout
    cache = tmp_path / "home" / ".cache" / "fomm-lab"
    assert sorted(option_values(argv, "--volume")) == sorted([
        f"{cache}:/cache/fomm-lab", f"{REPO}/temp:/app/temp",
        f"{REPO}/source_image_inputs:/app/source_image_inputs"])
    assert cache.is_dir()  # created by the script, so it belongs to the user
    assert ("--device" in argv) == Path("/dev/video0").exists()

    _, _, second = run_script("run.sh", fake_docker, tmp_path)
    assert second != token


def test_run_sh_options_from_the_environment(fake_docker, tmp_path):
    cache = tmp_path / "my-cache"
    result, argv, _ = run_script("run.sh", fake_docker, tmp_path, FOMM_LAB_PORT="9123",
                                 FOMM_LAB_HOME=str(cache), FOMM_LAB_IMAGE="fomm-lab:test")
    assert result.returncode == 0, result.stderr
    assert option_values(argv, "--publish") == ["127.0.0.1:9123:9123"]
    assert "FOMM_LAB_PORT=9123" in option_values(argv, "--env")
    assert f"{cache}:/cache/fomm-lab" in option_values(argv, "--volume")
    assert argv[-1] == "fomm-lab:test"
    assert "http://127.0.0.1:9123/lab/" in result.stdout


@pytest.mark.parametrize("port", ["eighty", "0", "70000"])
def test_run_sh_refuses_a_bad_port(port, fake_docker, tmp_path):
    result, argv, _ = run_script("run.sh", fake_docker, tmp_path, FOMM_LAB_PORT=port)
    assert result.returncode == 2
    assert "FOMM_LAB_PORT" in result.stderr and argv == []


def test_run_no_cuda_sh_has_no_gpu(fake_docker, tmp_path):
    result, argv, token = run_script("run_no_cuda.sh", fake_docker, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--gpus" not in argv
    assert option_values(argv, "--publish") == ["127.0.0.1:8888:8888"]
    assert re.fullmatch(r"[0-9a-f]{48}", token)


def test_run_sh_hints_at_run_no_cuda_when_docker_cannot_start_it(fake_docker, tmp_path):
    result, _, _ = run_script("run.sh", fake_docker, tmp_path, FAKE_DOCKER_RC="125")
    assert result.returncode == 125
    assert "./run_no_cuda.sh" in result.stderr


def test_build_sh_builds_with_the_users_ids(fake_docker, tmp_path):
    result, argv, _ = run_script("build.sh", fake_docker, tmp_path, TORCH_INDEX="https://example.invalid/whl/cu126")
    assert result.returncode == 0, result.stderr
    assert argv[0] == "build" and argv[-1] == "."
    uid, gid = (os.getuid(), os.getgid()) if os.getuid() != 0 else (1000, 1000)
    assert sorted(option_values(argv, "--build-arg")) == sorted(
        [f"USER_UID={uid}", f"USER_GID={gid}", "TORCH_INDEX=https://example.invalid/whl/cu126"])
    assert option_values(argv, "--tag") == ["fomm-lab"]


def test_scripts_without_docker(tmp_path):
    """With no docker on PATH: one clear message, exit 1."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("dirname", "id", "mkdir", "od", "tr", "stat"):
        os.symlink(shutil.which(name), bin_dir / name)
    for script in ("build.sh", "run.sh"):
        result = subprocess.run([shutil.which("bash"), str(REPO / script)], cwd=tmp_path,
                                env={"PATH": str(bin_dir), "HOME": str(tmp_path)}, capture_output=True, text=True)
        assert result.returncode == 1
        assert "docker is not installed" in result.stderr


@pytest.mark.slow
def test_the_image_command_and_healthcheck_work_together(tmp_path):
    """The image's CMD (with run.sh's environment) serves the lab; its HEALTHCHECK passes while it
    runs and fails once it is stopped. Run here without Docker, from a folder laid out like /app."""
    import nbformat
    from test_cli_lab import free_port, lab_env, wait_for_url

    app = tmp_path / "app"
    (app / "notebooks").mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), app / "notebooks" / "demo.ipynb")
    steps = dockerfile_instructions()
    command = json.loads(next(args for keyword, args in steps if keyword == "CMD"))
    health = next(args for keyword, args in steps if keyword == "HEALTHCHECK")
    health_command = json.loads(health[health.index("CMD") + 3:])
    assert health_command[0] == "python"

    port, token = free_port(), os.urandom(24).hex()
    env = {**lab_env(tmp_path), "FOMM_LAB_PORT": str(port), "JUPYTER_TOKEN": token}
    root_flag = ["--allow-root"] if os.geteuid() == 0 else []  # the image runs as a normal user
    with open(tmp_path / "lab.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "fomm_lab", *command[1:], *root_flag], cwd=app, env=env,
                                stdout=subprocess.PIPE, stderr=log, text=True)

    def healthcheck() -> int:
        return subprocess.run([sys.executable, *health_command[1:]], env=env, capture_output=True,
                              timeout=30).returncode

    try:
        match = wait_for_url(proc)
        assert (int(match.group(1)), match.group(2)) == (port, token)
        assert healthcheck() == 0
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert healthcheck() != 0


def test_ci_runs_exactly_the_readme_test_command():
    """README.md opens with the lab command and the test command; .ci/run runs the latter verbatim."""
    readme = (REPO / "README.md").read_text().splitlines()
    fence = readme.index("```bash")
    lab, test = (line.split("#")[0].strip() for line in readme[fence + 1 : fence + 3])
    assert lab == "./build.sh && ./run.sh" and (REPO / "build.sh").is_file()
    ci_commands = [line for line in (REPO / ".ci/run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci_commands == [test]
