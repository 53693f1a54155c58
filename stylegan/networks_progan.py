"""ProGAN generator and discriminator (Karras et al. 2018, "Progressive Growing of GANs").

They compute exactly what facebookresearch/pytorch_GAN_zoo's ``GNet`` and ``DNet``
(``models/networks/progressive_conv_net.py``) compute, so the zoo's weights import with identical outputs
(:mod:`stylegan.interop.progan_zoo`):

- equalized learning rate the zoo's way: weights are drawn from N(0, 1) and the layer's whole output,
  bias included, is multiplied by He's constant ``sqrt(2 / fan_in)`` at run time (``equalized_lr=False``:
  plain layers, He-initialised);
- leaky ReLU after every layer except toRGB and the decision layer; pixel norm (eps 1e-8) of the latent,
  of the 4x4 dense output and after every generator convolution;
- nearest-neighbour 2x upsampling, 2x2 average pooling;
- the zoo's minibatch standard deviation (see :class:`MinibatchStddev`).

Progressive growing: both networks hold the layers of every resolution up to ``img_resolution``; each
call picks the resolution being trained. ``alpha`` is the weight of the newest block (1 = fully grown):
the output is ``lerp(previous resolution's path, new block, alpha)``, so at ``alpha=0`` G's image is the
previous resolution's image upsampled and D sees the image downsampled. The zoo's own ``alpha`` is the
weight of the old path, i.e. ``1 - alpha``.

Labels (``c_dim > 0``) are the zoo's AC-GAN: G reads ``concat(z, c)`` as its latent (c: the one-hot
attribute codes, one group per attribute); D does not read labels and returns ``[N, 1 + c_dim]``:
column 0 is the real/fake logit, the other columns the class logits in the order of ``c``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stylegan.layers import check_shape, normalize_2nd_moment
from stylegan.serialization import register_network

START_RESOLUTION = 4
OUTPUT_ACTIVATIONS = ("linear", "tanh")


def _resolutions(img_resolution: int) -> list[int]:
    if img_resolution < START_RESOLUTION or img_resolution & (img_resolution - 1) != 0:
        raise ValueError(f"img_resolution must be a power of two >= {START_RESOLUTION}, got {img_resolution}")
    return [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]


def _channel_list(
    resolutions: list[int], channel_base: int, channel_max: int, channels: list[int] | None
) -> list[int]:
    """Feature maps per resolution: ``channels`` as given, else ``min(channel_base // res, channel_max)``."""
    if channels is None:
        return [min(channel_base // res, channel_max) for res in resolutions]
    if len(channels) != len(resolutions):
        raise ValueError(
            f"channels needs one entry per resolution {resolutions}, got {len(channels)}: {channels}"
        )
    return list(channels)


def _check_alpha(alpha: float) -> None:
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


def _check_labels(c: torch.Tensor | None, n: int, c_dim: int) -> torch.Tensor | None:
    if c is None and c_dim == 0:
        return None
    check_shape("c", c, [n, c_dim])
    return c


def _json_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(kwargs))
    except TypeError as e:
        raise TypeError(f"network arguments must be JSON-serialisable: {e}") from None


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class EqualizedLayer(nn.Module):
    """Dense layer (``kernel_size=None``) or same-padded convolution computing ``(w * x + b) * gain``.

    ``gain`` is ``sqrt(2 / fan_in)`` with equalized learning rate, else 1.
    """

    def __init__(
        self, in_features: int, out_features: int, kernel_size: int | None = None, equalized_lr: bool = True
    ) -> None:
        super().__init__()
        kernel = [] if kernel_size is None else [kernel_size, kernel_size]
        he_constant = math.sqrt(2 / (in_features * (kernel_size or 1) ** 2))
        init_std = 1.0 if equalized_lr else he_constant
        self.weight = nn.Parameter(torch.randn([out_features, in_features, *kernel]) * init_std)
        self.bias = nn.Parameter(torch.zeros([out_features]))
        self.gain = he_constant if equalized_lr else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.ndim == 2:
            x = F.linear(x, self.weight, self.bias)
        else:
            x = F.conv2d(x, self.weight, self.bias, padding=self.weight.shape[-1] // 2)
        return x * self.gain

    def extra_repr(self) -> str:
        return f"weight={list(self.weight.shape)}, gain={self.gain:.4g}"


class MinibatchStddev(nn.Module):
    """Appends one channel: the average standard deviation of the features over a group of samples.

    As pytorch_GAN_zoo's ``miniBatchStdDev``: groups are runs of ``g = min(group_size, N)`` consecutive
    samples, or the whole batch when ``N`` is not a multiple of ``g``; the variance is the unbiased one;
    with ``g = 1`` the channel is zero.
    """

    def __init__(self, group_size: int) -> None:
        super().__init__()
        if group_size < 1:
            raise ValueError(
                f"mbstd_group_size must be >= 1 (or None for no minibatch stddev), got {group_size}"
            )
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        if n % g != 0:
            g = n
        if g == 1:
            y = x.new_zeros([n, 1, h, w])
        else:
            y = (x.reshape(n // g, g, c, h, w).var(dim=1) + 1e-8).sqrt().mean(dim=[1, 2, 3])
            y = y.repeat_interleave(g).reshape(n, 1, 1, 1).expand(n, 1, h, w)
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


class GeneratorBlock(nn.Module):
    """One resolution: 3x3 conv (4x4) or 2x upsampling and two 3x3 convs, each followed by leaky ReLU and
    pixel norm; plus this resolution's toRGB layer (1x1 conv)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        img_channels: int,
        resolution: int,
        lrelu_slope: float,
        pixel_norm: bool,
        equalized_lr: bool,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.lrelu_slope = lrelu_slope
        self.pixel_norm = pixel_norm
        if resolution == START_RESOLUTION:
            self.conv = EqualizedLayer(out_channels, out_channels, 3, equalized_lr)
        else:
            self.conv0 = EqualizedLayer(in_channels, out_channels, 3, equalized_lr)
            self.conv1 = EqualizedLayer(out_channels, out_channels, 3, equalized_lr)
        self.torgb = EqualizedLayer(out_channels, img_channels, 1, equalized_lr)

    def activate(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(x, self.lrelu_slope)
        return normalize_2nd_moment(x) if self.pixel_norm else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features at this resolution from the features ``x`` of the previous one (or of the dense layer)."""
        if self.resolution == START_RESOLUTION:
            return self.activate(self.conv(x))
        x = self.activate(self.conv0(_upsample(x)))
        return self.activate(self.conv1(x))


@register_network
class ProGANGenerator(nn.Module):
    """ProGAN generator: ``img = G(z, c, resolution, alpha)``; no W space.

    Args:
        z_dim: latent dimensionality.
        c_dim: label dimensionality (0 = unconditional); labels are appended to the latent (AC-GAN).
        img_resolution: highest output resolution (power of two >= 4).
        img_channels: output colour channels.
        channel_base, channel_max: feature maps at resolution ``res``: ``min(channel_base // res,
            channel_max)``; the defaults give the paper's 512 up to 32x32, halving at every step above.
        channels: explicit feature maps instead, one per resolution from 4x4 up.
        pixel_norm: pixel norm of the latent and of every layer's features.
        lrelu_slope: negative slope of the leaky ReLUs.
        equalized_lr: equalized learning rate.
        output_activation: 'linear' or 'tanh' (the zoo's MSE and DCGAN losses), applied after the fade-in.
    """

    start_resolution = START_RESOLUTION

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        img_resolution: int,
        img_channels: int = 3,
        channel_base: int = 16384,
        channel_max: int = 512,
        channels: list[int] | None = None,
        pixel_norm: bool = True,
        lrelu_slope: float = 0.2,
        equalized_lr: bool = True,
        output_activation: str = "linear",
    ) -> None:
        super().__init__()
        if z_dim + c_dim < 1:
            raise ValueError(f"the generator needs z_dim + c_dim >= 1, got z_dim={z_dim}, c_dim={c_dim}")
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}"
            )
        self.resolutions = _resolutions(img_resolution)
        channels = _channel_list(self.resolutions, channel_base, channel_max, channels)
        self.init_kwargs = _json_kwargs(
            dict(
                z_dim=z_dim,
                c_dim=c_dim,
                img_resolution=img_resolution,
                img_channels=img_channels,
                channel_base=channel_base,
                channel_max=channel_max,
                channels=channels,
                pixel_norm=pixel_norm,
                lrelu_slope=lrelu_slope,
                equalized_lr=equalized_lr,
                output_activation=output_activation,
            )
        )
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.pixel_norm = pixel_norm
        self.output_activation = output_activation
        self.dense = EqualizedLayer(z_dim + c_dim, channels[0] * 16, equalized_lr=equalized_lr)
        for idx, res in enumerate(self.resolutions):
            block = GeneratorBlock(
                channels[max(idx - 1, 0)],
                channels[idx],
                img_channels,
                resolution=res,
                lrelu_slope=lrelu_slope,
                pixel_norm=pixel_norm,
                equalized_lr=equalized_lr,
            )
            setattr(self, f"b{res}", block)

    def forward(
        self, z: torch.Tensor, c: torch.Tensor | None, resolution: int | None = None, alpha: float = 1.0
    ) -> torch.Tensor:
        """Images ``[N, img_channels, resolution, resolution]`` (default resolution: ``img_resolution``).

        With ``alpha < 1`` (above 4x4) the image is ``lerp(up(toRGB of resolution / 2), toRGB, alpha)``.
        """
        resolution = self.img_resolution if resolution is None else resolution
        if resolution not in self.resolutions:
            raise ValueError(f"resolution must be one of {self.resolutions}, got {resolution}")
        _check_alpha(alpha)
        check_shape("z", z, [None, self.z_dim])
        c = _check_labels(c, z.shape[0], self.c_dim)
        x = z if c is None else torch.cat([z, c.to(z.dtype)], dim=1)
        if self.pixel_norm:
            x = normalize_2nd_moment(x)
        x = self.b4.activate(self.dense(x).reshape(z.shape[0], -1, 4, 4))

        prev = None
        for res in self.resolutions[: self.resolutions.index(resolution) + 1]:
            prev, x = x, getattr(self, f"b{res}")(x)
        img = getattr(self, f"b{resolution}").torgb(x)
        if resolution > START_RESOLUTION and alpha < 1:
            old = _upsample(getattr(self, f"b{resolution // 2}").torgb(prev))
            img = (1 - alpha) * old + alpha * img
        return torch.tanh(img) if self.output_activation == "tanh" else img


class DiscriminatorBlock(nn.Module):
    """One resolution above 4x4: fromRGB (1x1 conv), two 3x3 convs with leaky ReLU, 2x2 average pooling."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        img_channels: int,
        lrelu_slope: float,
        equalized_lr: bool,
    ) -> None:
        super().__init__()
        self.lrelu_slope = lrelu_slope
        self.fromrgb = EqualizedLayer(img_channels, in_channels, 1, equalized_lr)
        self.conv0 = EqualizedLayer(in_channels, in_channels, 3, equalized_lr)
        self.conv1 = EqualizedLayer(in_channels, out_channels, 3, equalized_lr)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv0(x), self.lrelu_slope)
        x = F.leaky_relu(self.conv1(x), self.lrelu_slope)
        return F.avg_pool2d(x, 2)


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 resolution: fromRGB, minibatch stddev, 3x3 conv, dense layer, decision layer."""

    def __init__(
        self,
        channels: int,
        img_channels: int,
        out_features: int,
        mbstd_group_size: int | None,
        lrelu_slope: float,
        equalized_lr: bool,
    ) -> None:
        super().__init__()
        self.lrelu_slope = lrelu_slope
        self.fromrgb = EqualizedLayer(img_channels, channels, 1, equalized_lr)
        self.mbstd = MinibatchStddev(mbstd_group_size) if mbstd_group_size is not None else None
        self.conv = EqualizedLayer(channels + (self.mbstd is not None), channels, 3, equalized_lr)
        self.fc = EqualizedLayer(channels * 16, channels, equalized_lr=equalized_lr)
        self.out = EqualizedLayer(channels, out_features, equalized_lr=equalized_lr)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = F.leaky_relu(self.conv(x), self.lrelu_slope)
        x = F.leaky_relu(self.fc(x.flatten(1)), self.lrelu_slope)
        return self.out(x)


@register_network
class ProGANDiscriminator(nn.Module):
    """ProGAN discriminator: ``logits [N, 1 + c_dim] = D(img, c, alpha)`` at the resolution of ``img``.

    Args:
        c_dim: number of AC-GAN class logits after the real/fake logit (0 = unconditional).
        img_resolution, img_channels: largest input image shape.
        channel_base, channel_max, channels: as in :class:`ProGANGenerator`.
        mbstd_group_size: minibatch stddev group size (None = no minibatch stddev layer).
        lrelu_slope, equalized_lr: as in :class:`ProGANGenerator`.
        fade_in_at_8: False reproduces a quirk of pytorch_GAN_zoo's ``DNet``, which only blends when it
            has more than one scale above 4x4 (``len(self.scaleLayers) > 1``), so that at 8x8 it ignores
            alpha; the importer sets it. Keep True for training: the fade-in is then continuous.
    """

    start_resolution = START_RESOLUTION

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        img_channels: int = 3,
        channel_base: int = 16384,
        channel_max: int = 512,
        channels: list[int] | None = None,
        mbstd_group_size: int | None = 4,
        lrelu_slope: float = 0.2,
        equalized_lr: bool = True,
        fade_in_at_8: bool = True,
    ) -> None:
        super().__init__()
        self.resolutions = _resolutions(img_resolution)
        channels = _channel_list(self.resolutions, channel_base, channel_max, channels)
        self.init_kwargs = _json_kwargs(
            dict(
                c_dim=c_dim,
                img_resolution=img_resolution,
                img_channels=img_channels,
                channel_base=channel_base,
                channel_max=channel_max,
                channels=channels,
                mbstd_group_size=mbstd_group_size,
                lrelu_slope=lrelu_slope,
                equalized_lr=equalized_lr,
                fade_in_at_8=fade_in_at_8,
            )
        )
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.lrelu_slope = lrelu_slope
        self.fade_in_at_8 = fade_in_at_8
        for idx, res in enumerate(self.resolutions[1:], start=1):
            block = DiscriminatorBlock(
                channels[idx], channels[idx - 1], img_channels, lrelu_slope, equalized_lr
            )
            setattr(self, f"b{res}", block)
        self.b4 = DiscriminatorEpilogue(
            channels[0], img_channels, 1 + c_dim, mbstd_group_size, lrelu_slope, equalized_lr
        )

    def _fromrgb(self, img: torch.Tensor, resolution: int) -> torch.Tensor:
        return F.leaky_relu(getattr(self, f"b{resolution}").fromrgb(img), self.lrelu_slope)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None, alpha: float = 1.0) -> torch.Tensor:
        """With ``alpha < 1`` (above 4x4) the newest block's output is blended with
        ``fromRGB(avg_pool(img))`` of the resolution below: ``lerp(old, new, alpha)``."""
        check_shape("img", img, [None, self.img_channels, None, None])
        resolution = img.shape[-1]
        if img.shape[-2] != resolution or resolution not in self.resolutions:
            raise ValueError(
                f"img must be square with a side in {self.resolutions}, got {list(img.shape[-2:])}"
            )
        _check_alpha(alpha)
        _check_labels(c, img.shape[0], self.c_dim)

        x = self._fromrgb(img, resolution)
        if resolution > START_RESOLUTION:
            x = getattr(self, f"b{resolution}")(x)
            if alpha < 1 and (resolution > 8 or self.fade_in_at_8):
                old = self._fromrgb(F.avg_pool2d(img, 2), resolution // 2)
                x = (1 - alpha) * old + alpha * x
            for res in reversed(self.resolutions[1 : self.resolutions.index(resolution)]):
                x = getattr(self, f"b{res}")(x)
        return self.b4(x)
