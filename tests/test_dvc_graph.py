"""Reading dvc.yaml into an ordered DAG."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.dvc_graph import DvcGraphError, load_pipeline, parse_pipeline

ROOT = Path(__file__).resolve().parents[1]
# check (the params file as a whole) comes first: every stage depends on it (see dvc.yaml).
DESIGN_ORDER = ["check", "download", "align", "prepare", "train", "w_avg", "evaluate", "report"]


def _pipeline(text: str):
    return parse_pipeline(yaml.safe_load(text), "test.yaml")


def test_the_project_dag_runs_in_the_designed_order():
    names = load_pipeline(ROOT / "dvc.yaml").names
    assert names[:4] == ["check", "download", "align", "prepare"]
    assert [name for name in names if name in DESIGN_ORDER] == [
        name for name in DESIGN_ORDER if name in names
    ]


def test_order_follows_outputs_into_deps_not_declaration():
    pipeline = _pipeline("""
        stages:
          summarise: {cmd: s, deps: [results/scores.json], metrics: [{summary.json: {cache: false}}]}
          score: {cmd: c, deps: [model.pt, data/clean], outs: [results]}
          train: {cmd: t, deps: [data/clean/part-0.csv], outs: [model.pt]}
          clean: {cmd: l, deps: [data/raw.csv], outs: [data/clean]}
    """)
    assert pipeline.names == ["clean", "train", "score", "summarise"]
    assert pipeline.upstream == {
        "clean": frozenset(),
        "train": frozenset({"clean"}),  # a file inside a produced folder
        "score": frozenset({"train", "clean"}),
        "summarise": frozenset({"score"}),  # a file inside a produced folder, through metrics as outputs
    }


def test_a_dep_on_a_folder_holding_an_output_depends_on_its_producer():
    pipeline = _pipeline("""
        stages:
          pack: {cmd: p, deps: [data], outs: [archive.tar]}
          fetch: {cmd: f, outs: [data/raw]}
    """)
    assert pipeline.names == ["fetch", "pack"]


def test_independent_stages_keep_their_declared_order():
    pipeline = _pipeline("""
        stages:
          zeta: {cmd: z, outs: [z]}
          alpha: {cmd: a, outs: [a]}
          join: {cmd: j, deps: [a, z], outs: [j]}
          mid: {cmd: m, outs: [m]}
    """)
    assert pipeline.names == ["zeta", "alpha", "join", "mid"]


def test_wdir_paths_are_resolved_from_the_repo_root():
    pipeline = _pipeline("""
        stages:
          use: {cmd: u, wdir: sub, deps: [../shared/table.csv], outs: [out]}
          make: {cmd: m, outs: [shared/table.csv]}
    """)
    assert pipeline.names == ["make", "use"]
    assert pipeline.stages[1].outs == ("sub/out",)


def test_select_keeps_a_target_and_its_upstream_in_order():
    pipeline = load_pipeline(ROOT / "dvc.yaml").select(["align"])
    assert pipeline.names == ["check", "download", "align"]
    with pytest.raises(DvcGraphError, match="unknown stage.*trian; stages are: check, download, align"):
        pipeline.select(["trian"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stages: {}", "expected a non-empty 'stages' mapping"),
        ("stages:\n  a: {deps: [x]}", "stage 'a': missing 'cmd'"),
        ("stages:\n  a: {cmd: c, outs: out}", "stage 'a', outs: expected a list"),
        (
            "stages:\n  a: {foreach: [1, 2], do: {cmd: c}}",
            "stage 'a': foreach/matrix stages are not supported",
        ),
        (
            "stages:\n  a: {cmd: c, outs: ['${item}.txt']}",
            "templated path '\\$\\{item\\}.txt' is not supported",
        ),
        (
            "stages:\n  a: {cmd: c, outs: [data]}\n  b: {cmd: c, outs: [data/x]}",
            "output 'data/x' of stage 'b' overlaps output 'data' of stage 'a'",
        ),
        (
            "stages:\n  a: {cmd: c, deps: [y], outs: [x]}\n  b: {cmd: c, deps: [x], outs: [y]}\n"
            "  c: {cmd: c, deps: [y]}",
            "dependency cycle a -> b -> a",
        ),
    ],
)
def test_bad_dvc_yaml_names_the_stage_and_the_problem(text: str, message: str):
    with pytest.raises(DvcGraphError, match=f"test.yaml: .*{message}"):
        _pipeline(text)


def test_missing_file_is_named(tmp_path: Path):
    with pytest.raises(DvcGraphError, match=f"{tmp_path / 'dvc.yaml'} not found"):
        load_pipeline(tmp_path / "dvc.yaml")
