"""The documentation runs as written.

- Every ```python block of every page under ``docs/`` is executed, in page order, all blocks of a
  page sharing one namespace (so a tutorial can span several blocks), in a fresh temporary
  working directory. A block is skipped only when the line right before its opening fence is
  ``<!-- skip-test -->``, and only code that needs pretrained CLIP weights or a GPU may be
  skipped (checked below).
- Every ``alta ...`` command line shown in a ```bash block must be accepted by the CLI's
  parser, and ``alta run`` lines must resolve to a valid configuration (shipped config found,
  every flag and ``--set`` key valid). They are not run: most need a dataset or pretrained weights.
- ``mkdocs build --strict`` passes (skipped when the ``docs`` extra is not installed).

The pages use the tiny random-weight backbone and small data, so the whole file takes about a
minute on two CPU cores. Blocks run as written, with torch's default thread count: a page whose
models are tiny sets one thread in its own code (``torch.set_num_threads(1)``; on a busy machine
torch's default thread pool slows them down many times over), so that what a reader runs is what
the page's timings measured.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import DEFAULT_THREADS

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SKIP_MARKER = "<!-- skip-test -->"
# What a skipped block must mention: pretrained CLIP names, a local weights file, or a GPU.
_SKIP_ALLOWED = re.compile(r"cuda|\bRN\d|ViT-[BL]|\.pt\b|download_root")
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # 1-based line of the first code line
    lang: str
    code: str
    skip: bool

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def read_blocks(page: Path) -> list[Block]:
    """Fenced code blocks of a Markdown page, in order (indented fences, e.g. inside
    admonitions or tabs, are dedented)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, lang = match.group("indent"), match.group("fence"), match.group("lang").lower()
        previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (lines[j].startswith(indent + fence[0] * len(fence))
                                      and lines[j].strip() == fence[0] * len(lines[j].strip())):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        if j == len(lines):
            raise AssertionError(f"{page.relative_to(REPO)}:{i + 1}: code fence {fence} is never closed")
        blocks.append(Block(page, i + 2, lang, "\n".join(body) + "\n", previous == SKIP_MARKER))
        i = j + 1
    return blocks


def doc_pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_ext" not in p.parts)


PYTHON_PAGES = [p for p in doc_pages() if any(b.lang in ("python", "py") for b in read_blocks(p))]


@contextlib.contextmanager
def threads_of_a_fresh_python(default: int):
    """Run a page as written: with torch's default thread count (the suite runs with one), so a
    page whose timing needs ``torch.set_num_threads(1)`` must have it in its code; then give the
    other tests the thread count they had."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(default)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def test_the_docs_have_pages_with_code():
    names = {p.name for p in PYTHON_PAGES}
    assert {"index.md", "custom-loop.md", "own-dataset.md", "metrics.md"} <= names, names


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_python_blocks_run(page, tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": "__main__"}
    blocks = [b for b in read_blocks(page) if b.lang in ("python", "py")]
    with threads_of_a_fresh_python(request.config.stash[DEFAULT_THREADS]):
        for block in blocks:
            if block.skip:
                continue
            output = io.StringIO()
            try:
                with contextlib.redirect_stdout(output):
                    exec(compile(block.code, block.where, "exec"), namespace)  # noqa: S102 - the docs' own code
            except Exception as exc:
                raise AssertionError(
                    f"the code block at {block.where} failed: {type(exc).__name__}: {exc}\n"
                    f"--- its output ---\n{output.getvalue()[-2000:]}"
                ) from exc


def test_skipped_blocks_need_weights_or_a_gpu():
    skipped = [b for p in doc_pages() for b in read_blocks(p) if b.skip]
    for block in skipped:
        assert block.lang in ("python", "py"), f"{block.where}: {SKIP_MARKER} only applies to python blocks"
        assert _SKIP_ALLOWED.search(block.code), (
            f"{block.where} is skipped with {SKIP_MARKER} but needs neither pretrained weights nor a GPU; "
            f"make it run with the tiny backbone instead"
        )


def shell_commands(prefix: str) -> list[tuple[str, str]]:
    """``(where, command)`` for every line of a bash block that starts with ``prefix``
    (continuation lines joined, comments dropped)."""
    out = []
    for page in doc_pages():
        for block in read_blocks(page):
            if block.lang not in ("bash", "sh", "shell", "console"):
                continue
            lines = block.code.replace("\\\n", " ").splitlines()
            for offset, line in enumerate(lines):
                line = line.strip().removeprefix("$ ")
                if line.startswith(prefix):
                    out.append((f"{block.where}+{offset}", line))
    return out


def inline_alta_commands() -> list[tuple[str, str]]:
    """``alta run``/``alta list`` commands quoted inline in the prose (``...`` elisions skipped)."""
    out = []
    for page in doc_pages():
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"(?<!`)`(alta (?:run|list)\b[^`]*)`(?!`)", text):
            command = " ".join(match.group(1).split())
            if "..." not in command:
                out.append((f"{page.relative_to(REPO)}:{text.count(chr(10), 0, match.start()) + 1}", command))
    return out


ALTA_COMMANDS = shell_commands("alta ") + inline_alta_commands()


def test_the_docs_show_alta_commands():
    assert len(ALTA_COMMANDS) >= 5


@pytest.mark.parametrize("where,command", ALTA_COMMANDS, ids=[w for w, _ in ALTA_COMMANDS])
def test_alta_command_lines_are_valid(where, command):
    from alta.cli import build_parser, resolve_run_config

    argv = shlex.split(command, comments=True)[1:]
    if "--help" in argv or "-h" in argv or "--version" in argv:
        return
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"{where}: `{command}` is rejected by the CLI parser: {stderr.getvalue()}") from exc
    if args.command == "run" and not args.resume:
        from alta.cli import run_variants

        for variant in run_variants(args):  # several methods or buffer sizes: a run group
            resolve_run_config(variant)  # raises ConfigError for an unknown config, flag value or --set key


# ---- the figures the pages quote ----------------------------------------------------------------

_TIMING = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?(?:s|ms|seconds|minutes|min|h|hours)\b")
_DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
_NOT_MEASURED = ("default: 10 min for NCCL",)  # durations that are settings, not measurements


def _paragraphs(page: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of every paragraph of prose (code blocks left out)."""
    text = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), page.read_text(encoding="utf-8"), flags=re.S)
    out, line = [], 1
    for part in re.split(r"(\n\s*\n)", text):
        if part.strip() and not part.isspace():
            out.append((line, part))
        line += part.count("\n")
    return out


def test_every_time_a_page_quotes_says_when_it_was_measured():
    """A wall time in the docs (or the README) drifts as the code changes: the paragraph quoting it
    gives the date of the measurement (and the machine), or the number is checked by a test here."""
    undated = []
    for page in [*doc_pages(), REPO / "README.md"]:
        for line, text in _paragraphs(page):
            times = [m.group(0) for m in _TIMING.finditer(text)
                     if not any(phrase in text[max(0, m.start() - 40):m.end() + 20] for phrase in _NOT_MEASURED)]
            if times and not _DATE.search(text):
                undated.append(f"{page.relative_to(REPO)}:{line}: {', '.join(times)}")
    assert not undated, "times quoted without the date of their measurement:\n" + "\n".join(undated)


def _quickstart_table() -> list[str]:
    page = (DOCS / "quickstart.md").read_text(encoding="utf-8")
    start = page.index("This is the table of one run")
    block = next(b for b in read_blocks(DOCS / "quickstart.md") if b.lang == "text" and
                 page.count("\n", 0, start) < b.line)
    return block.code.rstrip("\n").splitlines()


def _without_clock(lines: list[str]) -> list[str]:
    return [re.sub(r"wall time [\d.]+ s", "wall time (clock) s", line) for line in lines]


def test_the_quickstart_table_shows_what_alta_run_prints_in_its_form():
    """The cheap part of the check below, in every run of the suite: the table's lines are the
    lines :func:`alta.run.summary.format_table` prints, in their order."""
    lines = _quickstart_table()
    assert lines[0].startswith("alta run 'default': digits, 5 experiences x 2 classes, 20 epochs per experience")
    assert lines[1].startswith("class order native, class names from dataset:")
    assert [line.split()[0] for line in lines[8:]] == ["class-IL", "task-IL", "zero-shot", "zero-shot"]


@pytest.mark.slow
def test_the_quickstart_table_is_what_alta_run_prints(tmp_path, capsys, monkeypatch):
    """`alta run` as the quickstart shows it (about a minute on 2 cores): the table, but for the
    wall time, is the page's. A change of the numbers (of the code, torch or the CPU's kernels)
    fails here: rerun `alta run` and paste its table, with the date and the machine."""
    from alta.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["run", "--output-dir", str(tmp_path / "run"), "--no-progress", "--no-plots"]) == 0
    printed = capsys.readouterr().out.split("\n* headline")[0].splitlines()
    assert _without_clock(printed) == _without_clock(_quickstart_table())


@pytest.mark.parametrize("where,command", shell_commands("python "), ids=[w for w, _ in shell_commands("python ")])
def test_python_scripts_shown_exist(where, command):
    argv = shlex.split(command, comments=True)
    if len(argv) > 1 and argv[1].startswith(("examples/", "benchmarks/")):  # not the reference's main.py
        assert (REPO / argv[1]).is_file(), f"{where}: `{command}` runs {argv[1]}, which does not exist"


@pytest.fixture(scope="module")
def built_site(tmp_path_factory) -> Path:
    """The site, built once with ``mkdocs build --strict`` (skips without the docs toolchain)."""
    missing = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
               if importlib.util.find_spec(m.split(".")[0]) is None
               or (m == "mkdocstrings_handlers.python" and importlib.util.find_spec(m) is None)]
    if missing:
        pytest.skip(f"the docs toolchain is not installed ({', '.join(missing)}); "
                    f"install it with `pip install -e .[docs]`")
    site = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return site


def test_mkdocs_build_strict(built_site):
    assert (built_site / "index.html").is_file()


def _render_check():
    spec = importlib.util.spec_from_file_location("check_docs_render", REPO / "tools" / "check_docs_render.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_render_check_flags_an_example_rendered_as_a_quote():
    """The DOM analysis of tools/check_docs_render.py, on what a browser showed before the fix
    (a singular ``Example:`` heading: the doctest read as a nested Markdown quote)."""
    check = _render_check()
    expected = [("alta.LoopConfig", line) for line in
                check.example_lines('Examples:\n    >>> LoopConfig(epochs=5)  # doctest: +SKIP\n    32\n')]
    assert expected == [("alta.LoopConfig", ">>> LoopConfig(epochs=5)")]
    as_quote = {"pres": [], "prose": "Example LoopConfig(epochs=5) # doctest: +SKIP 32", "quotes": 3}
    faults = check.analyse_page("api/training", as_quote, expected).faults
    assert len(faults) == 3 and "shown as prose" in faults[0] and "doctest flag" in faults[1]
    as_code = {"pres": [">>> LoopConfig(epochs=5)\n32\n"], "prose": "Examples:", "quotes": 0}
    report = check.analyse_page("api/training", as_code, expected)
    assert report.ok and report.code_lines == 1


def test_singular_example_headings_are_read_as_examples_sections():
    spec = importlib.util.spec_from_file_location("example_sections", DOCS / "_ext" / "example_sections.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = "Summary.\n\n    Example:\n        >>> f()\n\n    Example: a prose admonition.\n"
    assert module.pluralise_example_headings(text) == text.replace("Example:\n", "Examples:\n", 1)


def test_api_pages_show_every_docstring_example_as_a_code_block(built_site, tmp_path):
    """Open each API page in headless Chromium (Debian's chromium + chromium-driver) and check
    the live DOM: every docstring example line is a line of a code block (skips without them)."""
    check = _render_check()
    if not check.find_executable(check.CHROMIUM_NAMES) or not check.find_executable(check.CHROMEDRIVER_NAMES):
        pytest.skip("chromium / chromedriver not installed (apt-get install -y chromium chromium-driver)")
    reports = check.check_site(built_site, screenshots=tmp_path / "shots")
    assert {r.page for r in reports} >= {"api/core", "api/training", "api/data"}
    assert sum(r.code_lines for r in reports) > 10  # the check found examples to check
    assert all(r.ok for r in reports), "\n".join(f for r in reports for f in r.faults)
    for report in reports:  # one real PNG per page
        assert Path(report.screenshot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
