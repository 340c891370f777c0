"""pytest plugin: every scenario file is a test item (``pytest scenarios/``, ``-n auto`` too).

Registered through the ``pytest11`` entry point, so an installed kaudit makes pytest collect
scenario files anywhere without a conftest. Which YAML files are scenarios: every ``.yaml``
/ ``.yml`` under a directory named ``scenarios``, and any other YAML file with a top-level
``messages:`` key. A file that does not load still becomes an item, and fails with the
loader's ``file:line: problem``, so a broken scenario is never silently skipped.

Each item loads, runs and compares its scenario in the worker that runs it (the item's
state is just the path), which is what lets pytest-xdist spread the items over processes.
On a mismatch the failure text is the same row diff ``kaudit check`` prints.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

_TOP_MESSAGES = re.compile(r"^messages\s*:", re.M)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kaudit", "kaudit scenario files")
    group.addoption(
        "--kaudit-no-scenarios",
        action="store_true",
        default=False,
        help="do not collect kaudit scenario files as tests",
    )


def _is_scenario_file(path: Path) -> bool:
    if path.suffix.lower() not in (".yaml", ".yml"):
        return False
    if "scenarios" in path.parent.parts:
        return True
    try:
        head = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return bool(_TOP_MESSAGES.search(head))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if parent.config.getoption("kaudit_no_scenarios", default=False):
        return None
    if _is_scenario_file(file_path):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    """One scenario file: one item named after the scenario."""

    def collect(self):  # noqa: ANN201 - pytest's signature
        name = self.path.stem
        try:
            from .scenario import load_scenario

            name = load_scenario(self.path).name
        except Exception:  # noqa: BLE001 - the item reports the problem when it runs
            pass
        yield ScenarioItem.from_parent(self, name=name)


class ScenarioFailed(Exception):
    """A scenario that did not produce what it expects; the message is the row diff."""


class ScenarioItem(pytest.Item):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_marker(pytest.mark.kaudit_scenario)
        self.outcome = None

    def runtest(self) -> None:
        from .check import check_one

        outcome = check_one(self.path)
        self.outcome = outcome
        self.user_properties.append(("rows_expected", outcome.expected))
        self.user_properties.append(("rows_got", outcome.got))
        if not outcome.ok:
            head = f"{outcome.name}: {outcome.verdict}, rows expected {outcome.expected}, got {outcome.got}"
            raise ScenarioFailed(f"{head}\n{outcome.diff}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:  # noqa: ANN401
        if isinstance(excinfo.value, ScenarioFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, 0, f"scenario: {self.name}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kaudit_scenario: a kaudit scenario file run as a test")
