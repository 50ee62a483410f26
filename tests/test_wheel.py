"""The release: ``python -m build`` makes an sdist and a wheel (the wheel built from the sdist),
both carry every file of the package, and the wheel installed into a fresh virtual environment
runs ``recforge quickstart --reduced`` from outside the source tree.

The fresh environment gets recforge from the wheel alone (``pip install --no-deps``); its
third-party dependencies are those already installed in the interpreter running the tests,
reached through a ``.pth`` line naming that site-packages folder. A ``.pth`` line adds a folder
to ``sys.path`` without running the ``.pth`` files inside it, so the editable install of the
source tree stays invisible, and the test checks that ``recforge`` is imported from the
environment. Offline and fast: nothing is downloaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import require_module

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "recforge"


def run(args: list[str], cwd: Path, timeout: int = 600,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def package_files() -> set[str]:
    """Every file of the package that a release must carry, relative to ``src``: the files git
    tracks under ``src/recforge`` (modules and data files), byte code left out."""
    listed = run(["git", "ls-files", "--", "src/recforge"], cwd=ROOT).stdout.split()
    return {Path(name).relative_to("src").as_posix() for name in listed
            if not name.endswith(".pyc") and (ROOT / name).is_file()}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build`` output: the sdist, then the wheel built from it (no isolation: the
    build backend of this environment, nothing downloaded; the dependency check is skipped
    because setuptools >= 70.1 builds wheels without the ``wheel`` package that
    pyproject.toml also lists)."""
    require_module("build")
    require_module("setuptools")
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--no-isolation", "--skip-dependency-check",
         "--outdir", str(out), str(ROOT)],
        cwd=out)
    return out


def only(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, f"{pattern}: {found}"
    return found[0]


def test_wheel_and_sdist_carry_every_package_file(dist: Path) -> None:
    import recforge

    wheel = only(dist, f"recforge-{recforge.__version__}-py3-none-any.whl")
    sdist = only(dist, f"recforge-{recforge.__version__}.tar.gz")
    expected = package_files()
    assert {"recforge/experiments/quickstart_reduced.toml",
            "recforge/data/checksums.json"} <= expected
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert sorted(expected - in_wheel) == []
    prefix = f"recforge-{recforge.__version__}/src/"
    with tarfile.open(sdist) as archive:
        in_sdist = {name[len(prefix):] for name in archive.getnames() if name.startswith(prefix)}
    assert sorted(expected - in_sdist) == []


def test_wheel_installs_and_runs_the_reduced_quickstart(dist: Path, tmp_path: Path) -> None:
    import recforge

    wheel = only(dist, "recforge-*.whl")
    env_dir = tmp_path / "env"
    run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], cwd=tmp_path)
    python = env_dir / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                    cwd=tmp_path).stdout.strip())
    (site / "_recforge_test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "--no-compile", "--quiet", str(wheel)], cwd=tmp_path)

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["VIRTUAL_ENV"] = str(env_dir)
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}"
    work = tmp_path / "work"
    work.mkdir()
    where = run([str(python), "-c", "import recforge; print(recforge.__file__)"],
                cwd=work, env=env).stdout.strip()
    assert Path(where).is_relative_to(env_dir), where  # the wheel's copy, not the source tree
    version = run([str(env_dir / "bin" / "recforge"), "--version"], cwd=work, env=env)
    assert version.stdout.strip() == f"recforge {recforge.__version__}"
    done = run([str(env_dir / "bin" / "recforge"), "quickstart", "--reduced", "--out", "qs"],
               cwd=work, env=env)
    assert "report:" in done.stdout
    assert (work / "qs" / "report.html").stat().st_size > 0
    assert (work / "qs" / "summary.json").stat().st_size > 0
