"""The STAC Browser: where its built files are, and its runtime configuration.

The browser is Radiant Earth's STAC Browser, built once by ``scripts/build-browser.sh`` into
``.cache/stac-browser/<hash of inputs>/dist``. No catalogue URL is baked into the build: by
default it shows ``<its own origin>/external/``, and the gateway serves a ``/config.js``
written by :func:`write_runtime_config` that names the external API's public URL exactly
(STAC Browser requires ``catalogUrl`` to equal the API's ``self`` link), so one build serves
any host and port.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from eomatch.config.settings import BrowserSettings, read_settings
from eomatch.errors import BrowserBuildError as BrowserBuildError
from eomatch.errors import EomatchError

__all__ = [
    "BUILD_SCRIPT",
    "BrowserBuildError",
    "browser_dist",
    "install",
    "render_runtime_config",
    "write_runtime_config",
]

REPO_ROOT = Path(__file__).resolve().parents[3]
"""The source checkout (the browser is built from it; it is not part of the wheel)."""
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-browser.sh"
DEFAULT_TITLE = "eomatch matchup catalogue"


def browser_dist(*, build: bool = True, script: Path = BUILD_SCRIPT) -> Path:
    """The STAC Browser's built ``dist`` directory, building it first if needed.

    ``EOMATCH_BROWSER_DIST`` names a prebuilt dist directly (packaged installs, containers).
    Otherwise the build script is asked for it: instant when the inputs are unchanged, about
    two minutes on a cold cache (npm ci + webpack build).

    Args:
        build: Build if missing; ``False`` raises instead.
        script: The build script (tests may point at another checkout).

    Returns:
        Absolute path of the directory holding ``index.html``.

    Raises:
        BrowserBuildError: Not built and ``build`` is false, npm is missing, or the build
            failed (the message gives the reason in one line).
    """
    override = read_settings(BrowserSettings).browser_dist
    if override:
        dist = Path(override).absolute()
        if not (dist / "index.html").is_file():
            raise BrowserBuildError(f"EOMATCH_BROWSER_DIST={override} has no index.html")
        return dist
    if not script.is_file():
        raise BrowserBuildError(
            f"no STAC Browser build script at {script}: set EOMATCH_BROWSER_DIST to a built dist"
        )
    if build and (shutil.which("npm") is None or shutil.which("node") is None):
        checked = _run_script(script, check_only=True)
        if checked is not None:
            return checked
        raise BrowserBuildError(
            "the STAC Browser is not built and npm is unavailable: install Node.js and npm "
            "(Debian: apt-get install nodejs npm), then run scripts/build-browser.sh"
        )
    built = _run_script(script, check_only=not build)
    if built is None:
        raise BrowserBuildError("the STAC Browser is not built: run scripts/build-browser.sh")
    return built


def _run_script(script: Path, *, check_only: bool) -> Path | None:
    cmd = ["bash", str(script), *(["--check"] if check_only else [])]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode == 0:
        lines = result.stdout.strip().splitlines()
        dist = Path(lines[-1]) if lines else None
        if dist is not None and (dist / "index.html").is_file():
            return dist
        raise BrowserBuildError(f"{script.name} did not report a dist directory")
    if check_only and result.returncode == 3:
        return None
    errors = [line for line in result.stderr.splitlines() if line.startswith("build-browser:")]
    reason = errors[-1].removeprefix("build-browser: ") if errors else "see its output"
    raise BrowserBuildError(f"building the STAC Browser failed: {reason}")


def render_runtime_config(catalog_url: str | None, title: str = DEFAULT_TITLE) -> str:
    """The text of the runtime ``config.js`` (``window.STAC_BROWSER_CONFIG = {...}``).

    Args:
        catalog_url: The external API's public URL, exactly its ``self`` link (for example
            ``http://host:8090/external/``); ``None`` keeps the built-in default, the page's
            own ``<origin>/external/``.
        title: Shown when the catalogue has no title of its own.

    Raises:
        ValueError: ``catalog_url`` is not an absolute http(s) URL ending in ``/``.
    """
    config: dict[str, object] = {"catalogTitle": title}
    if catalog_url is not None:
        if not catalog_url.startswith(("http://", "https://")) or not catalog_url.endswith("/"):
            raise ValueError(
                f"catalog URL {catalog_url!r} must be an absolute http(s) URL ending in '/'"
            )
        config["catalogUrl"] = catalog_url
    # JSON is valid JavaScript; escaping "<" keeps it inert even if pasted into a page.
    body = json.dumps(config, indent=2, sort_keys=True).replace("<", "\\u003c")
    return f"window.STAC_BROWSER_CONFIG = {body};\n"


def write_runtime_config(
    dest_dir: str | os.PathLike[str], catalog_url: str | None, title: str = DEFAULT_TITLE
) -> Path:
    """Write ``config.js`` into ``dest_dir`` (atomically; readable by the gateway's user).

    Returns:
        The path of the written file.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "config.js"
    tmp = dest / ".config.js.tmp"
    tmp.write_text(render_runtime_config(catalog_url, title))
    tmp.chmod(0o644)
    tmp.replace(path)
    return path


def install(dist: Path, dest: Path, catalog_url: str | None, title: str = DEFAULT_TITLE) -> None:
    """Copy a built dist to ``dest/dist`` and write ``dest/runtime/config.js`` (containers).

    The copy replaces the previous one, so an upgraded image brings its new browser along.
    """
    if not (dist / "index.html").is_file():
        raise BrowserBuildError(f"{dist} is not a STAC Browser dist (no index.html)")
    staged = dest / ".dist.new"
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(dist, staged)
    old = dest / ".dist.old"
    shutil.rmtree(old, ignore_errors=True)
    if (dest / "dist").exists():
        (dest / "dist").rename(old)
    staged.rename(dest / "dist")
    shutil.rmtree(old, ignore_errors=True)
    write_runtime_config(dest / "runtime", catalog_url, title)


def main(argv: list[str] | None = None) -> int:
    """``python -m eomatch.service.browser install DEST``: publish the browser for a gateway."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m eomatch.service.browser")
    sub = p.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="copy the built dist and write its runtime config")
    inst.add_argument("dest", type=Path, help="gets dist/ and runtime/config.js")
    inst.add_argument(
        "--catalog-url",
        default=None,
        help=(
            "the external API's public URL, ending in /external/ "
            "(default: EOMATCH_CATALOG_URL, else the page's origin)"
        ),
    )
    inst.add_argument("--title", default=DEFAULT_TITLE)
    sub.add_parser("path", help="print the built dist directory (building it if needed)")
    args = p.parse_args(argv)
    try:
        if args.command == "install" and args.catalog_url is None:
            args.catalog_url = read_settings(BrowserSettings).catalog_url
        if args.command == "path":
            print(browser_dist())
        else:
            install(browser_dist(build=False), args.dest, args.catalog_url, args.title)
    except (EomatchError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
