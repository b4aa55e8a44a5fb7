"""Headless Chromium (the Debian ``chromium`` package) for tests: a page's DOM or a screenshot.

Both load the page with a virtual-time budget, so the single-page app has time to fetch its
data and render before Chromium dumps the DOM or takes the picture. Offline-safe flags: no
background networking, component updates, sync or QUIC.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def chromium_binary() -> str | None:
    """The Chromium executable on PATH, or ``None``."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(args: list[str], url: str, budget_ms: int, timeout_s: float) -> str:
    binary = chromium_binary()
    if binary is None:
        raise RuntimeError("chromium not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="eomatch-chromium-") as profile:
        result = subprocess.run(
            [
                binary,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={budget_ms}",
                *args,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"chromium failed ({result.returncode}) on {url}: {tail}")
    return result.stdout


def render_dom(url: str, budget_ms: int = 15_000, timeout_s: float = 90.0) -> str:
    """The page's DOM (serialised HTML) after its scripts ran for ``budget_ms`` virtual ms."""
    return _run(["--dump-dom"], url, budget_ms, timeout_s)


def screenshot(
    url: str,
    path: str | Path,
    size: tuple[int, int] = (1400, 900),
    budget_ms: int = 15_000,
    timeout_s: float = 90.0,
) -> Path:
    """Save a PNG of the rendered page to ``path`` and return it."""
    out = Path(path).absolute()
    _run(
        [f"--screenshot={out}", f"--window-size={size[0]},{size[1]}"],
        url,
        budget_ms,
        timeout_s,
    )
    if not out.is_file():
        raise RuntimeError(f"chromium wrote no screenshot for {url}")
    return out
