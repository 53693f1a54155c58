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


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_preset_resolves_to_a_training_config_of_its_family(path):
    from pipeline.family_params import check_family_params
    from pipeline.training import training_config

    params = load_params(path)
    check_family_params(params)
    config = training_config(params, params.prepare.resolution)
    assert config.arch == params.model.arch


def test_stylegan1_preset_has_seed_000s_settings():
    from pipeline.training import training_config

    params = load_params(ROOT / "configs" / "stylegan1_ffhq256.yaml")
    config = training_config(params, 256)
    options = config.arch_options
    assert (config.z_dim, config.w_dim, config.lr_g, config.lr_d) == (256, 256, 0.001, 0.001)
    assert config.mapping_layers == 7  # t-ae's network.py
    assert (options["start_resolution"], options["fade_kimg"], options["stable_kimg"]) == (8, 1200, 1200)
    assert [options["batch_schedule"][2**level] for level in range(2, 9)] == [64, 64, 32, 32, 16, 8, 8]
    assert (options["upsample_mode"], options["use_blur"], options["objective"]) == (
        "bilinear",
        False,
        "wgangp",
    )
    assert options["mapping_lr_scale"] * config.lr_g == pytest.approx(1e-5)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"model": {"arch": "progan"}, "train": {"pl_weight": 1.0}},
            "train.pl_weight: not used by model.arch=progan",
        ),
        (
            {"model": {"arch": "stylegan1"}, "train": {"cfg": "auto"}},
            "train.cfg='auto': not a stylegan1 preset",
        ),
    ],
)
def test_train_keys_a_family_does_not_use_are_refused(raw, expected):
    from pipeline.family_params import check_family_params

    with pytest.raises(ParamsError, match=expected.replace("(", r"\(")):
        check_family_params(parse_params(raw))


def test_train_keys_a_family_does_not_use_may_be_turned_off():
    from pipeline.family_params import check_family_params

    for arch, cfg in (("progan", "paper"), ("stylegan1", "seed000")):
        params = parse_params(
            {"model": {"arch": arch}, "train": {"cfg": cfg, "pl_weight": 0, "style_mixing_prob": 0.0}}
        )
        check_family_params(params)  # the demo's params.yaml with another model.arch


def test_model_is_a_union_on_arch():
    assert type(parse_params({"model": {"arch": "progan", "fade_kimg": 3}}).model).__name__ == "ProGANModel"
    with pytest.raises(ParamsError, match="model.pixel_nrm: unknown key"):
        parse_params({"model": {"arch": "progan", "pixel_nrm": True}})
    with pytest.raises(ParamsError, match="model.arch: unknown model family 'stylegan9'"):
        parse_params({"model": {"arch": "stylegan9"}})
    with pytest.raises(ParamsError, match="model.w_dim: unknown key"):
        parse_params({"model": {"arch": "progan", "w_dim": 512}})
