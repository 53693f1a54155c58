"""Metrics of a generator by their StyleGAN2-ADA names, with a record of what produced each number.

:func:`compute_metrics` runs several metrics sharing work: the real images are read once and fed
to every detector needed (their features cached on disk under the caller's content key), and one
pass of generated images is fed to every detector. A metric whose detector weights cannot be had
comes back with ``available: False`` and the reason (URL and where to drop the file); the others
still run.

Names never overstate: a metric whose name states its number of generated images (``fid50k_full``:
50,000) and that is computed on another number reports under a name that states that one
(:func:`result_name`: ``fid300_full``), with a ``note`` saying so in words.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from stylegan.archs.base import has_w_space
from stylegan.devices import resolve_device

from .detectors import DetectorFile, DetectorStore, DetectorUnavailable
from .equivariance import equivariance_psnrs
from .feature_cache import cached_dataset_features, load_cached_features
from .features import Head, extract_features
from .frechet import fid_from_features
from .images import ImageBatch, iterate_batches, with_mirrors
from .inception import DEFAULT_INCEPTION
from .inception_score import inception_score
from .kid import kid_from_features
from .perceptual_path_length import ppl_distances, ppl_from_distances
from .precision_recall import precision_recall
from .sampling import LabelSampler, generate_images

FULL_INCEPTION = "inception-2015-12-05"
DEFAULT_NUM_GEN = 50_000
KID_SUBSETS, KID_MAX_SUBSET_SIZE, PR_NEIGHBOURHOOD, IS_SPLITS = 100, 1000, 3, 10

Features = Literal["inception", "inception_probs", "vgg16"]


@dataclass(frozen=True)
class FeatureMetric:
    """A metric on detector outputs of generated images and, except IS, real images."""

    name: str
    kind: Literal["fid", "kid", "pr", "is"]
    features: Features
    max_real: int | None = None  # the official cap on real images; None reads the whole dataset
    num_gen: int = DEFAULT_NUM_GEN  # generated images, as the name says (fid5k_full: 5,000)

    @property
    def needs_real(self) -> bool:
        return self.kind != "is"

    @property
    def params(self) -> dict[str, Any]:
        return {
            "fid": {},
            "kid": {"num_subsets": KID_SUBSETS, "max_subset_size": KID_MAX_SUBSET_SIZE},
            "pr": {"k": PR_NEIGHBOURHOOD},
            "is": {"num_splits": IS_SPLITS},
        }[self.kind]


@dataclass(frozen=True)
class PPLMetric:
    name: str
    space: Literal["z", "w"]
    sampling: Literal["full", "end"]
    crop: bool
    epsilon: float = 1e-4
    num_gen: int = DEFAULT_NUM_GEN  # sampled latent pairs


@dataclass(frozen=True)
class EquivarianceMetric:
    """StyleGAN3's EQ-T / EQ-T_frac / EQ-R: PSNR between transformed images and images of transformed
    inputs (:mod:`stylegan.metrics.equivariance`); only for generators with a transformable input."""

    name: str
    kind: Literal["eqt_int", "eqt_frac", "eqr"]
    num_gen: int = DEFAULT_NUM_GEN  # sampled latents

    @property
    def params(self) -> dict[str, Any]:
        return {"kind": self.kind, "translate_max": 0.125, "rotate_max": 1.0}


METRICS: dict[str, FeatureMetric | PPLMetric | EquivarianceMetric] = {
    m.name: m
    for m in (
        FeatureMetric("fid50k_full", "fid", "inception"),
        # Cheaper FIDs to follow training with (StyleGAN-XL and Projected GAN use fid10k_full): the same
        # definition over 10,000 or 5,000 generated images, against the whole dataset.
        FeatureMetric("fid10k_full", "fid", "inception", num_gen=10_000),
        FeatureMetric("fid5k_full", "fid", "inception", num_gen=5_000),
        FeatureMetric("kid50k_full", "kid", "inception", max_real=1_000_000),
        FeatureMetric("pr50k3_full", "pr", "vgg16", max_real=200_000),
        FeatureMetric("pr_inception", "pr", "inception", max_real=200_000),
        FeatureMetric("is50k", "is", "inception_probs"),
        PPLMetric("ppl2_wend", "w", "end", crop=False),
        PPLMetric("ppl_zfull", "z", "full", crop=True),
        PPLMetric("ppl_wfull", "w", "full", crop=True),
        PPLMetric("ppl_zend", "z", "end", crop=True),
        PPLMetric("ppl_wend", "w", "end", crop=True),
        EquivarianceMetric("eqt50k_int", "eqt_int"),
        EquivarianceMetric("eqt50k_frac", "eqt_frac"),
        EquivarianceMetric("eqr50k", "eqr"),
    )
}


def list_metrics() -> list[str]:
    return list(METRICS)


def _count_token(count: int) -> str:
    return f"{count // 1000}k" if count % 1000 == 0 else str(count)


def result_name(name: str, num_gen: int) -> str:
    """The name metric `name` reports under when computed on `num_gen` generated images (PPL: paths): its
    own when the name states that number or none, else the name with the number it was computed on in
    place of the stated one: ``fid50k_full`` on 300 images is ``fid300_full``, ``kid50k_full``
    ``kid300_full``, ``is50k`` ``is300``, ``pr50k3_full`` ``pr300_3_full`` (its 3 is the neighbourhood
    size), ``fid5k_full`` on 20,000 ``fid20k_full``. So nobody compares a 300-image FID with published
    50k values."""
    metric = METRICS[name]
    stated = _count_token(metric.num_gen)
    if num_gen == metric.num_gen or stated not in name:
        return name
    head, tail = name.split(stated, 1)
    token = _count_token(num_gen)
    if tail[:1].isdigit() and not token.endswith("k"):
        token += "_"
    return head + token + tail


def count_note(name: str, num_gen: int) -> str | None:
    """A sentence saying that metric `name` was computed on another number of images (PPL: paths) than its
    definition's, or None."""
    metric = METRICS[name]
    if num_gen == metric.num_gen:
        return None
    what = "sampled latent paths" if isinstance(metric, PPLMetric) else "generated images"
    reported = result_name(name, num_gen)
    called = f"{reported} is {name}" if reported != name else name
    why = "FID from fewer images is biased upwards" if name.startswith("fid") else "it is a noisier estimate"
    return (
        f"{called} computed on {num_gen:,} {what} instead of the {metric.num_gen:,} of its definition: "
        f"not comparable with published {name} values ({why})."
    )


def _min_cap(*caps: int | None) -> int | None:
    given = [c for c in caps if c is not None]
    return min(given) if given else None


def _choose_inception(store: DetectorStore, inception: str) -> str:
    """``auto``: NVIDIA's full file when already on disk (it also has the classifier), else fid-helper's."""
    if inception != "auto":
        return inception
    return FULL_INCEPTION if store.is_present(FULL_INCEPTION) else DEFAULT_INCEPTION


def _load_head(
    features: Features, store: DetectorStore, device: torch.device, inception: str
) -> tuple[Head, DetectorFile]:
    if features == "vgg16":
        vgg = store.load_vgg16("vgg16", device)
        return vgg.features, vgg.file
    name = _choose_inception(store, inception)
    net = store.load_inception(name, device)
    if features == "inception":
        return net.features, net.file
    if not net.has_probabilities:
        try:
            net = store.load_inception(FULL_INCEPTION, device)
        except DetectorUnavailable as err:
            raise DetectorUnavailable(
                f"{name} has no classifier; the Inception Score needs {err}",
                f"{name} has no classifier; the Inception Score needs {err.brief}",
            ) from err
    return net.probabilities, net.file


def _real_features(
    real_images: Iterable[ImageBatch],
    heads: dict[Features, tuple[Head, DetectorFile]],
    limit: int | None,
    batch_size: int,
    xflip: bool,
    device: torch.device,
    cache: tuple[str, str] | None,
    progress: bool,
) -> tuple[dict[Features, np.ndarray], bool]:
    """Features of up to ``limit`` real images per head: from the cache where present, else one shared pass.

    Returns the features and whether all of them came from the cache.
    """
    key = None if cache is None else f"{cache[1]}|xflip={xflip}|limit={limit}"

    def detector_id(features: Features) -> str:
        file = heads[features][1]
        return f"{file.spec.name}|{file.sha256}|{features}"

    found: dict[Features, np.ndarray] = {}
    if cache is not None:
        for features in heads:
            cached = load_cached_features(cache[0], key, detector_id(features))
            if cached is not None:
                found[features] = cached
    missing = {features: head for features, (head, _) in heads.items() if features not in found}
    if missing:
        batches = iterate_batches(real_images, batch_size)
        if xflip:
            batches = with_mirrors(batches)
        computed = extract_features(
            batches, missing, device, max_items=limit, desc="real features", progress=progress
        )
        for features, array in computed.items():
            if cache is not None:
                array = cached_dataset_features(cache[0], key, detector_id(features), lambda a=array: a)
            found[features] = array
    return found, not missing


def _feature_metric_values(
    metric: FeatureMetric, real: np.ndarray | None, gen: np.ndarray, seed: int, device: torch.device
) -> dict[str, float]:
    """The metric's numbers under their official result keys."""
    if metric.kind == "fid":
        return {metric.name: fid_from_features(real, gen)}
    if metric.kind == "kid":
        return {
            metric.name: kid_from_features(
                gen, real, KID_SUBSETS, KID_MAX_SUBSET_SIZE, seed=seed, device=device
            )
        }
    if metric.kind == "pr":
        precision, recall = precision_recall(real, gen, k=PR_NEIGHBOURHOOD, device=device)
        return {f"{metric.name}_precision": precision, f"{metric.name}_recall": recall}
    mean, std = inception_score(gen, IS_SPLITS)
    return {f"{metric.name}_mean": mean, f"{metric.name}_std": std}


@dataclass(frozen=True)
class _Run:
    """Sampling options shared by every metric of one call."""

    num_gen: int
    batch_size: int
    seed: int
    device: torch.device
    truncation_psi: float
    w_avg: np.ndarray | torch.Tensor | None
    label_sampler: LabelSampler | None
    progress: bool


def _available(values: dict[str, float], file: DetectorFile, **provenance: Any) -> dict[str, Any]:
    detector = {"name": file.spec.name, "sha256": file.sha256, "path": str(file.path)}
    return {
        "available": True,
        "value": next(iter(values.values())),
        "results": values,
        "reason": None,
        "detector": detector,
        **provenance,
    }


def _unavailable(reason: str, brief: str | None = None, **provenance: Any) -> dict[str, Any]:
    return {
        "available": False,
        "value": None,
        "results": {},
        "reason": reason,
        "brief": brief or reason,  # one line: the cause and how to enable the metric
        "detector": None,
        **provenance,
    }


def compute_metrics(
    names: Sequence[str],
    G: Any,
    real_images: Iterable[ImageBatch] | None = None,
    num_gen: int | None = None,
    max_real: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    device: torch.device | str | None = None,
    ppl_crop: bool | None = None,
    truncation_psi: float = 1.0,
    w_avg: np.ndarray | torch.Tensor | None = None,
    xflip: bool = False,
    label_sampler: LabelSampler | None = None,
    detectors: DetectorStore | None = None,
    inception: str = "auto",
    feature_cache_dir: str | None = None,
    dataset_key: str | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Compute the named metrics of generator ``G``; one result dict per name, in order.

    ``num_gen``: generated images (PPL: samples) for every metric; None gives each metric the count
    its name states (50k for the official metrics, 5k for ``fid5k_full``). ``real_images`` is a uint8
    NCHW array or yields such batches; ``max_real`` caps how many are read (each metric also applies
    its official cap); ``xflip`` follows every batch with its mirror image (so a cap below twice the
    dataset size keeps mirrors of the first batches).
    ``ppl_crop`` overrides the official face crop of the PPL metrics (None keeps it).
    ``truncation_psi`` truncates toward ``w_avg`` (default: the generator's own average).
    ``inception`` names the Inception detector; ``auto`` prefers NVIDIA's full file when it is on
    disk. ``detectors`` finds the weights (default: the user cache, downloads allowed). Real
    features are cached in ``feature_cache_dir`` under ``dataset_key`` when both are given.

    Each result holds ``name`` (:func:`result_name`: the metric's name with the number of images it
    was computed on), ``metric`` (the name asked for), ``available``, ``value`` (the headline number: FID,
    KID, precision, IS mean or PPL), ``results`` (every number under its key, named as ``name``), ``note``
    (when computed on another number of images than the definition's: that, in words), ``reason``
    (why it is unavailable; then ``brief`` says it in one line, with how to enable the metric), and
    what produced it: ``detector`` (name, sha256, path), ``num_real``, ``num_gen``, ``seed``,
    ``batch_size``, ``truncation_psi``, ``device``, ``params`` and ``timing`` in seconds (feature
    passes are shared by the metrics of one call, so their time appears in each metric that used
    them).
    """
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {list_metrics()}")
    if (num_gen is not None and num_gen < 1) or batch_size < 1:
        raise ValueError(f"num_gen and batch_size must be positive, got {num_gen} and {batch_size}")
    device = resolve_device(device)
    store = detectors or DetectorStore()
    metrics = [METRICS[name] for name in names]
    counts = {metric.name: metric.num_gen if num_gen is None else num_gen for metric in metrics}
    feature_metrics = [m for m in metrics if isinstance(m, FeatureMetric)]

    heads: dict[Features, tuple[Head, DetectorFile]] = {}
    reasons: dict[Features, DetectorUnavailable] = {}
    for features in sorted({m.features for m in feature_metrics}):
        try:
            heads[features] = _load_head(features, store, device, inception)
        except DetectorUnavailable as err:
            reasons[features] = err
    runnable = [m for m in feature_metrics if m.features in heads]

    real: dict[Features, np.ndarray] = {}
    timing = {"real_features_s": 0.0, "gen_features_s": 0.0}
    real_cached = False
    with_real = [m for m in runnable if m.needs_real]
    if with_real:
        if real_images is None:
            raise ValueError(f"metrics {[m.name for m in with_real]} need real_images")
        caps = [_min_cap(m.max_real, max_real) for m in with_real]
        limit = None if None in caps else max(caps)
        cache = (feature_cache_dir, dataset_key) if feature_cache_dir and dataset_key else None
        start = time.perf_counter()
        real_heads = {m.features: heads[m.features] for m in with_real}
        real, real_cached = _real_features(
            real_images, real_heads, limit, batch_size, xflip, device, cache, progress
        )
        timing["real_features_s"] = time.perf_counter() - start

    gen: dict[Features, np.ndarray] = {}
    if runnable:  # one pass for every metric; a metric of fewer images takes the first ones
        start = time.perf_counter()
        total = max(counts[m.name] for m in runnable)
        images = generate_images(G, total, batch_size, seed, device, truncation_psi, w_avg, label_sampler)
        gen_heads = {m.features: heads[m.features][0] for m in runnable}
        gen = extract_features(
            images, gen_heads, device, total=total, desc="generated features", progress=progress
        )
        timing["gen_features_s"] = time.perf_counter() - start

    common = {
        "seed": seed,
        "batch_size": batch_size,
        "truncation_psi": truncation_psi,
        "device": str(device),
    }
    results = []
    for metric in metrics:
        start = time.perf_counter()
        if isinstance(metric, EquivarianceMetric):
            count = counts[metric.name]
            record = _equivariance(metric, G, count, batch_size, seed, device, label_sampler, progress)
        elif isinstance(metric, PPLMetric):
            run = _Run(
                counts[metric.name], batch_size, seed, device, truncation_psi, w_avg, label_sampler, progress
            )
            record = _ppl(metric, G, store, run, ppl_crop)
            record["timing"] = {}
        elif metric.features in reasons:
            err = reasons[metric.features]
            record = _unavailable(str(err), err.brief, num_real=None, params=metric.params, timing={})
        else:
            real_set = (
                real[metric.features][: _min_cap(metric.max_real, max_real)] if metric.needs_real else None
            )
            gen_set = gen[metric.features][: counts[metric.name]]
            values = _feature_metric_values(metric, real_set, gen_set, seed, device)
            num_real = None if real_set is None else int(real_set.shape[0])
            record = _available(
                values,
                heads[metric.features][1],
                num_real=num_real,
                xflip=xflip,
                real_features_cached=real_cached,
                params=metric.params,
                timing=dict(timing),
            )
        record["timing"]["metric_s"] = time.perf_counter() - start
        count = counts[metric.name]
        reported = result_name(metric.name, count)  # the name states the count it was computed on
        record["results"] = {reported + k.removeprefix(metric.name): v for k, v in record["results"].items()}
        note = count_note(metric.name, count)
        extra = {"note": note} if note else {}
        results.append(
            {"name": reported, "metric": metric.name, **record, "num_gen": count, **common, **extra}
        )
    return results


def _equivariance(
    metric: EquivarianceMetric,
    G: Any,
    num_samples: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    label_sampler: LabelSampler | None,
    progress: bool,
) -> dict[str, Any]:
    if not hasattr(getattr(getattr(G, "synthesis", None), "input", None), "transform"):
        reason = f"not applicable: equivariance moves StyleGAN3's input; {type(G).__name__} has none"
        return _unavailable(reason, num_real=None, params=metric.params, timing={})
    psnr = equivariance_psnrs(
        G, num_samples, batch_size, seed, device, kinds=(metric.kind,), label_sampler=label_sampler,
        progress=progress,
    )[metric.kind]  # fmt: skip
    return {
        "available": True, "value": psnr, "results": {metric.name: psnr}, "reason": None, "detector": None,
        "num_real": None, "params": metric.params, "timing": {},
    }  # fmt: skip


def _ppl(metric: PPLMetric, G: Any, store: DetectorStore, run: _Run, ppl_crop: bool | None) -> dict[str, Any]:
    crop = metric.crop if ppl_crop is None else ppl_crop
    params = {"epsilon": metric.epsilon, "space": metric.space, "sampling": metric.sampling, "crop": crop}
    if not has_w_space(G):
        reason = (
            f"not applicable: PPL walks the mapping network's latent paths; {type(G).__name__} has no W space"
        )
        return _unavailable(reason, num_real=None, params=params)
    try:
        vgg = store.load_vgg16("vgg16", run.device)
    except DetectorUnavailable as err:
        return _unavailable(str(err), err.brief, num_real=None, params=params)
    distances = ppl_distances(
        G,
        vgg.lpips_features,
        run.num_gen,
        epsilon=metric.epsilon,
        space=metric.space,
        sampling=metric.sampling,
        crop=crop,
        batch_size=run.batch_size,
        seed=run.seed,
        device=run.device,
        truncation_psi=run.truncation_psi,
        w_avg=run.w_avg,
        label_sampler=run.label_sampler,
        progress=run.progress,
    )
    return _available({metric.name: ppl_from_distances(distances)}, vgg.file, num_real=None, params=params)


def compute_metric(
    name: str, G: Any, real_images: Iterable[ImageBatch] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """One metric; keyword arguments as :func:`compute_metrics`."""
    return compute_metrics([name], G, real_images, **kwargs)[0]
