"""Every file a comment or README points a reader to is in the repository."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import REPO_ROOT

_TOP = ("docs", "services", "shared", "tools", "deploy", "scripts", "tests", "bench")
_PATH = re.compile(
    r"(?<![\w./-])((?:" + "|".join(_TOP) + r")/[\w./-]*[\w-]\.(?:md|py|lua|ya?ml|json|sh|html|txt))"
)
_DOCUMENTS = re.compile(
    r"(?<![\w./-])((?:[\w.-]+/)*(?:SPEC|STYLE|codex-backend-protocol|reliability-security|peers)\.md)"
)
_SUFFIXES = (".py", ".lua", ".md", ".yaml", ".yml", ".html", ".sh", ".toml", ".txt")


def _sources() -> list[str]:
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [
        name
        for name in tracked
        if not name.startswith("docs/")
        and (name.endswith(_SUFFIXES) or name.rsplit("/", 1)[-1] in ("Dockerfile", "Makefile"))
        and (REPO_ROOT / name).is_file()
    ]


def test_paths_named_in_sources_and_readmes_exist() -> None:
    missing = []
    for name in _sources():
        text = (REPO_ROOT / name).read_text(errors="replace")
        for match in _PATH.findall(text):
            if "*" not in match and not (REPO_ROOT / match).exists():
                missing.append(f"{name}: {match}")
    assert not missing, "\n".join(missing)


def test_design_documents_are_cited_by_their_place_in_the_repository() -> None:
    wrong = []
    for name in _sources():
        text = (REPO_ROOT / name).read_text(errors="replace")
        for match in _DOCUMENTS.findall(text):
            if not (REPO_ROOT / match).is_file():
                wrong.append(f"{name}: {match}")
    assert not wrong, "\n".join(wrong)
