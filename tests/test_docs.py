"""The documentation cannot rot silently: its examples run, its code compiles, its site builds.

Every ```python block in ``docs/*.md`` is either included from a file under ``examples/`` (with
``pymdownx.snippets``) or compiled here. The example programs are run in subprocesses, as a
user would run them, and the testing example is run with pytest.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

import leaderelect
from leaderelect.testing import LeaseApiServer

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"

PAGES = sorted(DOCS.glob("*.md"))
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.py"))

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
_SNIPPET = re.compile(r'^\s*-{1,}8<-{1,}\s+"(?P<target>[^"]+)"\s*$')
_SECTION_START = "# --8<-- [start:{}]"
_SECTION_END = "# --8<-- [end:{}]"


def _python_blocks(page: Path) -> list[tuple[int, str]]:
    """``(line number, code)`` of each fenced python block of ``page``."""
    blocks: list[tuple[int, str]] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        info = match["info"].strip().split()
        language = info[0].lower() if info else ""
        start = index
        indent, fence = match["indent"], match["fence"]
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != fence:
            body.append(lines[index].removeprefix(indent))
            index += 1
        index += 1
        if language in ("python", "py", "python3"):
            blocks.append((start + 1, "\n".join(body)))
    return blocks


def _all_blocks() -> list[tuple[str, str]]:
    return [(f"{page.name}:{line}", code) for page in PAGES for line, code in _python_blocks(page)]


def _run(
    args: list[str], *, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _explain(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


# --------------------------------------------------------------------------------------------
# Code in the pages
# --------------------------------------------------------------------------------------------


def test_the_pages_have_python_blocks() -> None:
    assert PAGES, "no docs/*.md found"
    assert len(_all_blocks()) >= 5


@pytest.mark.parametrize(("where", "code"), _all_blocks(), ids=[w for w, _ in _all_blocks()])
def test_every_python_block_is_an_included_example_or_compiles(where: str, code: str) -> None:
    lines = [line for line in code.splitlines() if line.strip()]
    snippets = [_SNIPPET.match(line) for line in lines]
    if lines and all(snippets):
        for match in snippets:
            assert match is not None
            path, _, section = match["target"].partition(":")
            assert path.startswith("examples/"), f"{where}: include {path} is not under examples/"
            source = (ROOT / path).read_text(encoding="utf-8")
            if section and not section[0].isdigit():
                assert _SECTION_START.format(section) in source, f"{where}: no {match['target']}"
                assert _SECTION_END.format(section) in source, f"{where}: {section} never ends"
        return
    assert not any(snippets), f"{where}: mixes included and inline code"
    # A mangled include (a formatter once rewrote one as `--8 < --"x"`) is valid Python.
    assert not any(line.lstrip().startswith("--8") for line in lines), f"{where}: bad include"
    compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=[p.name for p in EXAMPLE_FILES])
def test_every_example_compiles(example: Path) -> None:
    compile(example.read_text(encoding="utf-8"), str(example), "exec", dont_inherit=True)


def test_every_snippet_section_is_closed_and_unique() -> None:
    for example in EXAMPLE_FILES:
        source = example.read_text(encoding="utf-8")
        starts = re.findall(r"# --8<-- \[start:([\w-]+)\]", source)
        ends = re.findall(r"# --8<-- \[end:([\w-]+)\]", source)
        assert sorted(starts) == sorted(ends), f"{example.name}: unbalanced sections"
        assert len(starts) == len(set(starts)), f"{example.name}: a section name repeats"


def test_every_public_name_is_in_the_reference() -> None:
    import leaderelect.testing as testing

    documented = set()
    for page in ("reference.md", "errors.md"):
        text = (DOCS / page).read_text(encoding="utf-8")
        documented |= set(re.findall(r"^::: ([\w.]+)\s*$", text, flags=re.MULTILINE))
    public = {f"leaderelect.{name}" for name in leaderelect.__all__ if name != "__version__"}
    public |= {f"leaderelect.testing.{name}" for name in testing.__all__}
    missing = sorted(public - documented)
    assert not missing, f"public names missing from docs/reference.md and docs/errors.md: {missing}"
    stale = sorted(name for name in documented if name not in public)
    assert not stale, f"documented names that are not public: {stale}"


# --------------------------------------------------------------------------------------------
# The examples run
# --------------------------------------------------------------------------------------------


def test_quickstart_runs_three_terms_in_turn() -> None:
    done = _run([sys.executable, "examples/quickstart.py"])
    assert done.returncode == 0, _explain(done)
    lines = done.stdout.splitlines()
    leads = [re.fullmatch(r"(alice|bob|carol) leads, fencing token (\d+)", line) for line in lines]
    terms = [(m[1], m[2]) for m in leads if m is not None]
    assert [token for _, token in terms] == ["0", "1", "2"], _explain(done)
    assert sorted(name for name, _ in terms) == ["alice", "bob", "carol"]
    for name, _ in terms:
        assert f"{name} stepped down and released the lease" in lines
    assert lines[-1] == "holder at the end: ''"


def test_leading_patterns_run() -> None:
    done = _run([sys.executable, "examples/leading.py"])
    assert done.returncode == 0, _explain(done)
    out = done.stdout
    expected = [
        r"^observed leader: demo$",
        r"^demo leads default/patterns, token [0-9a-f-]+:0$",
        r"^applying 'scale to 3' under token [0-9a-f-]+:1$",
        r"^started leading with token [0-9a-f-]+:2$",
        r"^leader is now demo$",
        r"^stopped leading$",
        r"^leader is now None$",
        r"^lost leadership: RENEW_DEADLINE$",
        r"^term 5 ended, released: True$",
        r"^after SIGTERM the holder is ''$",
    ]
    for pattern in expected:
        assert re.search(pattern, out, flags=re.MULTILINE), f"{pattern}\n{_explain(done)}"


def test_testing_example_passes_under_pytest() -> None:
    done = _run(
        [
            sys.executable,
            "-m",
            "pytest",
            "examples/testing_example.py",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        timeout=90,
    )
    assert done.returncode == 0, _explain(done)
    assert re.search(r"\b4 passed\b", done.stdout), _explain(done)


async def test_hello_example_leads_and_releases_on_ctrl_c(
    leaderelect_server: LeaseApiServer,
) -> None:
    kubeconfig = str(leaderelect_server.kubeconfig())
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONUNBUFFERED": "1"}
    with anyio.fail_after(30):
        async with await anyio.open_process(
            [sys.executable, "examples/hello.py"], cwd=ROOT, env=env
        ) as process:
            assert process.stdout is not None
            first = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 4096)
            assert first.decode().startswith("leading with fencing token "), first
            process.send_signal(signal.SIGINT)
            await process.wait()
    lease = leaderelect_server.lease("default", "my-controller")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "", "Ctrl-C did not release the lease"


def test_fencing_example_rejects_the_late_write() -> None:
    done = _run([sys.executable, "examples/fencing.py"])
    assert done.returncode == 0, _explain(done)
    assert "rejected: config: token 0b6f4c1e:3 is older than 0b6f4c1e:4" in done.stdout
    assert "rejected: config: token 0b6f4c1e:4 is from a Lease that was replaced" in done.stdout
    assert 'config = "written by the recreated lease\'s first term"' in done.stdout


# --------------------------------------------------------------------------------------------
# The site builds
# --------------------------------------------------------------------------------------------


def test_mkdocs_build_is_strict_clean(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    pytest.importorskip("material")
    done = _run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        timeout=60,
        env={"NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, _explain(done)
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line]
    assert not warnings, "\n".join(warnings)
    assert (tmp_path / "index.html").is_file()
