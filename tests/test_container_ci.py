"""ci/ scripts and container-mode error paths.

The first group needs no Docker: it pins the clear errors (SDK missing, engine down, bad
arguments). The second starts a second, throw-away engine with ci/docker-up in its own folder
and stops it with ci/docker-down, so it runs in the live group and needs root and dockerd.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from simulator import container

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / "ci"


def script(name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run([str(CI / name), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_missing_docker_sdk_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "docker", None)
    with pytest.raises(container.DockerUnavailable, match=r"Docker SDK .*pip install"):
        container.client()


def test_engine_down_says_to_run_docker_up(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    started = time.monotonic()
    with pytest.raises(container.DockerUnavailable, match=r"no Docker engine answers at unix://.*ci/docker-up"):
        container.client(timeout=5)
    assert time.monotonic() - started < 10


def test_docker_host_prefers_the_environment_then_docker_up_socket(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", "tcp://example.invalid:2375")
    assert container.docker_host() == "tcp://example.invalid:2375"
    monkeypatch.delenv("DOCKER_HOST")
    monkeypatch.setenv("KAUDIT_DOCKER_DIR", str(tmp_path))
    assert container.docker_host() is None  # no socket there
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "docker.sock"))
        assert container.docker_host() == f"unix://{tmp_path}/docker.sock"


def test_kaudit_image_override_must_exist(monkeypatch):
    class Images:
        def get(self, ref):
            raise LookupError(f"no such image: {ref}")

    class FakeClient:
        images = Images()

    monkeypatch.setenv("KAUDIT_IMAGE", "kaudit:does-not-exist")
    with pytest.raises(container.ImageBuildError, match="KAUDIT_IMAGE='kaudit:does-not-exist'"):
        container.ensure_image(cli=FakeClient())


def test_bad_mounts_are_refused_before_anything_starts(tmp_path):
    with pytest.raises(container.ContainerError, match="does not exist"):
        container._volumes(tmp_path, {tmp_path / "missing": "/x"})
    with pytest.raises(container.ContainerError, match="must be /ABS/PATH"):
        container._volumes(tmp_path, {tmp_path: "relative"})
    volumes = container._volumes(tmp_path, {tmp_path: "/data:rw"})
    assert volumes[str(tmp_path.resolve())] == {"bind": "/data", "mode": "rw"}


def test_build_image_tag_depends_on_the_source_tree():
    first = script("build-image", "--print-tag")
    assert first.returncode == 0, first.stderr
    tag = first.stdout.strip()
    assert tag.startswith("kaudit:") and len(tag.split(":")[1]) == 16
    assert first.stdout.count("\n") == 1  # stdout carries the reference only


def test_docker_up_rejects_bad_settings():
    if os.geteuid() != 0:
        pytest.skip("ci/docker-up needs root")
    out = script("docker-up", env={"KAUDIT_DOCKER_TIMEOUT": "soon"})
    assert out.returncode != 0
    assert out.stdout == ""
    assert "KAUDIT_DOCKER_TIMEOUT must be a whole number" in out.stderr
    out = script("docker-up", env={"KAUDIT_DOCKER_DIR": "relative/dir"})
    assert out.returncode != 0 and "absolute path" in out.stderr


def test_docker_down_is_safe_when_nothing_runs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("ci/docker-down needs root")
    out = script("docker-down", env={"KAUDIT_DOCKER_DIR": str(tmp_path / "never-started")})
    assert out.returncode == 0, out.stderr
    assert "nothing to do" in out.stderr


def test_example_workflow_runs_the_container_suite():
    workflow = yaml.safe_load((CI / "github-workflow.example.yml").read_text())
    steps = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    text = "\n".join(steps)
    for needle in ("ci/docker-up", "ci/build-image", "kaudit verify --container", "--junit", "ci/docker-down"):
        assert needle in text, needle


@pytest.mark.live
@pytest.mark.container
@pytest.mark.xdist_group("live")
def test_docker_up_and_down_in_a_folder_of_their_own():
    """A second engine next to any other: up prints DOCKER_HOST, is idempotent, down cleans up."""
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        pytest.skip("needs root and dockerd (ci/docker-up installs docker.io on a CI machine)")
    folder = f"/tmp/kaudit-docker-test-{os.getpid()}"
    env = {"KAUDIT_DOCKER_DIR": folder}
    pid = None
    try:
        up = script("docker-up", env=env)
        assert up.returncode == 0, up.stderr
        assert up.stdout == f"DOCKER_HOST=unix://{folder}/docker.sock\n"
        pid = int(Path(folder, "docker.pid").read_text())
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd"
        again = script("docker-up", env=env)
        assert again.returncode == 0 and again.stdout == up.stdout
        assert "already running" in again.stderr
        version = subprocess.run(["docker", "-H", f"unix://{folder}/docker.sock", "version", "--format",
                                  "{{.Server.Version}}"], capture_output=True, text=True, timeout=30)
        assert version.returncode == 0 and version.stdout.strip()
    finally:
        down = script("docker-down", env=env)
    assert down.returncode == 0, down.stderr
    assert not Path(folder).exists()
    assert pid is not None and not is_dockerd(pid)
    assert processes_naming(folder) == []


def is_dockerd(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd"
    except OSError:
        return False


def processes_naming(text: str) -> list[int]:
    """Pids whose command line mentions `text` (the engine's containerd and shims name its folder)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if text.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue  # exited while we looked
    return found
