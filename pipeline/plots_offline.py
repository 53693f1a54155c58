"""`dvc plots show` and `dvc plots diff` pages that render offline: `python -m pipeline.plots_offline`.

DVC's default page loads Vega, Vega-Lite and Vega-Embed from a CDN, so offline it is blank. DVC takes a
page template of our own (`plots.html_template` in its config, or `--html-template`); a template without
the `{scripts}` placeholder gets none of DVC's CDN `<script>` tags. This module fetches the three
libraries' prebuilt bundles from npm (`npm pack`: the package tarballs alone, no dependency tree), writes
a template with them inlined into a git-ignored folder (`.cache/vega/`), and points this checkout's DVC
at it (`dvc config --local`, so nothing machine-specific is committed). Every page DVC then writes is one
self-contained file.
"""

from __future__ import annotations

import argparse
import html
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DIR = Path(".cache/vega")
TEMPLATE_NAME = "dvc_plots_template.html"
# Placeholders DVC fills in a template (dvc_render.html.HTML); `{scripts}` is left out on purpose.
PLOTS_PLACEHOLDER = "{plot_divs}"
_DVC_PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")


@dataclass(frozen=True)
class NpmBundle:
    """One library's prebuilt browser bundle inside its npm package."""

    package: str
    version: str
    file: str  # path inside the package

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    @property
    def filename(self) -> str:
        return f"{self.package}-{self.version}.min.js"


# The versions DVC's own page loads (dvc_render.vega.VegaRenderer.SCRIPTS): its specs are written for them.
BUNDLES = (
    NpmBundle("vega", "5.20.2", "build/vega.min.js"),
    NpmBundle("vega-lite", "5.2.0", "build/vega-lite.min.js"),
    NpmBundle("vega-embed", "6.18.2", "build/vega-embed.min.js"),
)

_PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {{refresh_tag}}
    <title>DVC plots</title>
{scripts}
    <style>
        body {{ font-family: sans-serif; }}
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


class PlotsOfflineError(RuntimeError):
    """The bundles could not be fetched (no npm, no registry) or are not what was expected."""


def fetch_bundles(dest: Path, bundles: Sequence[NpmBundle] = BUNDLES, npm: str = "npm") -> list[Path]:
    """The bundles as files in `dest` (fetched with `npm pack` unless already there)."""
    dest.mkdir(parents=True, exist_ok=True)
    wanted = [bundle for bundle in bundles if not (dest / bundle.filename).is_file()]
    if wanted:
        if shutil.which(npm) is None:
            raise PlotsOfflineError(f"`{npm}` not found: install Node.js's npm to fetch {wanted[0].spec}")
        with tempfile.TemporaryDirectory() as tmp:
            command = [npm, "pack", "--silent", "--pack-destination", tmp, *(b.spec for b in wanted)]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise PlotsOfflineError(f"`{' '.join(command)}` failed:\n{result.stderr.strip()}")
            for bundle, tarball in zip(wanted, result.stdout.split(), strict=True):
                _extract(Path(tmp) / tarball, f"package/{bundle.file}", dest / bundle.filename)
    return [dest / bundle.filename for bundle in bundles]


def _extract(tarball: Path, member: str, target: Path) -> None:
    with tarfile.open(tarball) as archive:
        try:
            source = archive.extractfile(member)
        except KeyError:
            source = None
        if source is None:
            raise PlotsOfflineError(f"{tarball.name} has no {member}")
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(source.read())
        partial.replace(target)


def page_template(scripts: Sequence[Path]) -> str:
    """A DVC page template with `scripts` inlined, in order."""
    blocks = []
    for path in scripts:
        code = path.read_text(encoding="utf8")
        if clash := [p for p in _DVC_PLACEHOLDERS if p in code]:
            raise PlotsOfflineError(f"{path.name} contains {clash[0]}, which DVC would replace")
        # `</script` inside the code would end the element early.
        code = code.replace("</script", "<\\/script")
        blocks.append(f"    <script>/* {html.escape(path.name)} */\n{code}\n    </script>")
    return _PAGE.format(scripts="\n".join(blocks), plot_divs=PLOTS_PLACEHOLDER)


def install(repo: Path = Path("."), dest: Path = DEFAULT_DIR, configure: bool = True) -> Path:
    """Fetch the bundles, write the template into `repo/dest`, and (with `configure`) make it this
    checkout's `plots.html_template`. Returns the template's path."""
    folder = dest if dest.is_absolute() else repo / dest
    template = folder / TEMPLATE_NAME
    template.write_text(page_template(fetch_bundles(folder)), encoding="utf8")
    if configure:
        # DVC reads a relative template path from its `.dvc/` folder.
        setting = str(dest / TEMPLATE_NAME if dest.is_absolute() else Path("..") / dest / TEMPLATE_NAME)
        command = [sys.executable, "-m", "dvc", "config", "--local", "plots.html_template", setting]
        result = subprocess.run(command, cwd=repo, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PlotsOfflineError(f"`{' '.join(command[2:])}` failed: {result.stderr.strip()}")
    return template


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.plots_offline", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repo", type=Path, default=Path("."), help="the DVC repository (default: here)")
    parser.add_argument(
        "--dest", type=Path, default=DEFAULT_DIR, help=f"folder for the bundles and template ({DEFAULT_DIR})"
    )
    parser.add_argument(
        "--no-config", action="store_true", help="only write the template; leave DVC's config alone"
    )
    args = parser.parse_args(argv)
    try:
        template = install(args.repo, args.dest, configure=not args.no_config)
    except PlotsOfflineError as exc:
        print(f"plots_offline: {exc}", file=sys.stderr)
        return 1
    print(f"offline template for dvc plots: {template}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
