"""`dvc plots show` / `dvc plots diff` on the project's dvc.yaml: the charts people compare, with their y
columns, in pages that render offline (issue 16). The page's own inline scripts are run in Node, as a
browser would, and every chart is rendered to SVG with them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.plots_offline import BUNDLES, DEFAULT_DIR, TEMPLATE_NAME

ROOT = Path(__file__).resolve().parents[1]
DVC = [sys.executable, "-m", "dvc"]
# The bundles are fetched once per checkout (as `make offline-plots` does) into the git-ignored cache.
BUNDLE_DIR = ROOT / DEFAULT_DIR

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("npm") is None and not all((BUNDLE_DIR / b.filename).is_file() for b in BUNDLES),
        reason="needs npm (or the bundles `make offline-plots` fetches into .cache/vega)",
    ),
]

EXPECTED = {
    "losses": ["loss_D", "loss_G"],
    "regularization": ["pl_penalty", "r1_penalty"],
    "augment_p": ["augment_p"],
    "training_metrics": ["fid5k_full"],  # `${train.metrics}`, from the params below
}
# The repo's params.yaml: dvc.yaml takes the columns of the training-metrics chart from train.metrics.
PARAMS = {"train": {"metrics": ["fid5k_full"]}}

# Runs the page's inline scripts in a fresh global context (no module system, as in a browser), then
# renders each chart's Vega-Lite spec to SVG with the page's Vega: prints {chart id: SVG}.
RENDER_JS = r"""
const fs = require("fs"), vm = require("vm");
const page = fs.readFileSync(process.argv[1], "utf8");
const context = vm.createContext({ console, setTimeout, clearTimeout, URL, TextEncoder, TextDecoder });
context.globalThis = context.self = context;
const specs = {};
for (const [, attrs, code] of page.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/g)) {
  if (/\bsrc\s*=/.test(attrs)) throw new Error("external script: " + attrs);
  const embed = code.match(/vegaEmbed\('#([^']+)', spec\);/);
  if (embed) specs[embed[1]] = vm.runInContext(code.replace(embed[0], "") + "; spec", context);
  else vm.runInContext(code, context);
}
(async () => {
  if (typeof context.vegaEmbed !== "function") throw new Error("the page defines no vegaEmbed");
  const svgs = {};
  for (const [id, spec] of Object.entries(specs)) {
    const view = new context.vega.View(context.vega.parse(context.vegaLite.compile(spec).spec), {
      renderer: "none",
    });
    svgs[id] = await view.toSVG();
  }
  console.log(JSON.stringify(svgs));
})().catch((error) => { console.error(error.stack || String(error)); process.exit(1); });
"""


def run(command: list[str], cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _curves(rows: int) -> str:
    header = "tick\tkimg\tloss_D\tloss_G\tr1_penalty\tpl_penalty\taugment_p\tada_rt\tfid5k_full\n"
    rows_ = [(t, f"{2 * t + 0.016:.3f}", 1.5 - 0.1 * t, 0.7 + 0.2 * t, 0.1 * t, 1 / (t + 1), 0.01 * t, 0.6,
              300 / (t + 1) if t % 2 else "")  # the metric is measured at every other tick
             for t in range(rows)]  # fmt: skip
    return header + "".join("\t".join(map(str, row)) + "\n" for row in rows_)


@pytest.fixture(scope="module")
def plots_repo(tmp_path_factory) -> Path:
    """A git + DVC repo with the project's dvc.yaml and curves: HEAD has 3 ticks, the workspace 6."""
    repo = tmp_path_factory.mktemp("plots")
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    (repo / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    (repo / "plots").mkdir()
    (repo / "plots/train.tsv").write_text(_curves(3))
    for command in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "tests@example.invalid"],
        ["git", "config", "user.name", "tests"],
        [*DVC, "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "baseline"],
    ):
        run(command, repo)
    (repo / "plots/train.tsv").write_text(_curves(6))
    # The user's setup step (`make offline-plots`), with the bundles kept in the project's cache.
    out = run([sys.executable, "-m", "pipeline.plots_offline", "--dest", str(BUNDLE_DIR)], repo)
    assert str(BUNDLE_DIR / TEMPLATE_NAME) in out
    return repo


def test_dvc_yaml_declares_the_compared_curves_with_their_y_columns():
    declared = {}
    for entry in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]:
        [(name, props)] = entry.items()
        [(source, columns)] = props["y"].items()
        if columns == "${train.metrics}":
            columns = PARAMS["train"]["metrics"]
        assert (source, props["x"]) == ("plots/train.tsv", "kimg")
        declared[name] = sorted([columns] if isinstance(columns, str) else columns)
    assert declared == EXPECTED


def _page(repo: Path, *command: str) -> str:
    out = run([*DVC, "plots", *command], repo)
    assert "dvc_plots/index.html" in out
    return (repo / "dvc_plots/index.html").read_text()


@pytest.mark.parametrize("command", [("show",), ("diff", "HEAD")])
def test_plots_pages_load_no_script_from_the_network(plots_repo: Path, command):
    page = _page(plots_repo, *command)
    sources = re.findall(r"<script[^>]*\bsrc\s*=\s*[\"']?([^\"'\s>]+)", page)
    assert sources == []
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://[^"'\s>]*\.js""", page)
    assert "cdn.jsdelivr" not in page
    for bundle in BUNDLES:
        assert f"/* {bundle.filename} */" in page


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the page's scripts")
@pytest.mark.parametrize("command", [("show",), ("diff", "HEAD")])
def test_every_chart_renders_with_the_pages_own_scripts(plots_repo: Path, tmp_path: Path, command):
    page = tmp_path / "index.html"
    page.write_text(_page(plots_repo, *command))
    svgs = json.loads(run(["node", "-e", RENDER_JS, str(page)], tmp_path))

    assert sorted(svgs) == sorted(EXPECTED)
    for svg in svgs.values():
        assert len(re.findall(r'd="M[^"]*L', svg)) >= 1  # at least one drawn line
    titles = {"losses": "Generator and discriminator loss", "augment_p": "ADA augmentation probability"}
    for chart, title in titles.items():
        assert title in svgs[chart]
    if command[0] == "diff":  # both revisions are drawn
        assert "HEAD" in svgs["losses"] and "workspace" in svgs["losses"]
