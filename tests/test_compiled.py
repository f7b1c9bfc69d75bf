"""The compiled build (setup.py, ``BATCHRUN_MYPYC=1``) builds, imports its compiled modules, and
runs: every module setup.py names compiles with mypyc, and a run of the samples on the
simulator answers every line as the pure build does. A module that stops compiling, or whose
compiled form behaves otherwise, fails here rather than in a user's install.

It compiles about thirty modules: a CPU minute or two."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("mypyc", reason="the compiled build needs mypy's mypyc (the test extra has it)")


@pytest.fixture(scope="module")
def compiled_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("compiled")
    shutil.copytree(ROOT / "batchrun", tree / "batchrun", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    shutil.copy(ROOT / "setup.py", tree)
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree,
                           capture_output=True, text=True, env={**os.environ, "BATCHRUN_MYPYC": "1"})
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return tree


def _python(tree: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_the_modules_setup_names_are_the_ones_imported_compiled(compiled_tree: Path) -> None:
    names = _python(compiled_tree, "-c", "import setup; print('\\n'.join(setup.COMPILED))", cwd=compiled_tree)
    assert names.returncode == 0, names.stderr
    modules = ["batchrun." + name.removesuffix(".py").replace("/", ".") for name in names.stdout.split()]
    assert "batchrun.engine.pool" in modules and "batchrun.reader" in modules
    check = ("import importlib, sys\n"
             "for name in sys.argv[1:]:\n"
             "    print(name, importlib.import_module(name).__file__)\n")
    found = _python(compiled_tree, "-c", check, *modules, cwd=compiled_tree)
    assert found.returncode == 0, found.stderr
    files = dict(line.split(" ", 1) for line in found.stdout.splitlines())
    assert all(files[name].endswith(".so") for name in modules), files


def test_a_run_on_the_compiled_build_answers_every_line(compiled_tree: Path, tmp_path: Path) -> None:
    shutil.copy(ROOT / "samples" / "chat.jsonl", tmp_path / "chat.jsonl")
    run = _python(compiled_tree, "-m", "batchrun", "run", "chat.jsonl", "--mock", "-q", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = [orjson.loads(line) for line in (tmp_path / "chat.results.jsonl").read_bytes().splitlines()]
    sent = [orjson.loads(line)["custom_id"] for line in (tmp_path / "chat.jsonl").read_bytes().splitlines() if line.strip()]
    assert [line["custom_id"] for line in lines] == sent
    assert all(line["error"] is None and line["response"]["status_code"] == 200 for line in lines)
    report = orjson.loads((tmp_path / "chat.results.report.json").read_bytes())
    assert report["requests"]["succeeded"] == len(sent)
