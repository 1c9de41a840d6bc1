"""Check the built API reference in a real headless browser: every docstring example is a code block.

``mkdocs build --strict`` accepts a docstring example that renders as a Markdown blockquote
(``>>> x`` is a quote nested three deep), so this script looks at the pages the way a reader
does: it builds the site, serves it on localhost, opens each API page in headless Chromium
(driven through chromedriver's W3C WebDriver HTTP interface, standard library only), and checks
in the live DOM that

- every ``>>>`` / ``...`` line of every docstring rendered on the page (found with griffe, from
  the ``::: identifier`` lines of ``docs/api/*.md``) is a line of a ``<pre>`` code block, with
  its doctest flags trimmed;
- no such example shows up as prose (outside ``<pre>``), no ``doctest:`` flag is visible, and no
  docstring holds a blockquote.

It saves one screenshot per page (scrolled to the page's first example) for a person to look at.

Usage::

    python tools/check_docs_render.py --screenshots /tmp/alta-docs-shots

Needs the ``docs`` extra and Debian's ``chromium`` and ``chromium-driver`` packages
(``apt-get install -y chromium chromium-driver``). The browser only talks to 127.0.0.1: every
other host name resolves to nothing. Exit status: 0 all pages pass, 1 a rendering fault, 2 the
browser or driver is missing.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import http.server
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER_NAMES = ("chromedriver",)
# The flags the project runs Chromium with: headless, no sandbox (root in a container), nothing
# fetched in the background, a fresh profile (added per session), localhost only.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1280,1000",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
_DOCTEST_FLAGS = re.compile(r"\s*#\s*doctest:.+$")  # what griffe trims (trim_doctest_flags)
_DIRECTIVE = re.compile(r"^:::\s+(\S+)", re.MULTILINE)
_ELEMENT = "element-6066-11e4-a52f-4d6572656c656d656e74"  # the W3C WebDriver element key

# Run in the page: the text of every <pre>, the text outside them, blockquotes in docstrings.
_READ_DOM = """
const pres = Array.from(document.querySelectorAll('pre')).map(p => p.textContent);
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const prose = [];
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  if (!n.parentElement.closest('pre, script, style')) prose.push(n.textContent);
}
return {pres: pres, prose: prose.join(' '), quotes: document.querySelectorAll('.doc-contents blockquote').length};
"""
# Scroll to the code block holding an example line, else to the paragraph showing it as prose.
_SCROLL_TO = """
const pre = Array.from(document.querySelectorAll('pre')).find(p => p.textContent.includes(arguments[0]));
const text = pre || Array.from(document.querySelectorAll('.doc-contents p')).find(p => p.textContent.includes(arguments[1]));
if (text) { text.scrollIntoView({block: 'center'}); }
return Boolean(text);
"""


@dataclass
class PageReport:
    """What the check found on one API page."""

    page: str
    examples: int = 0  # docstring example lines expected on the page
    code_lines: int = 0  # of which found as code-block lines
    faults: list[str] = field(default_factory=list)
    screenshot: str | None = None

    @property
    def ok(self) -> bool:
        return not self.faults


def find_executable(names: tuple[str, ...]) -> str | None:
    """The first of ``names`` on PATH, or ``None``."""
    return next((path for path in map(shutil.which, names) if path), None)


# ---- what should be on each page -----------------------------------------------------------------


def _docstrings(obj, anchor: str) -> Iterator[tuple[str, str]]:
    """(heading anchor, docstring) of ``obj`` and the public members mkdocstrings renders with it."""
    if obj.docstring is not None:
        yield anchor, obj.docstring.value
    if obj.is_class and "__init__" in obj.members and obj.members["__init__"].docstring is not None:
        yield anchor, obj.members["__init__"].docstring.value  # merge_init_into_class
    if obj.is_class or obj.is_module:
        for name, member in obj.members.items():
            if name.startswith("_") or member.is_alias:
                continue
            yield from _docstrings(member, f"{anchor}.{name}")


def example_lines(docstring: str) -> list[str]:
    """The ``>>>`` and ``...`` lines of a docstring, doctest flags trimmed, as griffe renders them."""
    lines = []
    for line in docstring.splitlines():
        stripped = line.strip()
        if stripped.startswith(">>>") or (stripped.startswith("...") and lines):
            lines.append(_DOCTEST_FLAGS.sub("", stripped).rstrip())
    return lines


def expected_examples(root: Path = REPO) -> dict[str, list[tuple[str, str]]]:
    """Per API page (``api/core`` ...), the example lines of the docstrings it renders, with the
    anchor of the heading each belongs to."""
    import griffe

    package = griffe.load("alta", search_paths=[str(root)], resolve_aliases=True, resolve_external=False)
    pages: dict[str, list[tuple[str, str]]] = {}
    for md in sorted((root / "docs" / "api").glob("*.md")):
        page = f"api/{md.stem}" if md.stem != "index" else "api"
        found = pages.setdefault(page, [])
        for identifier in _DIRECTIVE.findall(md.read_text(encoding="utf-8")):
            obj = package if identifier == "alta" else package[identifier.removeprefix("alta.")]
            for anchor, docstring in _docstrings(obj, identifier):
                found.extend((anchor, line) for line in example_lines(docstring))
    return pages


def analyse_page(page: str, dom: dict, expected: list[tuple[str, str]]) -> PageReport:
    """Compare what the browser shows (``dom`` from the page script) with the expected examples.

    Args:
        page: Page path, e.g. ``"api/core"``.
        dom: ``{"pres": [text of each <pre>], "prose": text outside them, "quotes": count}``.
        expected: ``(anchor, example line)`` pairs from :func:`expected_examples`.

    Returns:
        The :class:`PageReport`; a fault for each example line not found as a code-block line,
        each example shown as prose, visible doctest flags and blockquotes in docstrings.
    """
    report = PageReport(page=page, examples=len(expected))
    code = {line.rstrip() for text in dom["pres"] for line in text.splitlines()}
    prose = " ".join(dom["prose"].split())
    for anchor, line in expected:
        if line in code:
            report.code_lines += 1
            continue
        body = " ".join(line[3:].split())
        where = "shown as prose, not code" if len(body) >= 8 and body in prose else "not found in any code block"
        report.faults.append(f"{anchor}: example line {line!r} {where}")
    if "doctest:" in prose or any("doctest:" in text for text in dom["pres"]):
        report.faults.append("a doctest flag ('# doctest: ...') is visible on the page")
    if dom["quotes"]:
        report.faults.append(f"{dom['quotes']} blockquote(s) inside docstrings (a '>>>' read as a Markdown quote?)")
    return report


# ---- site, server and browser ---------------------------------------------------------------------


def build_site(site_dir: Path, root: Path = REPO) -> None:
    """``mkdocs build --strict`` of ``root`` into ``site_dir``.

    Raises:
        RuntimeError: the build failed (its output is in the message).
    """
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-f",
                           str(root / "mkdocs.yml"), "-d", str(site_dir)], cwd=root, capture_output=True, text=True,
                          env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}")


@contextlib.contextmanager
def serve(site_dir: Path) -> Iterator[str]:
    """Serve ``site_dir`` on 127.0.0.1 (a free port) while the block runs; yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site_dir)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Browser:
    """Headless Chromium through chromedriver's W3C WebDriver HTTP interface (no client library).

    Args:
        chromium: Path of the Chromium binary.
        chromedriver: Path of the matching chromedriver.
        profile: A fresh, empty user-data directory.
    """

    def __init__(self, chromium: str, chromedriver: str, profile: Path) -> None:
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.driver = subprocess.Popen([chromedriver, f"--port={port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self._call("GET", "/status")["ready"]:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline or self.driver.poll() is not None:
                self.driver.kill()
                raise RuntimeError(f"chromedriver ({chromedriver}) did not start on port {port}")
            time.sleep(0.2)
        options = {"binary": chromium, "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]}
        capabilities = {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options,
                                        "timeouts": {"pageLoad": 60_000, "script": 30_000}}}
        self.session = self._call("POST", "/session", {"capabilities": capabilities})["sessionId"]

    def _call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())["value"]

    def _session(self, method: str, path: str, body: dict | None = None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def open(self, url: str) -> None:
        """Load ``url`` and wait for its load event."""
        self._session("POST", "/url", {"url": url})

    def run(self, script: str, *args):
        """Run JavaScript in the page and return its result."""
        return self._session("POST", "/execute/sync", {"script": script, "args": list(args)})

    def screenshot(self, path: Path) -> None:
        """Save the viewport as a PNG."""
        path.write_bytes(base64.b64decode(self._session("GET", "/screenshot")))

    def close(self) -> None:
        """End the browser session and the driver."""
        with contextlib.suppress(Exception):
            self._call("DELETE", f"/session/{self.session}")
        self.driver.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.driver.wait(timeout=10)
        if self.driver.poll() is None:
            self.driver.kill()


def check_site(site_dir: Path, *, screenshots: Path | None = None, root: Path = REPO,
               chromium: str | None = None, chromedriver: str | None = None) -> list[PageReport]:
    """Open every API page of a built site in headless Chromium and check its examples.

    Args:
        site_dir: A site built by :func:`build_site`.
        screenshots: Folder for one PNG per page (``api-core.png`` ...), or ``None``.
        root: The repository whose docstrings and ``docs/api`` pages are expected.
        chromium: Browser binary (default: found on PATH).
        chromedriver: Driver binary (default: found on PATH).

    Returns:
        One :class:`PageReport` per API page.

    Raises:
        FileNotFoundError: Chromium or chromedriver not found.
    """
    chromium = chromium or find_executable(CHROMIUM_NAMES)
    chromedriver = chromedriver or find_executable(CHROMEDRIVER_NAMES)
    if not chromium or not chromedriver:
        raise FileNotFoundError("chromium and chromedriver are needed: apt-get install -y chromium chromium-driver")
    expected = expected_examples(root)
    if screenshots is not None:
        screenshots.mkdir(parents=True, exist_ok=True)
    reports = []
    with tempfile.TemporaryDirectory(prefix="alta-chromium-") as profile, serve(site_dir) as url:
        browser = Browser(chromium, chromedriver, Path(profile))
        try:
            for page, lines in expected.items():
                browser.open(f"{url}/{page}/")
                report = analyse_page(page, browser.run(_READ_DOM), lines)
                if screenshots is not None:
                    if lines:
                        browser.run(_SCROLL_TO, lines[0][1], lines[0][1][4:])
                    shot = screenshots / f"{page.replace('/', '-')}.png"
                    browser.screenshot(shot)
                    report.screenshot = str(shot)
                reports.append(report)
        finally:
            browser.close()
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--screenshots", type=Path, default=None, help="folder for one PNG per API page")
    parser.add_argument("--site", type=Path, default=None, help="build into (or, with --no-build, read) this folder")
    parser.add_argument("--no-build", action="store_true", help="check an already built --site")
    parser.add_argument("--root", type=Path, default=REPO, help="repository to build and check (default: this one)")
    args = parser.parse_args(argv)
    if not find_executable(CHROMIUM_NAMES) or not find_executable(CHROMEDRIVER_NAMES):
        print("chromium and chromedriver not found: apt-get install -y chromium chromium-driver", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="alta-site-") as tmp:
        site = args.site or Path(tmp) / "site"
        if not args.no_build:
            build_site(site, args.root.resolve())
        reports = check_site(site, screenshots=args.screenshots, root=args.root.resolve())
    for report in reports:
        status = "ok" if report.ok else "FAIL"
        shot = f"  screenshot {report.screenshot}" if report.screenshot else ""
        print(f"{status:4} {report.page:18} {report.code_lines}/{report.examples} example lines in code blocks{shot}")
        for fault in report.faults:
            print(f"       {fault}")
    total = sum(r.examples for r in reports)
    if total == 0:
        print("no docstring example found on any API page: nothing was checked", file=sys.stderr)
        return 1
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
