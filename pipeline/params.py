"""The params schema: `params.yaml` is validated here before any stage does work.

Every section is a pydantic model with ``extra="forbid"``, so an unknown key, a wrong type or an
impossible value stops the run with a message naming the key. Stages call :func:`load_params` and read
only their own section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

PARAMS_FILE = "params.yaml"

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
ResizeFilter = Literal["lanczos", "box", "bilinear", "bicubic", "nearest"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _power_of_two(value: int, minimum: int = 4) -> int:
    if value < minimum or value & (value - 1):
        raise ValueError(f"must be a power of two >= {minimum}, got {value}")
    return value


# --- data ----------------------------------------------------------------------------------------


class DemoData(Section):
    count: Annotated[int, Field(ge=16)] = 2000
    resolution: Annotated[int, Field(ge=16, le=1024)] = 64
    seed: int = 0
    labels: bool = True


class FolderData(Section):
    path: str | None = None
    labels_from_subdirs: bool = False


class FFHQData(Section):
    variant: Literal["thumbnails128", "images1024", "in_the_wild"] = "thumbnails128"
    metadata_url: str = "https://drive.google.com/uc?id=16N0RV4fHI6joBuKbQAoG34V_cQk7vxSA"
    base_url: str | None = None
    max_images: PositiveInt | None = None
    workers: PositiveInt = 8
    retries: Annotated[int, Field(ge=0)] = 5


class Flowers102Data(Section):
    base_url: str = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102"


class DataParams(Section):
    source: Literal["demo", "folder", "ffhq", "flowers102"] = "demo"
    demo: DemoData = DemoData()
    folder: FolderData = FolderData()
    ffhq: FFHQData = FFHQData()
    flowers102: Flowers102Data = Flowers102Data()

    @model_validator(mode="after")
    def _folder_needs_path(self) -> DataParams:
        if self.source == "folder" and not self.folder.path:
            raise ValueError("data.folder.path must be set when data.source is 'folder'")
        return self


# --- align / prepare -----------------------------------------------------------------------------


class AlignParams(Section):
    method: Literal["ffhq", "center_crop", "none"] = "none"
    output_size: PositiveInt = 256
    transform_size: PositiveInt | None = None
    faces: Literal["largest", "all"] = "largest"
    min_face_size: Annotated[int, Field(ge=0)] = 0
    filter: ResizeFilter = "lanczos"
    workers: PositiveInt | None = None


class PrepareParams(Section):
    resolution: int = 32
    filter: ResizeFilter = "lanczos"
    crop: Literal["center", "pad"] = "center"  # how a non-square image becomes square
    shard_size: PositiveInt = 1000
    workers: PositiveInt | None = None

    @field_validator("resolution")
    @classmethod
    def _check_resolution(cls, value: int) -> int:
        return _power_of_two(value)


# --- model / train -------------------------------------------------------------------------------


class _ModelCommon(Section):
    z_dim: PositiveInt | None = None  # None: the preset's
    channel_base: PositiveInt | None = None
    channel_max: PositiveInt | None = None
    conditional: bool = False


class StyleGAN2Model(_ModelCommon):
    arch: Literal["stylegan2"] = "stylegan2"
    z_dim: PositiveInt = 512
    w_dim: PositiveInt = 512
    mapping_layers: PositiveInt | None = None
    conv_clamp: PositiveInt | None = 256
    num_fp16_res: Annotated[int, Field(ge=0)] = 4
    mbstd_group_size: PositiveInt | None = None
    mbstd_num_channels: PositiveInt = 1
    d_channel_base: PositiveInt | None = None  # D's widths when they differ from G's (None: G's)
    d_channel_max: PositiveInt | None = None


class StyleGAN3Model(_ModelCommon):
    arch: Literal["stylegan3"]
    config: Literal["t", "r"] = "t"  # alias-free config: T (translation) or R (translation and rotation)
    w_dim: PositiveInt = 512
    mapping_layers: PositiveInt | None = None
    conv_clamp: PositiveInt | None = 256
    num_fp16_res: Annotated[int, Field(ge=0)] = 4
    mbstd_group_size: PositiveInt | None = None
    mbstd_num_channels: PositiveInt = 1
    d_channel_base: PositiveInt | None = None  # D's widths when they differ from G's (None: G's)
    d_channel_max: PositiveInt | None = None
    blur_init_sigma: NonNegativeFloat | None = None  # None: the preset's (10 for R, 0 for T)
    blur_fade_kimg: NonNegativeFloat | None = None  # None: batch * 200 / 32
    magnitude_ema_beta: Annotated[float, Field(ge=0, lt=1)] | None = None  # None: 0.5 ** (batch / 20000)


class _Growth(Section):
    """Progressive growing (ProGAN, StyleGAN v1); None keeps the preset's value."""

    start_resolution: int | None = None
    fade_kimg: NonNegativeFloat | None = None
    stable_kimg: NonNegativeFloat | None = None
    batch_schedule: dict[int, PositiveInt] | None = None  # resolution -> global minibatch
    lr_schedule: dict[int, Annotated[float, Field(gt=0)]] | None = None  # resolution -> lr of G and D
    reset_optimizer: bool | None = None
    objective: Literal["wgangp", "logistic", "logistic_r1"] | None = None
    wgan_lambda: NonNegativeFloat | None = None
    wgan_target: Annotated[float, Field(gt=0)] | None = None
    epsilon_drift: NonNegativeFloat | None = None

    @field_validator("start_resolution")
    @classmethod
    def _check_start(cls, value: int | None) -> int | None:
        return value if value is None else _power_of_two(value)


class ProGANModel(_ModelCommon, _Growth):
    arch: Literal["progan"]
    mbstd_group_size: PositiveInt | None = None
    pixel_norm: bool | None = None
    acgan_weight: NonNegativeFloat | None = None


class StyleGAN1Model(_ModelCommon, _Growth):
    arch: Literal["stylegan1"]
    w_dim: PositiveInt | None = None
    mapping_layers: PositiveInt | None = None
    upsample_mode: Literal["bilinear", "nearest"] | None = None
    use_blur: bool | None = None
    use_noise: bool | None = None
    normalize_latents: bool | None = None
    const_init: Literal["zeros", "ones", "zero_normal", "one_normal"] | None = None
    mapping_lr_scale: Annotated[float, Field(gt=0)] | None = None


def _arch(value: Any) -> str:
    return value.get("arch", "stylegan2") if isinstance(value, dict) else getattr(value, "arch", "stylegan2")


#: ``model`` is a union on ``arch`` (default stylegan2): each family validates its own keys.
ModelParams = Annotated[
    Annotated[StyleGAN2Model, Tag("stylegan2")]
    | Annotated[ProGANModel, Tag("progan")]
    | Annotated[StyleGAN1Model, Tag("stylegan1")]
    | Annotated[StyleGAN3Model, Tag("stylegan3")],
    Discriminator(_arch),
]


class TrainParams(Section):
    cfg: str | None = None  # a preset of model.arch's family; None: its first (stylegan2: auto)
    kimg: Annotated[float, Field(gt=0)] = 25000
    batch: PositiveInt | None = None
    gamma: NonNegativeFloat | None = None
    ema_kimg: NonNegativeFloat | None = None
    ema_rampup: NonNegativeFloat | None = None
    lr_g: Annotated[float, Field(gt=0)] | None = None
    lr_d: Annotated[float, Field(gt=0)] | None = None
    r1_interval: PositiveInt = 16
    pl_weight: NonNegativeFloat = 2.0
    pl_interval: PositiveInt = 4
    style_mixing_prob: Annotated[float, Field(ge=0, le=1)] = 0.9
    mirror: bool = True
    aug: Literal["ada", "fixed", "noaug"] = "ada"
    augpipe: Literal["blit", "geom", "color", "bgc", "bgcf", "bgcfn", "bgcfnc"] = "bgc"
    aug_p: Annotated[float, Field(ge=0, le=1)] = 0.0
    ada_target: Annotated[float, Field(gt=0, lt=1)] = 0.6
    ada_kimg: Annotated[float, Field(gt=0)] = 500
    tick_kimg: Annotated[float, Field(gt=0)] = 4
    snapshot_kimg: Annotated[float, Field(gt=0)] = 50
    sample_seeds: list[int] = Field(default_factory=lambda: list(range(16)))
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    gpus: PositiveInt = 1
    workers: Annotated[int, Field(ge=0)] = 2
    checkpoint_root: str = ".cache/checkpoints"
    # Fine-tuning: a checkpoint (.pt), network (.safetensors), NVIDIA pickle (.pkl) or .npz; path or URL.
    resume_from: str | None = None
    resume_kimg: NonNegativeFloat = 0  # images the source counts as trained, for the schedules
    freeze_d: Annotated[int, Field(ge=0)] = 0  # Freeze-D: the first N layers of D stay fixed
    # Metrics of G_ema during training (e.g. [fid5k_full]), at the first snapshot after every `metric_kimg`
    # (None: every snapshot) and at the end; `export` picks the G_ema the stage writes: the last one, or
    # the snapshot with the best (lowest) value of the first FID in `metrics`.
    metrics: list[MetricName] = Field(default_factory=list)
    metric_kimg: Annotated[float, Field(gt=0)] | None = None
    export: Literal["last", "best_fid"] = "last"

    @model_validator(mode="after")
    def _best_fid_needs_a_fid(self) -> TrainParams:
        if self.export == "best_fid" and not any(name.startswith("fid") for name in self.metrics):
            raise ValueError(
                f"export=best_fid keeps the snapshot with the best FID: add one (e.g. fid5k_full) to "
                f"train.metrics (got {self.metrics})"
            )
        return self

    @field_validator("metrics")
    @classmethod
    def _one_number_each(cls, names: list[str]) -> list[str]:
        several = [name for name in names if name.startswith(("pr", "is"))]
        if several:  # the training curves and their chart have one column per metric
            raise ValueError(
                f"{', '.join(several)} gives several numbers; metrics during training are ones of a single "
                "number (FID, KID, PPL)"
            )
        return names


# --- w_avg / eval / report -----------------------------------------------------------------------


class WAvgParams(Section):
    num_samples: PositiveInt = 100_000
    batch: PositiveInt = 1024
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"


MetricName = Literal[
    "fid50k_full",
    "fid10k_full",
    "fid5k_full",
    "kid50k_full",
    "pr50k3_full",
    "pr_inception",
    "ppl2_wend",
    "ppl_zfull",
    "ppl_wfull",
    "ppl_zend",
    "ppl_wend",
    "is50k",
    "eqt50k_int",  # StyleGAN3's equivariance metrics; "not applicable" for other families
    "eqt50k_frac",
    "eqr50k",
]


class EvalParams(Section):
    metrics: list[MetricName] = Field(default_factory=lambda: ["fid50k_full", "kid50k_full", "pr50k3_full"])
    num_gen: PositiveInt = 50_000
    num_real: PositiveInt | None = None
    batch: PositiveInt = 64
    seed: int = 0
    truncation_psi: Annotated[float, Field(ge=-2, le=2)] = 1.0
    ppl_samples: PositiveInt = 50_000
    ppl_crop: bool | None = None  # None: each PPL metric's official face-crop setting
    device: Literal["auto", "cpu", "cuda"] = "auto"


class ReportParams(Section):
    psi: Annotated[float, Field(ge=-2, le=2)] = 0.7
    grid_seeds: list[int] = Field(default_factory=lambda: list(range(32)))
    truncation_sweep: list[float] = Field(default_factory=lambda: [-0.5, 0.0, 0.5, 0.7, 1.0, 1.5])
    mixing_rows: list[int] = Field(default_factory=lambda: [100, 101, 102, 103])
    mixing_cols: list[int] = Field(default_factory=lambda: [200, 201, 202, 203])
    interpolation_frames: PositiveInt = 48  # frames per transition between two seeds
    interpolation_seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3])
    directions: Annotated[int, Field(ge=0)] = 3  # top SeFa directions shown (0: none)
    project_images: Annotated[int, Field(ge=0)] = 0  # training images projected into W (0: none)
    project_steps: PositiveInt = 200


class Params(Section):
    data: DataParams = DataParams()
    align: AlignParams = AlignParams()
    prepare: PrepareParams = PrepareParams()
    model: ModelParams = StyleGAN2Model()
    train: TrainParams = TrainParams()
    w_avg: WAvgParams = WAvgParams()
    eval: EvalParams = EvalParams()
    report: ReportParams = ReportParams()


_ARCH_TAGS = ("stylegan2", "progan", "stylegan1", "stylegan3")


class ParamsError(ValueError):
    """A params file that does not fit the schema; the message names every offending key."""


def _describe(error: dict) -> str:
    loc = list(error["loc"])
    if loc[:1] == ["model"] and len(loc) > 1 and loc[1] in _ARCH_TAGS:  # the union's tag is not a key
        del loc[1]
    key = ".".join(str(part) for part in loc) or "<root>"
    if error["type"] == "union_tag_invalid":
        return f"{key}.arch: unknown model family {error['ctx']['tag']!r}; choose one of {list(_ARCH_TAGS)}"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if error["type"] == "value_error":
        return f"{key}: {error['ctx']['error']}" if loc else str(error["ctx"]["error"])
    got = repr(error["input"])
    got = got if len(got) <= 60 else got[:57] + "..."
    return f"{key}: {error['msg'][0].lower()}{error['msg'][1:]} (got {got})"


def parse_params(raw: dict, source: str = PARAMS_FILE) -> Params:
    """Validate a params mapping; raise :class:`ParamsError` naming each bad key."""
    try:
        return Params.model_validate(raw or {})
    except ValidationError as exc:
        lines = [_describe(error) for error in exc.errors()]
        raise ParamsError(f"invalid params in {source}:\n  " + "\n  ".join(lines)) from None


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"params file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    return parse_params(raw, str(path))
