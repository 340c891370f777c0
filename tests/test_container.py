"""Container mode against a real Docker engine and the real kernel's audit.

These need a Docker engine (`export "$(ci/docker-up)"`) and root; they skip with the reason when
either is missing. They run in the "live" xdist group; the one test that changes audit state
holds the live lock and checks that status and rules are as it found them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from simulator import container

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "ci" / "audit-probe.py"
# The audit_status fields that are configuration (lost and backlog are counters that move).
CONFIG_FIELDS = ("enabled", "failure", "pid", "rate_limit", "backlog_limit")

pytestmark = [pytest.mark.live, pytest.mark.container, pytest.mark.xdist_group("live")]


@pytest.fixture(scope="module")
def cli():
    if os.geteuid() != 0:
        pytest.skip("container mode needs root (Docker engine, audit control)")
    try:
        return container.client()
    except container.DockerUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def image(cli) -> str:
    # A build failure is a test failure, not a skip: the recipe is part of what is tested.
    return container.ensure_image(cli=cli)


def host_probe(*args: str) -> dict:
    """The same probe, run on the host: the reference the container must agree with."""
    out = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def probe_module():
    """ci/audit-probe.py as a module: its small netlink client serves the host side too."""
    spec = importlib.util.spec_from_file_location("audit_probe", PROBE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def host_rules() -> list[bytes]:
    """The kernel's rules as raw audit_rule_data payloads."""
    mod = probe_module()
    audit = mod.Audit()
    try:
        return sorted(body for _, body in audit.request(mod.AUDIT_LIST_RULES))
    finally:
        audit.close()


def put_back(before: dict, rules_before: list[bytes]) -> None:
    """Safety net if the probe in the container died before its own `finally`: delete the rules
    it added (they carry its key) and put `enabled` back (only ever to 0 or 1)."""
    mod = probe_module()
    audit = mod.Audit()
    try:
        for body in host_rules():
            if body not in rules_before and b"kaudit-probe-" in body:
                audit.request(mod.AUDIT_DEL_RULE, body)
        now = audit.status()
        if now["enabled"] != before["enabled"] and before["enabled"] in (0, 1):
            audit.set_status(mod.AUDIT_STATUS_ENABLED, enabled=before["enabled"])
    finally:
        audit.close()


def kaudit_containers(cli) -> list[str]:
    return sorted(c.name for c in cli.containers.list(all=True, filters={"label": container.LABEL}))


def mine(cli) -> list[str]:
    """kaudit containers started by this test process (other live runs may have their own)."""
    prefix = f"kaudit-{os.getpid()}-"
    return [name for name in kaudit_containers(cli) if name.startswith(prefix)]


def test_image_builds_or_is_cached(cli, image):
    tag = subprocess.run([str(ROOT / "ci" / "build-image"), "--print-tag"], capture_output=True,
                         text=True, check=True).stdout.strip()
    labels = cli.images.get(image).labels
    assert image.startswith("kaudit:")
    assert labels["org.kaudit.source-hash"] == image.split(":", 1)[1]
    # The tag is derived from the content: asking again gives the same tag (unless the tree was
    # edited in between by someone else, in which case --print-tag moved with it).
    if tag == image:
        started = time.monotonic()
        assert container.ensure_image(cli=cli) == image
        assert time.monotonic() - started < 30, "a cached image must not be rebuilt"


def test_image_holds_python_curl_and_kaudit(cli, image, tmp_path):
    result = container.run(
        ["sh", "-c", "python3 --version && curl --version | head -n1 && "
                     "python3 -c 'import collector, simulator, pyroute2, scapy, docker; print(\"imports ok\")'"],
        image=image, cli=cli, timeout=120, result_dir=tmp_path,
    )
    assert result.exit_code == 0, result.stderr
    assert "Python 3." in result.stdout and "curl " in result.stdout and "imports ok" in result.stdout


def test_default_caps_can_audit_get_and_see_the_host_status(cli, image):
    with container.live_lock():
        inside = container.probe(image=image, cli=cli)
        outside = host_probe()
    assert inside["get"]["ok"], inside["get"]
    assert {k: inside["get"]["status"][k] for k in CONFIG_FIELDS} == {
        k: outside["get"]["status"][k] for k in CONFIG_FIELDS
    }
    assert inside["multicast_join"]["ok"], inside["multicast_join"]
    assert inside["rcvbufforce"]["ok"], inside["rcvbufforce"]
    # With --pid=host the container sees host pids: the probe's pid is a real host process id.
    assert inside["pid"] > 1


def test_without_audit_caps_the_kernel_refuses(cli, image):
    report = container.probe(image=image, cli=cli, cap_add=())
    assert report["get"] == {"ok": False, "errno": "EPERM", "error": report["get"]["error"]}
    assert report["multicast_join"]["errno"] == "EPERM"
    assert report["rcvbufforce"]["errno"] == "EPERM"


def test_outside_the_host_pid_namespace_audit_control_is_refused(cli, image):
    report = container.probe(image=image, cli=cli, pid_host=False)
    assert report["get"]["ok"] is False
    assert report["get"]["errno"] in ("EPERM", "ECONNREFUSED")


def test_full_audit_control_with_default_caps_restores_state(cli, image):
    with container.live_lock():
        before = host_probe()["get"]["status"]
        rules_before = host_rules()
        report = None
        try:
            report = container.probe(image=image, cli=cli, full=True, timeout=120)
        finally:
            after = host_probe()["get"]["status"]
            rules_after = host_rules()
            if rules_after != rules_before or after["enabled"] != before["enabled"]:
                put_back(before, rules_before)
    assert {k: after[k] for k in CONFIG_FIELDS} == {k: before[k] for k in CONFIG_FIELDS}
    assert rules_after == rules_before
    assert report is not None
    for step in ("add_rule", "list_rules", "del_rule", "restored"):
        assert report[step]["ok"], (step, report[step])
    assert report["list_rules"]["found"]
    if before["pid"] == 0:
        assert report["set_pid"]["ok"], report["set_pid"]
        # The daemon's copy has nlmsg_len without the 16-byte header; the multicast copy has it.
        assert report["unicast_record"]["ok"], report["unicast_record"]
        assert report["multicast_record"]["ok"], report["multicast_record"]
        assert report["multicast_record"]["nlmsg_len"] == report["unicast_record"]["nlmsg_len"] + 16


def test_result_dir_comes_back(cli, image, tmp_path):
    script = (
        "import json, os; "
        "p = os.path.join(os.environ['KAUDIT_RESULTS'], 'verdict.json'); "
        "json.dump({'pid': os.getpid(), 'ok': True}, open(p, 'w'))"
    )
    result = container.run(["python3", "-c", script], image=image, cli=cli, result_dir=tmp_path, timeout=120)
    assert result.exit_code == 0, result.stderr
    assert result.result_dir == tmp_path.resolve()
    data = json.loads((tmp_path / "verdict.json").read_text())
    assert data["ok"] is True and data["pid"] > 1


def test_temporary_result_dir_is_made_when_none_is_given(cli, image):
    result = container.run(["sh", "-c", "echo made > /results/out.txt"], image=image, cli=cli, timeout=120)
    try:
        assert (result.result_dir / "out.txt").read_text() == "made\n"
    finally:
        for f in result.result_dir.iterdir():
            f.unlink()
        result.result_dir.rmdir()


def test_container_removed_after_success(cli, image, tmp_path):
    result = container.run(["true"], image=image, cli=cli, timeout=120, result_dir=tmp_path)
    assert result.exit_code == 0
    assert mine(cli) == []


def test_container_removed_after_failure_with_output_kept(cli, image, tmp_path):
    result = container.run(["sh", "-c", "echo to-out; echo to-err >&2; exit 7"], image=image, cli=cli,
                           timeout=120, result_dir=tmp_path)
    assert (result.exit_code, result.stdout, result.stderr) == (7, "to-out\n", "to-err\n")
    assert not result.ok
    assert mine(cli) == []


def test_container_removed_after_timeout(cli, image, tmp_path):
    started = time.monotonic()
    with pytest.raises(container.ContainerTimeout) as info:
        container.run(["sh", "-c", "echo started; sleep 60"], image=image, cli=cli, timeout=3, result_dir=tmp_path)
    assert time.monotonic() - started < 30
    assert info.value.stdout == "started\n"
    assert "longer than 3s" in str(info.value)
    assert mine(cli) == []


def test_container_removed_after_start_failure(cli, image):
    before = set(Path(tempfile.gettempdir()).glob("kaudit-results-*"))
    with pytest.raises(container.ContainerError, match="could not start"):
        container.run(["/no/such/program"], image=image, cli=cli, timeout=60)
    assert mine(cli) == []
    # The temporary results folder it made was never handed out, so it is gone too.
    assert set(Path(tempfile.gettempdir()).glob("kaudit-results-*")) - before == set()


def test_container_removed_after_keyboard_interrupt(cli, image, tmp_path):
    """SIGINT to the process waiting on the container: KeyboardInterrupt path removes it."""
    code = (
        "import sys; from simulator import container; "
        f"container.run(['sh', '-c', 'touch /results/running; sleep 60'], image={image!r}, "
        f"result_dir={str(tmp_path)!r}, timeout=120)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "running").exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the container never started"
            time.sleep(0.1)
        owner = f"kaudit-{proc.pid}-"
        assert any(n.startswith(owner) for n in kaudit_containers(cli))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "KeyboardInterrupt" in err
    assert not any(n.startswith(owner) for n in kaudit_containers(cli))


def test_leftover_of_a_dead_run_is_removed(cli, image):
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that existed and is gone
    leftover = cli.containers.create(
        image, ["sleep", "60"], name=f"kaudit-leftover-{os.getpid()}",
        labels={container.LABEL: "1", container.OWNER_LABEL: f"{os.uname().nodename}:{dead.pid}"},
        network_mode="none",
    )
    try:
        leftover.start()
        assert leftover.name in container.remove_leftovers(cli)
        assert leftover.name not in kaudit_containers(cli)
    finally:
        try:
            leftover.remove(force=True)
        except Exception:
            pass


def test_privileged_is_an_option_that_fails_clearly_where_the_host_forbids_it(cli, image, tmp_path):
    try:
        result = container.run(["true"], image=image, cli=cli, privileged=True, timeout=60, result_dir=tmp_path)
    except container.ContainerError as exc:
        # On hosts whose capability bounding set lacks a capability (this VM: CAP_SYS_RESOURCE).
        assert "unable to apply caps" in str(exc) and "default capability set" in str(exc)
    else:
        assert result.exit_code == 0
    assert mine(cli) == []


def test_workload_caps_can_make_a_network_namespace(cli, image, tmp_path):
    script = (
        "from pyroute2 import netns; n = 'kaudit-capcheck'; netns.create(n); "
        "print(n in netns.listnetns()); netns.remove(n)"
    )
    with_caps = container.run(["python3", "-c", script], image=image, cli=cli,
                              cap_add=container.WORKLOAD_CAPS, timeout=120, result_dir=tmp_path)
    assert with_caps.exit_code == 0, with_caps.stderr
    assert with_caps.stdout.strip() == "True"
    without = container.run(["python3", "-c", script], image=image, cli=cli, timeout=120, result_dir=tmp_path)
    assert without.exit_code != 0
    assert "PermissionError" in without.stderr
