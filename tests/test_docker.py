"""The Docker lab: Dockerfile and scripts pass their linters, install what CI installs, and the run
scripts start the container safely (127.0.0.1 only, a fresh random token, the right mounts).

No Docker engine is needed: the scripts run against a ``docker`` on PATH that records its
arguments, so what is checked is exactly the command line each script would run. The real image is
built and started in test_docker_image.py.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ["build.sh", "run.sh", "run_no_cuda.sh", ".ci/docker-common.sh", ".ci/install-python-deps.sh", ".ci/install.sh",
           ".ci/run", ".ci/docker-shim/docker"]
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
    for name in ["build.sh", "run.sh", "run_no_cuda.sh", INSTALL, ".ci/run", ".ci/install.sh", ".ci/docker-shim/docker"]:
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
    assert [call[0] for call in docker_calls] == ["--torch-only", "--deps-only", "--torch-version"]

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
    assert len(pip_lines) == 3
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
                   "fomm_lab/engine/configs/vox-256.yaml", "source_image_inputs"]:
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
    from fomm_lab.cli.parser import build_parser

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


def test_install_script_deps_only_installs_what_pyproject_lists_but_not_the_package():
    """--deps-only: the dependencies and the extras' (fomm-lab[lab], fomm-lab[openvino] in "test"
    expanded), from pyproject.toml alone; here all are installed already, so pip only confirms them."""
    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["bash", "-x", INSTALL, "--deps-only", "torch", "test"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    deps_call = shlex.split([line for line in result.stderr.splitlines() if "-m pip install" in line][-1])
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    expected = project["dependencies"] + [d for extra in ("test", "lab", "openvino") for d in optional[extra]
                                          if not d.startswith("fomm-lab")]
    assert sorted(d for d in optional["test"] if d.startswith("fomm-lab")) == ["fomm-lab[lab]", "fomm-lab[openvino]"]
    assert sorted(deps_call[deps_call.index("--no-cache-dir") + 1:]) == sorted(expected)


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
    """A ``docker`` that records the arguments of ``build`` and ``run`` (one per line) and the
    lab's environment and stdin, then exits with $FAKE_DOCKER_RC; it answers ``--version``
    ($FAKE_DOCKER_VERSION: Docker, or podman), ``image inspect`` (the image's user,
    $FAKE_IMAGE_USER; $FAKE_NO_IMAGE: no image) and ``info`` ($FAKE_DOCKER_SECURITY). An ``id``
    beside it answers $FAKE_UID / $FAKE_GID, to play any caller."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(
        "#!/usr/bin/env bash\n"
        'case "$1" in\n'
        '    --version) echo "${FAKE_DOCKER_VERSION:-Docker version 27.3.1, build ce12230}"; exit 0 ;;\n'
        '    image) [[ -z ${FAKE_NO_IMAGE:-} ]] || exit 1; echo "${FAKE_IMAGE_USER:-1000:1000}"; exit 0 ;;\n'
        '    info) echo "${FAKE_DOCKER_SECURITY:-[\"name=seccomp,profile=builtin\",\"name=cgroupns\"]}"; exit 0 ;;\n'
        "esac\n"
        'printf "%s\\n" "$@" > "$FAKE_DOCKER_LOG"\n'
        'printf "%s\\n" "${JUPYTER_TOKEN:-}" > "$FAKE_DOCKER_LOG.token"\n'
        'printf "%s\\n" "${BUILDAH_FORMAT:-}" > "$FAKE_DOCKER_LOG.buildah-format"\n'
        'if [[ -n ${FAKE_DOCKER_STDIN:-} ]]; then cat > "$FAKE_DOCKER_LOG.stdin"; fi\n'
        'exit "${FAKE_DOCKER_RC:-0}"\n')
    (bin_dir / "id").write_text(
        "#!/usr/bin/env bash\n"
        'case "$1" in -u) echo "${FAKE_UID:?}" ;; -g) echo "${FAKE_GID:?}" ;; *) exit 2 ;; esac\n')
    for name in ("docker", "id"):
        (bin_dir / name).chmod(0o755)
    return bin_dir


def run_script(name: str, fake_docker: Path, tmp_path: Path, *args: str, stdin: str | None = None,
               **env: str) -> tuple[subprocess.CompletedProcess, list[str], str]:
    """``name`` run by a normal user (uid 1000, whose image build.sh made) unless FAKE_UID says otherwise."""
    log = tmp_path / "docker-args.txt"
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("FOMM_LAB_", "JUPYTER_", "TORCH_INDEX", "BUILDAH_FORMAT"))}
    full_env.update({"PATH": f"{fake_docker}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path / "home"),
                     "FAKE_DOCKER_LOG": str(log), "FAKE_UID": "1000", "FAKE_GID": "1000", **env})
    full_env.pop("XDG_CACHE_HOME", None)
    log.unlink(missing_ok=True)
    result = subprocess.run(["bash", str(REPO / name), *args], cwd=tmp_path, env=full_env, input=stdin,
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


@pytest.mark.parametrize(("caller", "image_user"), [(("1234", "567"), ("1234", "567")), (("0", "0"), ("1000", "1000"))])
def test_build_sh_builds_with_the_users_ids(caller, image_user, fake_docker, tmp_path):
    """The image's user gets the caller's ids; a root caller's image still gets a normal user."""
    result, argv, _ = run_script("build.sh", fake_docker, tmp_path, TORCH_INDEX="https://example.invalid/whl/cu126",
                                 FAKE_UID=caller[0], FAKE_GID=caller[1])
    assert result.returncode == 0, result.stderr
    assert argv[0] == "build" and argv[-1] == "."
    assert sorted(option_values(argv, "--build-arg")) == sorted(
        [f"USER_UID={image_user[0]}", f"USER_GID={image_user[1]}", "TORCH_INDEX=https://example.invalid/whl/cu126"])
    assert option_values(argv, "--tag") == ["fomm-lab"]


@pytest.mark.parametrize(("version", "buildah_format"), [("podman version 4.3.1", "docker"),
                                                          ("Docker version 27.3.1, build ce12230", "")])
def test_build_sh_keeps_the_healthcheck_with_podman(version, buildah_format, fake_docker, tmp_path):
    """podman builds Docker-format images then (OCI images drop HEALTHCHECK); Docker is left alone."""
    result, _, _ = run_script("build.sh", fake_docker, tmp_path, FAKE_DOCKER_VERSION=version)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "docker-args.txt.buildah-format").read_text().strip() == buildah_format


def test_build_sh_passes_extra_arguments_on(fake_docker, tmp_path):
    result, argv, _ = run_script("build.sh", fake_docker, tmp_path, "--build-arg", "BASE_IMAGE=debian:bookworm",
                                 "--volume", "/srv/pip:/mnt:ro")
    assert result.returncode == 0, result.stderr
    assert "BASE_IMAGE=debian:bookworm" in option_values(argv, "--build-arg")
    assert option_values(argv, "--volume") == ["/srv/pip:/mnt:ro"] and argv[-1] == "."


# ------------------------------------------------------------------- who owns the lab's files


PODMAN = "podman version 4.3.1"


def test_run_sh_as_a_normal_user_with_docker_adds_no_user_options(fake_docker, tmp_path):
    """Rootful Docker, the image built for the caller (build.sh): the lab's uid is the caller's."""
    result, argv, _ = run_script("run.sh", fake_docker, tmp_path, FAKE_UID="1000", FAKE_IMAGE_USER="1000:1000")
    assert result.returncode == 0, result.stderr
    assert not {"--user", "--userns", "--uidmap", "--gidmap"} & set(argv)


def test_run_sh_as_root_with_podman_maps_the_labs_user_to_root(fake_docker, tmp_path):
    """Rootful podman: the lab stays uid 1000 in the container; on the host that uid (and its
    group) is root, every other container id a high unused one."""
    result, argv, _ = run_script("run_no_cuda.sh", fake_docker, tmp_path, FAKE_UID="0", FAKE_GID="0",
                                 FAKE_DOCKER_VERSION=PODMAN, FAKE_IMAGE_USER="1000:1001")
    assert result.returncode == 0, result.stderr
    assert option_values(argv, "--uidmap") == ["0:2147483648:1000", "1000:0:1", "1001:2147484649:64535"]
    assert option_values(argv, "--gidmap") == ["0:2147483648:1001", "1001:0:1", "1002:2147484650:64534"]
    assert "--user" not in argv and "--userns" not in argv
    assert option_values(argv, "--publish") == ["127.0.0.1:8888:8888"]


def test_run_sh_maps_a_large_image_uid_too(fake_docker, tmp_path):
    result, argv, _ = run_script("run.sh", fake_docker, tmp_path, FAKE_UID="0", FAKE_GID="0",
                                 FAKE_DOCKER_VERSION=PODMAN, FAKE_IMAGE_USER="70000:70000")
    assert result.returncode == 0, result.stderr
    assert option_values(argv, "--uidmap") == ["0:2147483648:70000", "70000:0:1"]


def test_run_sh_as_a_normal_user_with_podman_keeps_the_callers_id(fake_docker, tmp_path):
    """Rootless podman: keep-id makes the caller the image's user inside, whatever their uid."""
    result, argv, _ = run_script("run.sh", fake_docker, tmp_path, FAKE_UID="1234", FAKE_GID="1234",
                                 FAKE_DOCKER_VERSION=PODMAN, FAKE_IMAGE_USER="1000:1000")
    assert result.returncode == 0, result.stderr
    assert option_values(argv, "--userns") == ["keep-id:uid=1000,gid=1000"]
    assert "--uidmap" not in argv


@pytest.mark.parametrize(("env", "needles"), [
    ({"FAKE_UID": "0", "FAKE_GID": "0"}, ["started as root", "docker group", "podman"]),
    ({"FAKE_UID": "1234", "FAKE_IMAGE_USER": "1000:1000"}, ["uid 1000", "uid 1234", "./build.sh"]),
    ({"FAKE_DOCKER_SECURITY": '["name=seccomp,profile=builtin","name=rootless"]'}, ["rootless", "podman"]),
    ({"FAKE_DOCKER_SECURITY": '["name=userns"]'}, ["userns-remap"]),
    ({"FAKE_IMAGE_USER": "fomm"}, ["'fomm'", "./build.sh"]),
    ({"FAKE_NO_IMAGE": "1"}, ["no image 'fomm-lab'", "./build.sh"]),
])
def test_run_sh_stops_with_one_line_where_the_files_could_not_be_the_callers(env, needles, fake_docker, tmp_path):
    """Docker cannot make the lab's files the caller's without making the lab root, or at all when
    it remaps users: one line says what to do, and nothing is started or created."""
    result, argv, _ = run_script("run.sh", fake_docker, tmp_path, **env)
    assert result.returncode == 1 and argv == []
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{REPO}/run.sh: "), result.stderr
    for needle in needles:
        assert needle in lines[0]
    assert not (tmp_path / "home").exists()  # no folder was created for a lab that does not start


def test_run_sh_hands_its_stdin_to_docker(fake_docker, tmp_path):
    result, _, _ = run_script("run.sh", fake_docker, tmp_path, stdin="typed\n", FAKE_DOCKER_STDIN="1")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "docker-args.txt.stdin").read_text() == "typed\n"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_run_sh_reaches_docker(sig, fake_docker, tmp_path):
    """kill (or a supervisor) signalling the script alone stops docker too (a SIGTERM, which
    docker passes on to the lab), and the script returns docker's exit status once docker has
    stopped."""
    (fake_docker / "docker").write_text(
        "#!/usr/bin/env bash\n"
        'case "$1" in --version) echo Docker; exit 0 ;; image) echo 1000:1000; exit 0 ;; info) exit 0 ;; esac\n'
        'trap \'touch "$FAKE_DOCKER_LOG.terminated"; sleep 0.5; exit 42\' TERM\n'
        'touch "$FAKE_DOCKER_LOG.started"\n'
        "while true; do sleep 0.1; done\n")
    log = tmp_path / "docker-args.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FOMM_LAB_", "JUPYTER_"))}
    env.update(PATH=f"{fake_docker}{os.pathsep}{os.environ['PATH']}", HOME=str(tmp_path / "home"),
               FAKE_DOCKER_LOG=str(log), FAKE_UID="1000", FAKE_GID="1000")
    proc = subprocess.Popen(["bash", str(REPO / "run.sh")], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "docker-args.txt.started").exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.05)
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 42
        assert (tmp_path / "docker-args.txt.terminated").exists()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the fake docker too, whatever happened
        except ProcessLookupError:
            pass
        proc.wait()


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
    """README.md opens with the lab command and the test command; .ci/run runs the latter verbatim,
    as its last command, in a fresh clone of the repository in an empty temporary folder (nothing
    beside it, as in anyone's clone)."""
    readme = (REPO / "README.md").read_text().splitlines()
    fence = readme.index("```bash")
    lab, test = (line.split("#")[0].strip() for line in readme[fence + 1 : fence + 3])
    assert lab == "./build.sh && ./run.sh" and (REPO / "build.sh").is_file()
    ci = [line.strip() for line in (REPO / ".ci/run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert ci[-1] == test
    assert ci[-2] == 'cd "$copy"'
    assert any(re.fullmatch(r'copy=\$\(mktemp -d[^)]*\)/fomm-lab', line) for line in ci)
    assert any(line.startswith('git clone') and line.endswith('"$repo" "$copy"') for line in ci)
