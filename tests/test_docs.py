"""The documentation stays true: it cites nothing outside the repository, its links lead
somewhere, and the exit codes it promises are the ones the code returns."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from batchrun import stats


def repository_root() -> Path:
    here = Path(__file__).resolve().parent
    return next(folder for folder in (here, *here.parents) if (folder / "pyproject.toml").is_file())


ROOT = repository_root()
# The contract once lived in a file outside the repository; built up so this file does not cite it.
OUTSIDE_CONTRACT = [("SPEC" + ".md").encode(), ("SPEC" + " §").encode()]


def repository_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "pyproject.toml"]
    for folder in ("batchrun", "tests", "scripts", "samples", "docs"):
        files += [path for path in (ROOT / folder).rglob("*") if path.is_file() and "__pycache__" not in path.parts]
    return files


def test_no_file_cites_the_contract_from_outside_the_repository() -> None:
    citing = [f"{path.relative_to(ROOT)}:{n}" for path in repository_files()
              for n, line in enumerate(path.read_bytes().splitlines(), 1)
              if any(needle in line for needle in OUTSIDE_CONTRACT)]
    assert citing == []


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    text = _FENCE.sub("", document.read_text(encoding="utf-8"))
    return {anchor(heading) for heading in re.findall(r"^#+\s+(.+?)\s*$", text, re.MULTILINE)}


def test_every_relative_link_in_the_docs_leads_to_a_file_and_heading_that_exist() -> None:
    broken = []
    for document in documents():
        for target in _LINK.findall(_FENCE.sub("", document.read_text(encoding="utf-8"))):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
                continue
            path, _, fragment = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            if not linked.exists() or (fragment and linked.suffix == ".md" and fragment not in anchors(linked)):
                broken.append(f"{document.relative_to(ROOT)}: {target}")
    assert broken == []


_DOCS_FILE = re.compile(rb"docs/[\w.-]+\.md")
_SECTION = re.compile(rb'(README|docs/[\w.-]+\.md), "([^"]+)"')


def test_every_doc_and_section_the_repository_points_at_exists() -> None:
    """Code and tests point at the docs by file name, or by README or a docs file's name, a comma
    and a heading in double quotes: the file and the heading must be there."""
    missing = []
    for path in repository_files():
        for n, line in enumerate(path.read_bytes().splitlines(), 1):
            named = [(ROOT / name.decode(), "") for name in _DOCS_FILE.findall(line)]
            named += [(ROOT / ("README.md" if name == b"README" else name.decode()), section.decode())
                      for name, section in _SECTION.findall(line)]
            if any(not doc.is_file() or (section and anchor(section) not in anchors(doc)) for doc, section in named):
                missing.append(f"{path.relative_to(ROOT)}:{n}: {line.decode(errors='replace').strip()}")
    assert missing == []


# What the contract must say of each exit code: a code added to the program needs its row.
EXIT_MEANINGS = {
    "EXIT_OK": "every line succeeded",
    "EXIT_FAILED_LINES": "some lines failed",
    "EXIT_USAGE": "nothing was sent",
    "EXIT_BUDGET": "stopped by the budget",
    "EXIT_STOPPED": "stopped early",
}


def contract_exit_codes() -> dict[int, str]:
    """The rows of the table in the contract's "Exit codes" section: code → meaning."""
    text = (ROOT / "docs" / "contract.md").read_text(encoding="utf-8")
    section = text.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    return {int(code): meaning for code, meaning in re.findall(r"^\| (\d+) \| (.+) \|$", section, re.MULTILINE)}


def test_the_exit_codes_in_the_contract_are_the_ones_the_code_returns() -> None:
    constants = {name: value for name, value in vars(stats).items() if name.startswith("EXIT_")}
    assert set(constants) == set(EXIT_MEANINGS)
    table = contract_exit_codes()
    assert sorted(table) == sorted(constants.values())
    assert {name: EXIT_MEANINGS[name] in table[value] for name, value in constants.items()} == dict.fromkeys(
        constants, True)


# PyPI's `batchrun` is another project: an install line names this one's distribution, or the checkout.
_DISTRIBUTION = re.search(r'^name = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.MULTILINE)
_BARE_EXTRAS = re.compile(rb"(?<![\w.-])batchrun\[")
_PIP_INSTALL = re.compile(rb"pip install((?: +[^\s;&|)#]+)+)")


def test_every_install_line_names_this_distribution_and_not_pypis_batchrun() -> None:
    assert _DISTRIBUTION is not None and _DISTRIBUTION[1] != "batchrun"
    wrong = []
    for path in repository_files():
        for n, line in enumerate(path.read_bytes().splitlines(), 1):
            words = [word.strip(b"'\"`") for match in _PIP_INSTALL.findall(line) for word in match.split()]
            if _BARE_EXTRAS.search(line) or b"batchrun" in words:
                wrong.append(f"{path.relative_to(ROOT)}:{n}: {line.decode(errors='replace').strip()}")
    assert wrong == []


def test_every_page_under_docs_is_in_the_site_nav_and_every_nav_entry_is_a_page() -> None:
    listed = re.findall(r"^\s*- [^:\n]+: ([\w.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), re.MULTILINE)
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted(path.name for path in (ROOT / "docs").glob("*.md"))


def test_the_site_builds_strictly_offline(tmp_path: Path) -> None:
    """What CI runs: a warning (a broken link or anchor, a page outside the nav) fails the build."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                           cwd=ROOT, capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "contract" / "index.html").is_file()
    # Read offline too: no page loads a script or a stylesheet from elsewhere (the theme's highlight.js CDN).
    fetching = [f"{page.relative_to(tmp_path)}: {url}" for page in (tmp_path / "site").rglob("*.html")
                for url in re.findall(r'(?:src|href)="(https?://[^"]+\.(?:js|css))"', page.read_text(encoding="utf-8"))]
    assert fetching == []


# How docs/design.md begins and ends its list of the modules tested whole.
_TESTED_WHOLE = re.compile(r"have no unit file of their own(.*?)`tests/test_docs\.py` keeps this list\s+exact", re.DOTALL)


def modules_tested_whole() -> set[str]:
    """The modules docs/design.md says are tested whole, by their path under ``batchrun/``."""
    found = _TESTED_WHOLE.search((ROOT / "docs" / "design.md").read_text(encoding="utf-8"))
    assert found is not None, "docs/design.md no longer lists the modules tested whole"
    return {name for name in re.findall(r"`([\w/]+\.py)`", found[1]) if not name.startswith(("tests/", "test_"))}


def unit_files(module: Path) -> list[Path]:
    """``batchrun/disk/checkpoint.py`` → ``tests/unit/disk/test_checkpoint.py``, and the files
    of a module tested topic by topic (``test_checkpoint_<topic>.py``)."""
    folder = ROOT / "tests" / "unit" / module.parent.relative_to(ROOT / "batchrun")
    return [*folder.glob(f"test_{module.stem}.py"), *folder.glob(f"test_{module.stem}_*.py")]


def test_every_module_has_its_unit_file_or_is_documented_as_tested_whole() -> None:
    whole = modules_tested_whole()
    modules = {path.relative_to(ROOT / "batchrun").as_posix(): path for path in (ROOT / "batchrun").rglob("*.py")
               if path.name not in ("__init__.py", "__main__.py")}
    assert sorted(whole - set(modules)) == []  # no module listed that is not there
    assert sorted(name for name in whole if unit_files(modules[name])) == []  # nor one that has its unit file now
    assert sorted(name for name, path in modules.items() if name not in whole and not unit_files(path)) == []
