"""Real auditctl rule payloads (go-libaudit's goldens) in the real kernel and in the simulator:
the same answer to every AUDIT_ADD_RULE, the same AUDIT_LIST_RULES bytes, the same deletes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from collector.transport import KernelError, Transport, open_transport
from simulator.endpoint import EndpointServer
from simulator.kernel import F as FIELDS
from simulator.kernel import KernelRule

ADD, DEL, LIST = 1011, 1012, 1013
FILES = sorted(p.name for p in (Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "go-libaudit"
                                / "rules").glob("*.golden.yml"))


def answer(t: Transport, mtype: int, payload: bytes) -> int:
    try:
        t.request(mtype, payload)
    except KernelError as exc:
        return -exc.errno
    return 0


@pytest.fixture
def audit_test_paths():
    """The corpus rules watch paths under /tmp/audit-test: create their parents for both sides."""
    created = not os.path.exists("/tmp/audit-test")
    yield
    if created:
        shutil.rmtree("/tmp/audit-test", ignore_errors=True)


@pytest.mark.live
@pytest.mark.parametrize("name", FILES or ["(corpus absent)"])
def test_corpus_rules_behave_the_same_in_kernel_and_simulator(name: str, corpus: Path, live_audit,
                                                              audit_test_paths, tmp_path_factory) -> None:
    yaml = pytest.importorskip("yaml")
    rules = [r["bytes"] for r in yaml.safe_load((corpus / "go-libaudit" / "rules" / name).read_text())["rules"]]
    probe = live_audit.simulator()
    for payload in rules:  # make the watched paths exist, as go-libaudit's own test does
        rule = probe._parse_rule(payload)
        if isinstance(rule, KernelRule):
            for f in rule.fields:
                path = (f.text or b"").decode()
                if f.type == FIELDS["DIR"] and path.startswith("/tmp/audit-test"):
                    os.makedirs(path, exist_ok=True)
                elif f.type in (FIELDS["WATCH"], FIELDS["EXE"]) and path.startswith("/tmp/audit-test"):
                    os.makedirs(os.path.dirname(path), exist_ok=True)
    server = EndpointServer(live_audit.simulator())
    server.listen(os.path.join(str(tmp_path_factory.mktemp("corpus")), "s"))
    server.start()
    try:
        with open_transport("kernel") as kt, open_transport(server.endpoint) as st:
            added = []
            for i, payload in enumerate(rules):
                k, s = answer(kt, ADD, payload), answer(st, ADD, payload)
                assert k == s, f"{name} rule {i}: kernel {k}, simulator {s}"
                if k == 0:
                    added.append(payload)
            assert added, f"{name}: the kernel accepted none of its rules"
            k_list = [m.payload for m in kt.request(LIST)]
            s_list = [m.payload for m in st.request(LIST)]
            assert k_list == s_list
            for payload in reversed(k_list):
                assert answer(kt, DEL, payload) == answer(st, DEL, payload)
            assert [m.payload for m in kt.request(LIST)] == [m.payload for m in st.request(LIST)]
    finally:
        server.stop()
