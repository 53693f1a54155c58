"""Using a trained generator: sample grids, truncation, style mixing and latent interpolation.

:class:`Sampler` wraps any network with the StyleGAN generator interface (``mapping``, ``synthesis``,
``z_dim``, ``c_dim``, ``w_dim``, ``num_ws``, ``img_resolution``, ``mapping.w_avg``), so StyleGAN2, v1 and
v3 networks are used the same way. Latents follow NVIDIA's ``generate.py``: the z of seed ``s`` is
``np.random.RandomState(s).randn(z_dim)``, so a seed names the same image here and in the official tools.
Images are quantised as NVIDIA does, ``(x * 127.5 + 128).clamp(0, 255)`` truncated to uint8.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import PIL.Image
import torch
from tqdm import tqdm

from .archs.base import has_w_space, require_w_space
from .files import atomic_path
from .latents import truncate
from .serialization import load_network

__all__ = [
    "ANIMATION_FORMATS",
    "NoiseMode",
    "Sampler",
    "image_grid",
    "input_transform",
    "lerp",
    "load_w_avg",
    "parse_seeds",
    "quantize_images",
    "slerp",
    "style_layers",
    "to_pil",
    "z_from_seed",
]

NoiseMode = Literal["const", "random", "none"]
Space = Literal["z", "w"]
StyleGroup = Literal["coarse", "middle", "fine"]

NOISE_MODES = ("const", "random", "none")
MAX_SEED = 2**32 - 1
ANIMATION_FORMATS = (".gif", ".webp", ".png")

# The 1024 px StyleGAN split of the 18 ws: 4-8 px (coarse), 16-32 px (middle), 64-1024 px (fine).
_FULL_NUM_WS = 18
_FULL_BOUNDS = (4, 8)


# --- seeds and latents -----------------------------------------------------------------------------


def parse_seeds(text: str) -> list[int]:
    """Parse ``"0-7,10"`` into ``[0, 1, ..., 7, 10]``; ranges are inclusive, order is kept."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        first, dash, last = part.partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise ValueError(f"bad seed {part!r} in {text!r}: expected N or N-M with integers >= 0") from None
        if high < low:
            raise ValueError(f"bad seed range {part!r} in {text!r}: the end is before the start")
        seeds.extend(range(_check_seed(low), _check_seed(high) + 1))
    return seeds


def _check_seed(seed: int) -> int:
    if not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"seed {seed} is out of range: seeds are integers in [0, {MAX_SEED}]")
    return int(seed)


def z_from_seed(seed: int, z_dim: int) -> np.ndarray:
    """The latent of ``seed`` exactly as NVIDIA's generate.py draws it (float64)."""
    return np.random.RandomState(_check_seed(seed)).randn(z_dim)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Spherical interpolation along the last axis: directions turn by ``t`` of the angle, norms are lerped.

    At ``t = 0`` and ``1`` it returns ``a`` and ``b`` (up to rounding); the angle to ``a`` is ``t`` times
    the angle between them and the norm is ``(1 - t) |a| + t |b|``, so Gaussian latents stay on the shell
    where the mapping network was trained instead of cutting through the low-norm interior as a straight
    line does.
    """
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    norm_a = a.norm(dim=-1, keepdim=True)
    norm_b = b.norm(dim=-1, keepdim=True)
    unit_a, unit_b = a / norm_a, b / norm_b
    cos = (unit_a * unit_b).sum(dim=-1, keepdim=True).clamp(-1, 1)
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    # Nearly parallel directions: the sine ratio tends to the linear weights.
    parallel = sin.abs() < 1e-6
    safe_sin = torch.where(parallel, torch.ones_like(sin), sin)
    weight_a = torch.where(parallel, 1 - t, torch.sin((1 - t) * omega) / safe_sin)
    weight_b = torch.where(parallel, t, torch.sin(t * omega) / safe_sin)
    direction = weight_a * unit_a + weight_b * unit_b
    direction = direction / direction.norm(dim=-1, keepdim=True)
    return direction * torch.lerp(norm_a, norm_b, t)


def lerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    return torch.lerp(a, b, torch.as_tensor(t, dtype=a.dtype, device=a.device))


def style_layers(styles: StyleGroup | Sequence[int], num_ws: int) -> list[int]:
    """The ws indices a style-mixing group names.

    At 1024 px (18 ws) the groups are the paper's: coarse = layers 0-3 (4-8 px), middle = 4-7
    (16-32 px), fine = 8-17 (64-1024 px). Smaller networks scale both boundaries by ``num_ws / 18``
    (rounded, every group keeps at least one layer), so the groups keep the same share of the synthesis
    depth whatever the resolution or architecture: 10 ws (64 px) split as 0-1 / 2-3 / 4-9.
    An explicit list of indices is checked and returned as is.
    """
    if isinstance(styles, str):
        if styles not in ("coarse", "middle", "fine"):
            raise ValueError(f"unknown style group {styles!r}: use coarse, middle, fine or a list of layers")
        if num_ws < 3:
            raise ValueError(f"the network has {num_ws} ws; style groups need at least 3")
        first = min(max(1, round(num_ws * _FULL_BOUNDS[0] / _FULL_NUM_WS)), num_ws - 2)
        second = min(max(first + 1, round(num_ws * _FULL_BOUNDS[1] / _FULL_NUM_WS)), num_ws - 1)
        bounds = {"coarse": (0, first), "middle": (first, second), "fine": (second, num_ws)}[styles]
        return list(range(*bounds))
    layers = [int(i) for i in styles]
    bad = [i for i in layers if not 0 <= i < num_ws]
    if not layers or bad:
        raise ValueError(f"style layers {layers} must be a non-empty list of indices in [0, {num_ws})")
    return layers


# --- images ---------------------------------------------------------------------------------------


def image_grid(images: np.ndarray | Sequence[np.ndarray], cols: int) -> PIL.Image.Image:
    """Tile uint8 ``[N, H, W, C]`` images row by row into ``cols`` columns; empty cells are black."""
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8 or images.shape[-1] not in (1, 3) or len(images) == 0:
        raise ValueError(
            f"expected a non-empty uint8 array [N, H, W, C] with C in (1, 3), "
            f"got {images.dtype} {list(images.shape)}"
        )
    if cols < 1:
        raise ValueError(f"cols must be at least 1, got {cols}")
    n, h, w, c = images.shape
    rows = -(-n // cols)
    canvas = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for i, image in enumerate(images):
        row, col = divmod(i, cols)
        canvas[row * h : (row + 1) * h, col * w : (col + 1) * w] = image
    return to_pil(canvas)


def to_pil(array: np.ndarray) -> PIL.Image.Image:
    """One uint8 ``[H, W, C]`` image as a PIL image (RGB, or L for one channel)."""
    return PIL.Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def quantize_images(images: torch.Tensor) -> np.ndarray:
    """Generator output NCHW float -> uint8 NHWC, as NVIDIA's generate.py."""
    return (images.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()


def load_w_avg(path: Path) -> torch.Tensor:
    """The ``w_avg`` tensor of a safetensors or npz file (neither format can run code when loaded)."""
    if not path.is_file():
        raise FileNotFoundError(f"W average file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(path))
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            tensors = {key: torch.from_numpy(data[key]) for key in data.files}
    else:
        raise ValueError(f"{path}: a W average file must be .safetensors or .npz")
    if "w_avg" not in tensors:
        raise ValueError(f"{path} holds no 'w_avg' tensor (keys: {sorted(tensors)})")
    return tensors["w_avg"].float()


def input_transform(translate: tuple[float, float], degrees: float) -> np.ndarray:
    """3x3 rotation by ``degrees`` then translation by ``translate`` of StyleGAN3's input grid, in the
    convention of its ``synthesis.input.transform`` (which holds the inverse of this matrix)."""
    s, c = np.sin(np.radians(degrees)), np.cos(np.radians(degrees))
    return np.array([[c, s, translate[0]], [-s, c, translate[1]], [0, 0, 1]], dtype=np.float64)


# --- the generator ---------------------------------------------------------------------------------


class Sampler:
    """A trained generator ready to sample from; see the module docstring for the conventions.

    The network is put in eval mode on ``device`` (in place, as ``Module.to`` does). ``w_avg`` overrides
    its tracked average as the centre of truncation (e.g. the estimate of the ``w_avg`` stage, from many
    more samples than the training EMA saw). A network without a W space (ProGAN) samples and
    interpolates in z; truncation and style mixing raise :class:`~stylegan.archs.MissingWSpaceError`.
    """

    def __init__(
        self, network: torch.nn.Module, w_avg: torch.Tensor | None = None, device: str | torch.device = "cpu"
    ) -> None:
        self.device = torch.device(device)
        self.network = network.eval().to(self.device)
        self.w_avg = None
        if not has_w_space(network):
            if w_avg is not None:
                require_w_space(network, "a W average")
            return
        tracked = network.mapping.w_avg
        if w_avg is None:
            w_avg = tracked
        elif tuple(w_avg.shape) != tuple(tracked.shape):
            raise ValueError(f"w_avg has shape {list(w_avg.shape)}, the network needs {list(tracked.shape)}")
        self.w_avg = w_avg.detach().to(self.device, torch.float32).clone()

    @classmethod
    def load(
        cls, path: str | Path, device: str | torch.device = "cpu", w_avg_path: str | Path | None = None
    ) -> Sampler:
        """Load a generator saved by :func:`stylegan.serialization.save_network` (``.safetensors``) or an
        official StyleGAN2-ADA generator exported to ``.npz``; no file format involved runs code."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"network file not found: {path}")
        if path.suffix == ".safetensors":
            network = load_network(path, device)
        elif path.suffix == ".npz":
            from .interop import load_official_npz

            network, _ = load_official_npz(path)
        else:
            raise ValueError(f"{path}: expected a .safetensors network or an official .npz export")
        w_avg = None if w_avg_path is None else load_w_avg(Path(w_avg_path))
        return cls(network, w_avg, device)

    # Shape of the network.
    @property
    def z_dim(self) -> int:
        return int(self.network.z_dim)

    @property
    def c_dim(self) -> int:
        return int(self.network.c_dim)

    @property
    def has_w_space(self) -> bool:
        return self.w_avg is not None

    @property
    def w_dim(self) -> int:
        return int(self.network.w_dim)

    @property
    def num_ws(self) -> int:
        return int(self.network.num_ws)

    @property
    def resolution(self) -> int:
        return int(self.network.img_resolution)

    # Latents.
    def latents(self, seeds: Sequence[int]) -> torch.Tensor:
        """z ``[N, z_dim]`` of each seed (see :func:`z_from_seed`)."""
        z = np.stack([z_from_seed(seed, self.z_dim) for seed in seeds])
        return torch.from_numpy(z).to(self.device, torch.float32)

    def labels(self, n: int, class_idx: int | Sequence[int] | None) -> torch.Tensor:
        """One-hot ``c [n, c_dim]``: one class for all, or one per sample; empty for unconditional nets."""
        if self.c_dim == 0:
            if class_idx is not None:
                raise ValueError("the network is unconditional; do not pass a class")
            return torch.zeros([n, 0], device=self.device)
        if class_idx is None:
            raise ValueError(f"the network is conditional ({self.c_dim} classes); pass a class index")
        classes = [class_idx] * n if isinstance(class_idx, int) else list(class_idx)
        if len(classes) != n:
            raise ValueError(f"got {len(classes)} classes for {n} samples")
        bad = [k for k in classes if not 0 <= k < self.c_dim]
        if bad:
            raise ValueError(f"class {bad[0]} is out of range: the network has classes 0..{self.c_dim - 1}")
        c = torch.zeros([n, self.c_dim], device=self.device)
        c[torch.arange(n), torch.tensor(classes)] = 1
        return c

    @torch.no_grad()
    def map(
        self,
        z: torch.Tensor,
        psi: float = 1.0,
        cutoff: int | None = None,
        class_idx: int | Sequence[int] | None = None,
    ) -> torch.Tensor:
        """ws ``[N, num_ws, w_dim]`` of z, truncated toward :attr:`w_avg` by ``psi`` in the first ``cutoff``
        layers (all when None), as the official mapping network does with its own average."""
        require_w_space(self.network, "mapping z to ws")
        ws = self.network.mapping(z.to(self.device), self.labels(len(z), class_idx), truncation_psi=1)
        return truncate(ws, self.w_avg, psi, cutoff)

    @torch.no_grad()
    def synthesize(
        self, ws: torch.Tensor, noise_mode: NoiseMode = "const", batch_size: int = 16, progress: bool = False
    ) -> np.ndarray:
        """uint8 images ``[N, H, W, C]`` of ws, ``batch_size`` at a time."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"unknown noise_mode {noise_mode!r}; use one of {NOISE_MODES}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        chunks = []
        with tqdm(total=len(ws), unit="img", desc="synthesis", disable=not progress) as bar:
            for start in range(0, len(ws), batch_size):
                batch = ws[start : start + batch_size].to(self.device)
                chunks.append(quantize_images(self.network.synthesis(batch, noise_mode=noise_mode)))
                bar.update(len(batch))
        return np.concatenate(chunks)

    def generate(
        self,
        seeds: Sequence[int],
        psi: float = 1.0,
        cutoff: int | None = None,
        noise_mode: NoiseMode = "const",
        class_idx: int | Sequence[int] | None = None,
        batch_size: int = 16,
        progress: bool = False,
    ) -> np.ndarray:
        """uint8 images ``[len(seeds), H, W, C]``, one per seed; ``class_idx`` is one class or one per seed.

        Seeds are mapped and synthesised ``batch_size`` at a time, so memory does not grow with their number.
        """
        if len(seeds) == 0:
            raise ValueError("no seeds given")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        per_seed = class_idx is not None and not isinstance(class_idx, int)
        if per_seed and len(class_idx) != len(seeds):
            raise ValueError(f"got {len(class_idx)} classes for {len(seeds)} seeds")
        chunks = []
        with tqdm(total=len(seeds), unit="img", desc="generate", disable=not progress) as bar:
            for start in range(0, len(seeds), batch_size):
                chunk = slice(start, start + batch_size)
                classes = list(class_idx[chunk]) if per_seed else class_idx
                z = self.latents(seeds[chunk])
                if self.has_w_space:
                    chunks.append(self.synthesize(self.map(z, psi, cutoff, classes), noise_mode, batch_size))
                else:
                    chunks.append(self._images_of_z(z, psi, classes))
                bar.update(len(z))
        return np.concatenate(chunks)

    @torch.no_grad()
    def _images_of_z(self, z: torch.Tensor, psi: float, class_idx: int | Sequence[int] | None) -> np.ndarray:
        """uint8 images of ``G(z, c)`` for a network without W space (no truncation possible)."""
        if psi != 1:
            require_w_space(self.network, f"truncation (psi={psi})")
        return quantize_images(self.network(z, self.labels(len(z), class_idx)))

    def style_mixing_grid(
        self,
        row_seeds: Sequence[int],
        col_seeds: Sequence[int],
        col_styles: StyleGroup | Sequence[int] = "middle",
        psi: float = 1.0,
        noise_mode: NoiseMode = "const",
        class_idx: int | None = None,
    ) -> PIL.Image.Image:
        """NVIDIA's style-mixing figure: a black corner, the column seeds along the top, the row seeds down
        the left, and in cell (r, c) the ws of row seed r with the ``col_styles`` layers taken from column
        seed c (see :func:`style_layers` for the named groups)."""
        require_w_space(self.network, "style mixing")
        if not row_seeds or not col_seeds:
            raise ValueError("style mixing needs at least one row seed and one column seed")
        layers = style_layers(col_styles, self.num_ws)
        row_ws = self.map(self.latents(row_seeds), psi, class_idx=class_idx)
        col_ws = self.map(self.latents(col_seeds), psi, class_idx=class_idx)
        mixed = row_ws[:, None].repeat(1, len(col_seeds), 1, 1)
        mixed[:, :, layers] = col_ws[None, :, layers]
        # Lay the ws out as the figure: a row of [corner, column seeds], then one [row seed, mixes] per row.
        header = torch.cat([torch.zeros_like(col_ws[:1]), col_ws])
        body = torch.cat([row_ws[:, None], mixed], dim=1)
        images = self.synthesize(torch.cat([header[None], body]).flatten(0, 1), noise_mode)
        images[0] = 0
        return image_grid(images, cols=len(col_seeds) + 1)

    def truncation_sweep(
        self,
        seeds: Sequence[int],
        psis: Sequence[float],
        cutoff: int | None = None,
        noise_mode: NoiseMode = "const",
        class_idx: int | None = None,
    ) -> PIL.Image.Image:
        """A grid with one row per seed and one column per psi, all truncated toward :attr:`w_avg`."""
        require_w_space(self.network, "a truncation sweep")
        if not seeds or not psis:
            raise ValueError("a truncation sweep needs at least one seed and one psi")
        z = self.latents(seeds)
        swept = torch.stack([self.map(z, psi, cutoff, class_idx) for psi in psis], dim=1)
        return image_grid(self.synthesize(swept.flatten(0, 1), noise_mode), cols=len(psis))

    def interpolation_ws(
        self,
        seeds: Sequence[int],
        frames_per_transition: int,
        space: Space = "z",
        psi: float = 1.0,
        class_idx: int | None = None,
    ) -> torch.Tensor:
        """ws of a closed loop through ``seeds``: ``frames_per_transition`` frames from each seed to the next,
        the last back to the first, by :func:`slerp` in z or :func:`lerp` in w (after truncation)."""
        if len(seeds) < 2:
            raise ValueError(f"interpolation needs at least 2 seeds, got {list(seeds)}")
        if frames_per_transition < 1:
            raise ValueError(f"frames_per_transition must be at least 1, got {frames_per_transition}")
        if space not in ("z", "w"):
            raise ValueError(f"unknown interpolation space {space!r}; use 'z' or 'w'")
        if space == "w" or psi != 1:
            require_w_space(self.network, f"interpolation in W / with psi={psi}")
        t = torch.arange(frames_per_transition, device=self.device, dtype=torch.float32)[:, None]
        t = t / frames_per_transition
        z = self.latents(seeds)
        starts, ends = z, z.roll(-1, dims=0)
        if space == "z":
            path = torch.cat([slerp(a[None], b[None], t) for a, b in zip(starts, ends, strict=True)])
            return self.map(path, psi, class_idx=class_idx)
        ws = self.map(z, psi, class_idx=class_idx)
        t = t[:, :, None]
        return torch.cat([lerp(a[None], b[None], t) for a, b in zip(ws, ws.roll(-1, dims=0), strict=True)])

    def _z_loop_images(
        self, seeds: Sequence[int], frames_per_transition: int, class_idx: int | None, batch_size: int
    ) -> np.ndarray:
        """Frames of the closed slerp loop through ``seeds`` in z, for a network without W space."""
        if len(seeds) < 2 or frames_per_transition < 1:
            raise ValueError("interpolation needs at least 2 seeds and 1 frame per transition")
        t = torch.arange(frames_per_transition, device=self.device, dtype=torch.float32)[:, None]
        z = self.latents(seeds)
        t = t / frames_per_transition
        path = torch.cat([slerp(a[None], b[None], t) for a, b in zip(z, z.roll(-1, 0), strict=True)])
        return np.concatenate([self._images_of_z(chunk, 1.0, class_idx) for chunk in path.split(batch_size)])

    @property
    def has_input_transform(self) -> bool:
        """StyleGAN3: the Fourier-feature input takes a user transform (``G.synthesis.input.transform``)."""
        return hasattr(getattr(getattr(self.network, "synthesis", None), "input", None), "transform")

    @torch.no_grad()
    def input_transform_frames(
        self,
        seed: int,
        frames: int = 48,
        max_translate: float = 0.25,
        max_rotate: float = 15.0,
        psi: float = 1.0,
        class_idx: int | None = None,
    ) -> np.ndarray:
        """uint8 frames of one seed while the input is translated on a circle of radius ``max_translate``
        (in units of the image) and rotated back and forth by up to ``max_rotate`` degrees: the paper's
        "texture sticking" test (details should move with the content, not stay glued to the pixels).

        The generator's own transform is restored afterwards. StyleGAN3 generators only."""
        if not self.has_input_transform:
            raise ValueError(
                f"{type(self.network).__name__} has no transformable input: moving the input applies to "
                "StyleGAN3 generators only"
            )
        if frames < 2:
            raise ValueError(f"frames must be at least 2, got {frames}")
        ws = self.map(self.latents([seed]), psi, class_idx=class_idx)
        transform = self.network.synthesis.input.transform
        saved = transform.clone()
        images = []
        try:
            for t in np.arange(frames) / frames:
                angle = 2 * np.pi * t
                matrix = input_transform(
                    (max_translate * np.cos(angle), max_translate * np.sin(angle)), max_rotate * np.sin(angle)
                )
                transform.copy_(torch.from_numpy(np.linalg.inv(matrix)).to(transform))
                images.append(quantize_images(self.network.synthesis(ws)))
        finally:
            transform.copy_(saved)
        return np.concatenate(images)

    def interpolate(
        self,
        seeds: Sequence[int],
        path: str | Path,
        frames_per_transition: int = 24,
        space: Space = "z",
        psi: float = 1.0,
        noise_mode: NoiseMode = "const",
        class_idx: int | None = None,
        frame_ms: int = 40,
        size: int | None = None,
        batch_size: int = 16,
        progress: bool = False,
    ) -> Path:
        """Write a looping animation through ``seeds`` (see :meth:`interpolation_ws`) to ``path``.

        The format follows the suffix: ``.webp`` (lossy, small), ``.gif`` (256 colours) or ``.png`` (APNG).
        Each frame shows for ``frame_ms`` milliseconds; the file holds ``len(seeds) * frames_per_transition``
        frames of ``size`` pixels per side (default: the network's resolution; others are resampled with
        Lanczos).
        """
        path = Path(path)
        if path.suffix.lower() not in ANIMATION_FORMATS:
            raise ValueError(f"{path}: an animation must end in one of {ANIMATION_FORMATS}")
        if self.has_w_space:
            ws = self.interpolation_ws(seeds, frames_per_transition, space, psi, class_idx)
            images = self.synthesize(ws, noise_mode, batch_size, progress)
        else:
            images = self._z_loop_images(seeds, frames_per_transition, class_idx, batch_size)
        frames = [to_pil(image) for image in images]
        if size is not None and size != self.resolution:
            frames = [frame.resize((size, size), PIL.Image.Resampling.LANCZOS) for frame in frames]
        options = {"quality": 90} if path.suffix.lower() == ".webp" else {}
        with atomic_path(path) as tmp:  # never a half-written file, even on a full disk
            frames[0].save(tmp, PIL.Image.registered_extensions()[path.suffix.lower()], save_all=True,
                           append_images=frames[1:], duration=frame_ms, loop=0, **options)  # fmt: skip
        return path
