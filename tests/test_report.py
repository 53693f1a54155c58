"""The HTML report: its figures, tables and links, with a small real generator and real files.

(tests/test_report_browser.py loads the same report in Chromium.)
"""

from __future__ import annotations

import html.parser
import json
from pathlib import Path

import numpy as np
import pandas as pd
import PIL.Image
import pytest
import torch

from pipeline.params import ReportParams
from pipeline.report import describe_hardware, load_metrics, params_diff, render_report, samples
from pipeline.report.plots import plot_curves, read_curves
from pipeline.report.tables import format_duration, metric_rows, provenance_rows, timing_rows
from stylegan.generate import Sampler
from stylegan.networks_stylegan2 import Generator as StyleGAN2
from stylegan.serialization import save_network

SMALL_PARAMS = ReportParams(
    psi=0.5,
    grid_seeds=list(range(8)),
    truncation_sweep=[-0.5, 0.0, 1.0, 1.5],
    mixing_rows=[1, 2],
    mixing_cols=[3, 4, 5],
    interpolation_frames=3,
    interpolation_seeds=[0, 1, 2],
)

METRICS = {
    "fid50k_full": {
        "value": 42.1234,
        "available": True,
        "reason": None,
        "extractor": "inception-v3-fid-helper",
        "extractor_sha256": "ab" * 32,
        "num_real": 500,
        "num_gen": 500,
        "seed": 0,
        "truncation_psi": 1.0,
    },
    "kid50k_full": {
        "value": None,
        "available": False,
        "reason": "detector weights unavailable <offline>",
        "extractor": None,
        "extractor_sha256": None,
        "num_real": None,
        "num_gen": 500,
        "seed": 0,
    },
    "pr50k3_full": {
        "value": 0.5,
        "available": True,
        "reason": None,
        "results": {"pr50k3_full_precision": 0.5, "pr50k3_full_recall": 0.25},
        "detector": {"name": "vgg16", "sha256": "cd" * 32},
        "num_real": 400,
        "num_gen": 500,
        "seed": 1,
        "params": {"k": 3},
        "timing": {"metric_s": 75.0},
    },
    "ppl2_wend": {
        "value": None,
        "available": False,
        "reason": "vgg16: weights not found and download failed (mirror-1/vgg16.pt: <urlopen error [Errno "
        "-3] Temporary failure in name resolution>; mirror-2/vgg16.pt: <urlopen error [Errno -3] Temporary "
        "failure in name resolution>); download mirror-1/vgg16.pt and place it at ~/.cache/x/vgg16.pt",
        "brief": "vgg16 weights are not on this machine and the download failed (no network); to enable: "
        "download mirror-1/vgg16.pt and place it at ~/.cache/x/vgg16.pt",
        "num_gen": 500,
        "seed": 0,
    },
}
PREVIOUS = [
    {"name": "exp-gamma2", "metrics": {"fid50k_full": 40.5, "pr50k3_full_precision": 0.75}},
    {"name": "mlflow-3f2a", "metrics": {"fid50k_full": {"value": 45.0}, "pr50k3_full": {"value": 0.1}}},
]
STATS = {
    "count": 2000,
    "mean": [0.5, 0.25, 0.125],
    "std": [0.2, 0.2, 0.25],
    "label_histogram": [700, 600, 700],
}
TIMINGS = {"prepare": 40.0, "train": 1500.0, "evaluate": 300.0}


def small_generator(path: Path) -> Path:
    torch.manual_seed(0)
    network = StyleGAN2(
        z_dim=16,
        c_dim=0,
        w_dim=16,
        img_resolution=16,
        img_channels=3,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 256, "channel_max": 16},
    )
    save_network(path, network)
    return path


def write_curves(path: Path, columns: dict[str, np.ndarray]) -> Path:
    pd.DataFrame(columns).to_csv(path, sep="\t" if path.suffix == ".tsv" else ",", index=False)
    return path


def render_full_report(tmp_path: Path) -> Path:
    """A report with every input given; returns the report folder (also used by the browser test)."""
    kimg = np.arange(0, 40, 2.0)
    curves = write_curves(
        tmp_path / "curves.tsv",
        {
            "kimg": kimg,
            "loss_G": 1 + np.exp(-kimg / 10),
            "loss_D": 0.5 + 0.1 * np.sin(kimg),
            "r1_penalty": 0.1 * np.exp(-kimg / 20),
            "augment_p": kimg / 100,
            "img_s": 50 + kimg,
            "sec_per_kimg": 20 - kimg / 4,
            "lr": np.full_like(kimg, 0.002),
            "fid5k_full": np.where(kimg % 10 == 0, 300 / (1 + kimg), np.nan),  # measured at snapshots only
        },
    )
    metrics = tmp_path / "eval.json"
    metrics.write_text(json.dumps(METRICS))
    real = np.random.default_rng(0).integers(0, 256, size=(10, 16, 16, 3), dtype=np.uint8)
    w_avg = tmp_path / "w_avg.npz"
    np.savez(w_avg, w_avg=np.zeros(16, dtype=np.float32))
    render_report(
        tmp_path / "reports",
        report_params=SMALL_PARAMS,
        generator_path=small_generator(tmp_path / "G.safetensors"),
        w_avg_path=w_avg,
        curves_path=curves,
        metrics_path=metrics,
        previous_runs=PREVIOUS,
        params_diff=[("train.gamma", 0.05, 2.0), ("eval.metrics", ["fid50k_full"], ["kid50k_full"])],
        dataset_stats=STATS,
        skipped_summary={"unreadable image": 3, "no face found": 7},
        stage_timings=TIMINGS,
        hardware={"CPU": "Test CPU <x86>", "PyTorch": torch.__version__},
        real_images=real,
        network_parameters={"G": 20_852_125, "D": 23_882_369},
    )
    return tmp_path / "reports"


class _PageParser(html.parser.HTMLParser):
    """Collects what a check of an offline page needs: image sources, links, scripts, stylesheets."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.external: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag == "a" and "href" in attrs:
            self.links.append(attrs["href"])
        if tag in ("script", "link", "iframe") and not (attrs.get("href") or "").startswith("data:"):
            self.external.append(f"<{tag} {attrs}>")

    def handle_data(self, data):
        self.text.append(data)


def html_of(report: Path) -> str:
    return (report / "index.html").read_text()


def parse(page: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> Path:
    return render_full_report(tmp_path_factory.mktemp("report"))


def test_full_report_is_self_contained(full_report):
    page = parse(full_report / "index.html")
    assert not page.external  # no scripts, stylesheets or frames: CSS is inline
    assert (
        "http://" not in (full_report / "index.html").read_text()
        and "https://" not in (full_report / "index.html").read_text()
    )
    assert all(link.startswith("#") for link in page.links)
    sources = [image["src"] for image in page.images]
    assert len(sources) == len(set(sources))
    for image in page.images:
        file = full_report / image["src"]
        assert not Path(image["src"]).is_absolute() and file.is_file(), image["src"]
        with PIL.Image.open(file) as decoded:
            scale = int(image["width"]) // decoded.width
            assert scale >= 1 and (int(image["width"]), int(image["height"])) == (
                decoded.width * scale,
                decoded.height * scale,
            )
    names = {Path(s).name for s in sources}
    assert [Path(s).name for s in sources[:2]] == ["real.png", "generated.png"]  # the page opens with them
    assert {"samples_psi1.png", "samples_psi0.5.png", "truncation_sweep.png", "interpolation.webp"} <= names
    assert {f"style_mixing_{group}.png" for group in ("coarse", "middle", "fine")} <= names
    assert {f"curves_{panel}.png" for panel in ("losses", "r1", "augment", "speed", "sec_per_kimg")} <= names
    assert "curves_training_metrics.png" in names  # train.metrics, e.g. FID against kimg
    assert "labels.png" in names
    assert "curves_path_length.png" not in names  # no pl_penalty column: that panel is left out


def test_full_report_figures_have_the_right_layout(full_report):
    images = full_report / "images"
    with PIL.Image.open(images / "samples_psi1.png") as grid:
        assert grid.size[0] % 16 == 0 and grid.size[0] * grid.size[1] >= 8 * 16 * 16
    with PIL.Image.open(images / "truncation_sweep.png") as sweep:
        assert sweep.size == (4 * 16, len(SMALL_PARAMS.grid_seeds[:6]) * 16)  # columns: psi, rows: seeds
    with PIL.Image.open(images / "style_mixing_coarse.png") as mixing:
        assert mixing.size == ((3 + 1) * 16, (2 + 1) * 16)
    with PIL.Image.open(images / "interpolation.webp") as animation:
        assert animation.n_frames == 3 * 3  # 3 seeds in a closed loop, 3 frames per transition
    # The external W average (zeros) is the centre of truncation: at psi 0 every seed is the same image.
    sweep = np.asarray(PIL.Image.open(images / "truncation_sweep.png"))
    column_psi0 = sweep[:, 16:32]
    first = column_psi0[:16]
    assert all(np.array_equal(first, column_psi0[r * 16 : (r + 1) * 16]) for r in range(6))


def test_full_report_tables(full_report):
    text = " ".join(" ".join(parse(full_report / "index.html").text).split())
    # Metrics: this run beside the previous runs, the unavailable metric with its reason (escaped).
    assert "42.12" in text and "40.5" in text and "45" in text
    assert "unavailable: detector weights unavailable <offline>" in text
    assert "pr50k3_full_precision" in text and "pr50k3_full_recall" in text and "0.25" in text
    assert "inception-v3-fid-helper" in text and "abababababab" in text and "vgg16" in text
    assert "k=3" in text and "1 min 15 s" in text
    # An unavailable metric: one line with how to enable it; the full story only in the cell's tooltip.
    assert "unavailable: vgg16 weights are not on this machine and the download failed (no network)" in text
    assert "Temporary failure" not in text and text.count("mirror-2") == 0
    assert 'title="vgg16: weights not found and download failed (mirror-1' in html_of(full_report)
    assert "G parameters 20.85 M" in text and "D parameters 23.88 M" in text
    assert text.index("Real and generated") < text.index("Uncurated samples")
    html = (full_report / "index.html").read_text()
    assert "&lt;offline&gt;" in html and "Test CPU &lt;x86&gt;" in html  # autoescaped
    # Params, data, skipped inputs, timings.
    assert "train.gamma 0.05 2.0" in text and '["fid50k_full"] ["kid50k_full"]' in text
    assert "2,000" in text and "0.2500" in text and "600 to 700" in text
    assert text.index("no face found 7") < text.index("unreadable image 3")  # most frequent first
    assert "total 10" in text
    assert "25 min 00 s" in text and "total 30 min 40 s" in text
    assert "lr" in text  # the column no panel draws is named
    assert "w_avg.npz" in text


def test_report_without_inputs_says_what_is_missing(tmp_path):
    index = render_report(
        tmp_path / "reports",
        report_params=SMALL_PARAMS,
        generator_path=tmp_path / "absent.safetensors",
        curves_path=None,
        metrics_path=tmp_path / "metrics" / "eval.json",
    )
    text = " ".join(" ".join(parse(index).text).split())
    assert f"No generator: {tmp_path / 'absent.safetensors'} does not exist." in text
    assert "No training curves: no file was given." in text
    assert f"No metrics: {tmp_path / 'metrics' / 'eval.json'} does not exist." in text
    assert "No dataset statistics were given." in text
    assert "No summary of skipped inputs was given." in text
    assert "No stage timings were given." in text and "No hardware description was given." in text
    assert "Every param has its default value." in text
    assert not parse(index).images


def test_rerender_replaces_old_figures(tmp_path):
    reports = tmp_path / "reports"
    (reports / "images").mkdir(parents=True)
    (reports / "images" / "stale.png").write_bytes(b"old")
    render_report(reports, report_params=SMALL_PARAMS)
    assert not (reports / "images" / "stale.png").exists()


def test_broken_inputs_are_errors_naming_the_file(tmp_path):
    metrics = tmp_path / "eval.json"
    metrics.write_text("{not json")
    with pytest.raises(ValueError, match="eval.json: not valid JSON"):
        render_report(tmp_path / "r", report_params=SMALL_PARAMS, metrics_path=metrics)
    metrics.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="eval.json: expected"):
        load_metrics(metrics)


def test_metric_rows_compare_with_previous_runs():
    rows = {row.key: row for row in metric_rows(METRICS, PREVIOUS)}
    assert list(rows) == [
        "fid50k_full",
        "kid50k_full",
        "pr50k3_full_precision",
        "pr50k3_full_recall",
        "ppl2_wend",
    ]
    fid = rows["fid50k_full"]
    assert fid.values == [42.1234, 40.5, 45.0] and fid.direction == "lower" and fid.best == 1
    precision = rows["pr50k3_full_precision"]
    # the MLflow run stored only a headline value for pr50k3_full; it is not mistaken for the precision key
    assert precision.values == [0.5, 0.75, None] and precision.direction == "higher" and precision.best == 1
    recall = rows["pr50k3_full_recall"]
    assert recall.values == [0.25, None, None] and recall.best is None
    kid = rows["kid50k_full"]
    assert kid.values == [None, None, None] and kid.reason == "detector weights unavailable <offline>"
    assert kid.detail is None  # nothing more to say than the reason
    ppl = rows["ppl2_wend"]
    assert ppl.reason == METRICS["ppl2_wend"]["brief"] and ppl.detail == METRICS["ppl2_wend"]["reason"]
    assert ppl.direction == "lower"


def test_metric_records_as_a_list_and_provenance(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps([{"name": name, **record} for name, record in METRICS.items()]))
    assert load_metrics(path) == {name: {"name": name, **record} for name, record in METRICS.items()}
    rows = {row.metric: row for row in provenance_rows(METRICS)}
    assert rows["pr50k3_full"].extractor == "vgg16" and rows["pr50k3_full"].sha256 == "cd" * 32
    assert rows["pr50k3_full"].other == {"k": "3", "time": "1 min 15 s"}
    assert rows["fid50k_full"].other == {"truncation_psi": "1"} and rows["fid50k_full"].num_real == 500


def test_params_diff_flattens_nested_sections():
    default = {
        "train": {"gamma": 0.05, "kimg": 40},
        "eval": {"metrics": ["fid50k_full"]},
        "report": {"psi": 0.7},
    }
    current = {"train": {"gamma": 2.0, "kimg": 40}, "eval": {"metrics": ["fid50k_full"]}, "extra": {"x": 1}}
    assert params_diff(default, current) == [
        ("extra.x", None, 1),
        ("report.psi", 0.7, None),
        ("train.gamma", 0.05, 2.0),
    ]


def test_durations_and_timing_bars():
    assert [format_duration(s) for s in (3.21, 75, 3600, 3725)] == [
        "3.2 s",
        "1 min 15 s",
        "1 h 00 min",
        "1 h 02 min",
    ]
    assert timing_rows({"a": 10.0, "b": 40.0}) == [("a", "10.0 s", 25.0), ("b", "40.0 s", 100.0)]


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_curves_tolerate_missing_columns(tmp_path, suffix):
    curves = write_curves(
        tmp_path / f"c{suffix}", {"tick": [0, 1, 2], "loss_D": [1.0, 0.5, 0.4], "note": list("abc")}
    )
    table = read_curves(curves)
    figures, unplotted = plot_curves(table, tmp_path / "plots")
    assert [f.title for f in figures] == ["Losses"] and unplotted == []
    with PIL.Image.open(figures[0].file) as image:
        assert image.width > 300


def test_a_panel_of_zeros_is_left_out(tmp_path):
    columns = {"kimg": [0, 2, 4], "loss_G": [1.0, 0.8, 0.7], "augment_p": [0.0] * 3}
    table = read_curves(write_curves(tmp_path / "c.tsv", columns))
    figures, unplotted = plot_curves(table, tmp_path / "plots")  # a run without augmentation
    assert [f.title for f in figures] == ["Losses"] and unplotted == []


def test_curves_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.tsv"):
        read_curves(tmp_path / "absent.tsv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.csv: not a readable CSV"):
        read_curves(empty)


def test_hardware_names_torch():
    info = describe_hardware()
    assert info["PyTorch"] == torch.__version__ and int(info["CPU cores"]) >= 1 and info["GPU"]


def test_samples_of_a_conditional_network_downscaled(tmp_path, monkeypatch):
    torch.manual_seed(1)
    network = StyleGAN2(
        z_dim=16,
        c_dim=2,
        w_dim=16,
        img_resolution=16,
        img_channels=3,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 256, "channel_max": 16},
    )
    monkeypatch.setattr(samples, "MAX_CELL", 8)  # store 16 px cells at 8 px, as 1024 px ones at 256
    params = SMALL_PARAMS.model_copy(update={"grid_seeds": [0, 1, 2, 3], "interpolation_seeds": [0, 1]})
    figures = samples.render_samples(Sampler(network), params, tmp_path)
    by_name = {f.file.name: f for f in figures}
    grid = by_name["samples_psi1.png"]
    assert "Classes cycle" in grid.caption and "Shown at 8 px, downscaled from 16." in grid.caption
    with PIL.Image.open(grid.file) as image:
        assert image.size == (4 * 8, 8)
    with PIL.Image.open(by_name["style_mixing_fine.png"].file) as image:
        assert image.size == (4 * 8, 3 * 8)
    with PIL.Image.open(by_name["interpolation.webp"].file) as image:
        assert image.size == (8, 8) and image.n_frames == 2 * 3
    assert "Class 0." in by_name["truncation_sweep.png"].caption


def test_comparison_rows_draw_the_training_images_classes(tmp_path):
    torch.manual_seed(2)
    network = StyleGAN2(
        z_dim=16,
        c_dim=3,
        w_dim=16,
        img_resolution=16,
        img_channels=3,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 256, "channel_max": 16},
    )
    G = Sampler(network)
    real = np.random.default_rng(1).integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    real_figure, generated = samples.render_comparison(G, real, [2, 0, 1], SMALL_PARAMS, tmp_path)
    assert np.array_equal(np.asarray(PIL.Image.open(real_figure.file)), np.concatenate(list(real), axis=1))
    expected = np.concatenate(list(G.generate([0, 1, 2], psi=1.0, class_idx=[2, 0, 1])), axis=1)
    assert np.array_equal(np.asarray(PIL.Image.open(generated.file)), expected)
    assert "Classes 2, 0, 1, as the training images above." in generated.caption
    [alone] = samples.render_comparison(G, None, None, SMALL_PARAMS, tmp_path)  # no training images given
    with PIL.Image.open(alone.file) as image:
        assert image.size == (8 * 16, 16)  # the first 8 grid seeds
    with pytest.raises(ValueError, match="real images are 8x8, the generator's 16 px"):
        samples.render_comparison(G, real[:, :8, :8], None, SMALL_PARAMS, tmp_path)
