"""The package as the Docker image installs it: the wheel, built from the repo, installed
into a fresh virtualenv outside the repo (pinned runtime dependencies from
requirements-runtime.lock, like the Dockerfile), carries every Lua script, template and
schema the services read at run time, and both console scripts start and reach Kafka and
Redis from it. The editable install of `make setup` hides a missing package-data entry."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import KAFKA, REDIS_URL, durability_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DATA_SUFFIXES = {".lua", ".txt", ".json"}


def _package_data() -> list[tuple[str, str]]:
    """(package, relative path) of every data file the services and libs ship."""
    out = []
    for top in ("services", "libs"):
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix in DATA_SUFFIXES and "__pycache__" not in path.parts:
                package = path.relative_to(ROOT / top).parts[0]
                out.append((package, str(path.relative_to(ROOT / top / package))))
    return out


def _run(*cmd: str | Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=600, check=False, **kw
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv outside the repo with the built wheel installed; its bin folder."""
    work = tmp_path_factory.mktemp("wheel")
    # From a clean copy: a `build/` folder left in the repo would lend the wheel stale files.
    source = work / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for part in ("services", "libs"):
        shutil.copytree(ROOT / part, source / part, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", work, source)
    assert built.returncode == 0, built.stderr
    (wheel,) = work.glob("simwatch-*.whl")
    venv = work / "venv"
    assert _run(sys.executable, "-m", "venv", venv).returncode == 0
    pip = venv / "bin" / "pip"
    lock = ROOT / "requirements-runtime.lock"
    deps = _run(pip, "install", "-q", "--require-hashes", "-r", lock)
    assert deps.returncode == 0, deps.stderr[-2000:]
    own = _run(pip, "install", "-q", "--no-deps", wheel)
    assert own.returncode == 0, own.stderr[-2000:]
    return venv / "bin"


def test_the_wheel_carries_every_script_template_and_schema(installed: Path) -> None:
    files = _package_data()
    assert any(p.endswith(".lua") for _, p in files) and any("templates" in p for _, p in files)
    probe = (
        "import sys, importlib.resources as r\n"
        "missing = [f'{p}/{f}' for p, f in (l.split(' ', 1) for l in sys.stdin.read().split('\\n'))"
        " if not r.files(p).joinpath(f).is_file()]\n"
        "print('\\n'.join(missing)); sys.exit(1 if missing else 0)\n"
    )
    listing = "\n".join(f"{p} {f}" for p, f in files)
    result = _run(installed / "python", "-c", probe, input=listing, cwd="/")
    assert result.returncode == 0, f"missing from the wheel:\n{result.stdout}{result.stderr}"


def test_both_services_start_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    env = {
        "PATH": f"{installed}:{os.environ['PATH']}",
        "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
        "REDIS_URL": REDIS_URL if "cluster" not in REDIS_URL else "redis://127.0.0.1:6379/15",
        "NOTIFIER_GROUP_ID": "packaging-check",
        "USAGE_MONITOR_CREATE_TOPICS": "false",
    }
    # The strongest level this server confirms (Debian's Redis 7.0 lacks WAITAOF).
    level = durability_for(env["REDIS_URL"])
    env |= {"USAGE_MONITOR_DURABILITY": level, "NOTIFIER_DURABILITY": level}
    # Outside the repo, so nothing is imported from the source tree.
    monitor = _run(installed / "usage-monitor", "check", env=env, cwd=tmp_path)
    assert monitor.returncode == 0, monitor.stdout + monitor.stderr
    notifier = _run(installed / "notifier", "--check", env=env, cwd=tmp_path)
    assert notifier.returncode == 0, notifier.stdout + notifier.stderr
