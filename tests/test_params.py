import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.params import ParamsError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_embedded_default_and_presets_validate():
    for path in [ROOT / "params.yaml", *sorted((ROOT / "configs").glob("*.yaml"))]:
        load_params(path)


def test_presets_are_complete_params_files():
    default_sections = set(yaml.safe_load((ROOT / "params.yaml").read_text()))
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        assert set(yaml.safe_load(path.read_text())) == default_sections, path.name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"prepare": {"resolution": 48}}, "prepare.resolution: must be a power of two"),
        ({"train": {"aug": "sometimes"}}, "train.aug: input should be 'ada', 'fixed' or 'noaug'"),
        ({"trian": {}}, "trian: unknown key"),
        ({"train": {"gama": 1.0}}, "train.gama: unknown key"),
        ({"train": {"kimg": -1}}, "train.kimg: input should be greater than 0"),
        ({"eval": {"metrics": ["fid50k"]}}, "eval.metrics.0: input should be"),
        ({"data": {"source": "folder"}}, "data.folder.path must be set"),
    ],
)
def test_bad_params_name_the_key(raw, expected):
    with pytest.raises(ParamsError, match="invalid params") as info:
        parse_params(raw)
    assert expected in str(info.value)


def test_params_file_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ParamsError, match="must hold a mapping"):
        load_params(path)


def test_stage_with_bad_params_exits_before_any_work(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"prepare": {"resolution": 100}}))
    result = subprocess.run(
        [sys.executable, "-m", "stages.prepare"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "prepare.resolution" in result.stderr
    assert "Nothing was run" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
