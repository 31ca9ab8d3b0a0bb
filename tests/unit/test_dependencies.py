"""Dependencies: floors past known advisories, every imported package declared, and a lock
with hashes that `make setup` installs and that still satisfies pyproject.toml."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK = ROOT / "requirements.lock"


def requirements(extra: bool = True) -> dict[str, Requirement]:
    project = PYPROJECT["project"]
    lines = project["dependencies"] + (project["optional-dependencies"]["dev"] if extra else [])
    reqs = [Requirement(line) for line in lines]
    return {canonicalize_name(r.name): r for r in reqs}


def locked() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", LOCK.read_text(), re.MULTILINE)
    return {canonicalize_name(name): version for name, version in pins}


@pytest.mark.parametrize(
    ("name", "vulnerable"),
    [
        ("h11", "0.15.0"),  # request smuggling (2025)
        ("httpcore", "1.0.8"),  # pins h11 < 0.16
        ("orjson", "3.9.14"),  # recursion crash on deeply nested input
        ("aiohttp", "3.12.13"),  # request smuggling
    ],
)
def test_floors_exclude_versions_with_known_advisories(name: str, vulnerable: str) -> None:
    req = requirements(extra=False).get(name)
    assert req is not None, f"{name} is not declared"
    assert not req.specifier.contains(vulnerable), f"{name}{req.specifier} allows {vulnerable}"


def _imported_top_level(folder: Path) -> set[str]:
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def test_every_package_the_services_import_is_declared() -> None:
    own = {"usage_monitor", "notifier", "simwatch_contracts", "simwatch_runtime"}
    modules = _imported_top_level(ROOT / "services") | _imported_top_level(ROOT / "libs")
    third_party = modules - own - set(sys.stdlib_module_names) - {"__future__"}
    providers = importlib.metadata.packages_distributions()
    declared = set(requirements(extra=False))
    undeclared = {
        m for m in third_party if not {canonicalize_name(d) for d in providers[m]} & declared
    }
    assert not undeclared, f"imported but not in [project.dependencies]: {sorted(undeclared)}"


def assert_pinned_with_hashes(text: str) -> None:
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    assert blocks
    for block in blocks:
        assert "==" in block and "--hash=sha256:" in block, block[:120]


def test_the_lock_pins_everything_with_hashes_and_satisfies_pyproject() -> None:
    assert_pinned_with_hashes(LOCK.read_text())
    pins = locked()
    for name, req in requirements().items():
        if req.marker is not None and not req.marker.evaluate():
            continue
        assert name in pins, f"{name} is missing from requirements.lock: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock has {name}=={pins[name]}, pyproject wants {req.specifier}: "
            "run `make lock`"
        )


def test_setup_installs_from_the_lock_and_is_redone_when_it_changes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    stamp = re.search(r"^\$\(STAMP\):(.*)$", makefile, re.MULTILINE)
    assert stamp is not None and "$(LOCK)" in stamp.group(1)
    assert "--require-hashes -r $(LOCK)" in makefile and "--no-deps -e ." in makefile
    assert re.search(r"^lock:", makefile, re.MULTILINE)
    assert "--generate-hashes" in makefile


def test_the_images_runtime_lock_is_the_same_pins_without_the_dev_tools() -> None:
    runtime_text = (ROOT / "requirements-runtime.lock").read_text()
    runtime = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", runtime_text, re.MULTILINE))
    runtime = {canonicalize_name(k): v for k, v in runtime.items()}
    full = locked()
    assert runtime and all(full.get(name) == v for name, v in runtime.items())
    assert set(requirements(extra=False)) - {"uvloop"} <= set(runtime) | {"uvloop"}
    assert not {"pytest", "mypy", "ruff", "uv"} & set(runtime)
    assert_pinned_with_hashes(runtime_text)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements-runtime.lock" in dockerfile
