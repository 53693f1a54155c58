"""StyleGAN (v1) generator and discriminator with progressive growing (Karras et al. 2019).

The networks compute what seed 000's implementation (t-ae/style-gan-pytorch ``network.py``) computes,
so its weights import with exact outputs (:mod:`stylegan.interop.stylegan1_tae`). Its conventions:

- equalized learning rate puts the He gain sqrt(2) into the runtime weight scale; leaky ReLU has no gain;
- mapping: the label embedding is concatenated to ``z`` before the pixel norm, and every layer, the last
  one included, ends in a leaky ReLU;
- each synthesis layer is (upsample, conv, blur), noise, leaky ReLU, AdaIN, where AdaIN is an instance
  norm followed by ``scale * x + bias`` with scale and bias affine maps of ``w`` (the scale has no +1);
- progressive growing: every resolution has its toRGB (generator) and fromRGB (discriminator) layer;
  while a resolution fades in, ``alpha`` (the weight of the newest block) blends it with the
  neighbouring resolution's path, resampled by ``torch.nn.functional.interpolate``;
- the discriminator has no minibatch standard deviation; with labels it outputs one logit per label and
  returns the one of the given label.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stylegan import latents
from stylegan.layers import check_shape, normalize_2nd_moment
from stylegan.serialization import register_network

RESAMPLE_MODES = ("nearest", "nearest-exact", "bilinear", "bicubic", "area")
NOISE_MODES = ("random", "const", "none")
CONST_INITS = ("zeros", "ones", "zero_normal", "one_normal")
START_RESOLUTION = 4
_HE_GAIN = math.sqrt(2)
_LRELU_SLOPE = 0.2
_ADAIN_EPSILON = 1e-8


def channel_count(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at ``resolution``: ``min(channel_base // resolution, channel_max)``."""
    return min(channel_base // resolution, channel_max)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, _LRELU_SLOPE)


def _resample(x: torch.Tensor, factor: float, mode: str) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode=mode)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {choices}")


def _check_img_resolution(img_resolution: int) -> None:
    if img_resolution < START_RESOLUTION or img_resolution & (img_resolution - 1) != 0:
        raise ValueError(f"img_resolution must be a power of two >= {START_RESOLUTION}, got {img_resolution}")


def _check_resolution(resolution: int, img_resolution: int) -> None:
    if not START_RESOLUTION <= resolution <= img_resolution or resolution & (resolution - 1) != 0:
        raise ValueError(
            f"resolution must be a power of two in [{START_RESOLUTION}, {img_resolution}], got {resolution}"
        )


def _check_alpha(alpha: float) -> None:
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


def _initial_const(const_init: str, shape: list[int]) -> torch.Tensor:
    _check_choice("const_init", const_init, CONST_INITS)
    if const_init in ("zeros", "ones"):
        return torch.full(shape, float(const_init == "ones"))
    return torch.randn(shape) + float(const_init == "one_normal")


def _resolutions(img_resolution: int) -> list[int]:
    return [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]


# --------------------------------------------------------------------------------------------------
# Layers


class EqualizedLinear(nn.Module):
    """Dense layer whose weight is scaled by ``gain / sqrt(in_features)`` at run time; bias unscaled.

    Computed as a 1x1 convolution, as t-ae does, to match its float32 outputs bit for bit: a matrix
    product sums in another order, and these networks amplify the last-bit differences (to 2e-4 in
    the 256 px images of the reference, more than its float32 rounding error allows for).
    """

    def __init__(self, in_features: int, out_features: int, gain: float = _HE_GAIN) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn([out_features, in_features]))
        self.bias = nn.Parameter(torch.zeros([out_features]))
        self.weight_gain = gain / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = (self.weight * self.weight_gain)[:, :, None, None]
        return F.conv2d(x[:, :, None, None], weight, self.bias).flatten(1)


class EqualizedConv2d(nn.Module):
    """Convolution whose weight is scaled by ``gain / sqrt(fan_in)`` at run time; bias unscaled."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, gain: float = _HE_GAIN, padding: int = 0
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = gain / math.sqrt(in_channels * kernel_size**2)
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)


class Blur(nn.Module):
    """Depthwise [1, 2, 1] x [1, 2, 1] / 16 filter, zero padded to keep the size."""

    def __init__(self) -> None:
        super().__init__()
        f = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("filter", (f[:, None] * f[None, :] / 16).reshape(1, 1, 3, 3), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        return F.conv2d(x, self.filter.expand(channels, -1, -1, -1), padding=1, groups=channels)


class NoiseInput(nn.Module):
    """Adds one noise image per sample, scaled by a learned strength per channel."""

    def __init__(self, channels: int, resolution: int) -> None:
        super().__init__()
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.noise_strength = nn.Parameter(torch.zeros([channels]))

    def forward(self, x: torch.Tensor, noise_mode: str) -> torch.Tensor:
        if noise_mode == "none":
            return x
        if noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, *x.shape[2:]], device=x.device, dtype=x.dtype)
        else:
            noise = self.noise_const
        return x + noise * self.noise_strength.reshape(1, -1, 1, 1)


class AdaIN(nn.Module):
    """Instance norm, then ``scale(w) * x + bias(w)`` per channel."""

    def __init__(self, channels: int, w_dim: int) -> None:
        super().__init__()
        self.affine_scale = EqualizedLinear(w_dim, channels, gain=1)
        self.affine_bias = EqualizedLinear(w_dim, channels, gain=1)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = F.instance_norm(x, eps=_ADAIN_EPSILON)
        scale = self.affine_scale(w)[:, :, None, None]
        bias = self.affine_bias(w)[:, :, None, None]
        return scale * x + bias


# --------------------------------------------------------------------------------------------------
# Generator


class StyleGAN1MappingNetwork(nn.Module):
    """Maps ``z`` (and labels ``c``) to ``ws`` ``[N, num_ws, w_dim]``; tracks ``w_avg`` for truncation.

    Labels are embedded into ``z_dim`` features by a matrix (a lookup for one-hot ``c``), concatenated
    to ``z`` and normalised together (with ``normalize_latents``). Hidden layers have ``z_dim`` features.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int,
        num_layers: int = 8,
        normalize_latents: bool = True,
        latent_epsilon: float = 1e-8,
        w_avg_beta: float = 0.995,
    ) -> None:
        super().__init__()
        if z_dim <= 0 or num_layers <= 0:
            raise ValueError(
                f"the mapping network needs z_dim > 0 and num_layers > 0, got {z_dim} and {num_layers}"
            )
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.normalize_latents = normalize_latents
        self.latent_epsilon = latent_epsilon
        self.w_avg_beta = w_avg_beta

        if c_dim > 0:
            self.embed = nn.Parameter(torch.randn([c_dim, z_dim]))
        features = [z_dim * 2 if c_dim > 0 else z_dim] + [z_dim] * (num_layers - 1) + [w_dim]
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", EqualizedLinear(features[idx], features[idx + 1]))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        """``update_emas=True`` folds this batch into ``w_avg``; truncation moves the first
        ``truncation_cutoff`` ws (all when None) towards ``w_avg``."""
        check_shape("z", z, [None, self.z_dim])
        x = z.to(torch.float32)
        if self.c_dim > 0:
            check_shape("c", c, [None, self.c_dim])
            x = torch.cat([x, c.to(torch.float32) @ self.embed], dim=1)
        if self.normalize_latents:
            x = normalize_2nd_moment(x, eps=self.latent_epsilon)
        for idx in range(self.num_layers):
            x = _lrelu(getattr(self, f"fc{idx}")(x))

        if update_emas:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        return latents.truncate(ws, self.w_avg, truncation_psi, truncation_cutoff)

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"


class SynthesisBlock(nn.Module):
    """One resolution: (learned constant | 2x upsampling, conv, blur) and conv, each followed by noise,
    leaky ReLU and AdaIN; plus this resolution's toRGB."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        upsample_mode: str = "bilinear",
        use_blur: bool = False,
        use_noise: bool = True,
        const_init: str = "one_normal",
    ) -> None:
        """``in_channels=0`` makes the first block, which starts from a learned constant."""
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.upsample_mode = upsample_mode
        self.use_noise = use_noise
        if in_channels == 0:
            self.const = nn.Parameter(_initial_const(const_init, [out_channels, resolution, resolution]))
        else:
            self.conv0 = EqualizedConv2d(in_channels, out_channels, 3, padding=1)
        self.blur = Blur() if use_blur and in_channels != 0 else None
        self.conv1 = EqualizedConv2d(out_channels, out_channels, 3, padding=1)
        for idx in range(2):
            if use_noise:
                setattr(self, f"noise{idx}", NoiseInput(out_channels, resolution))
            setattr(self, f"adain{idx}", AdaIN(out_channels, w_dim))
        self.torgb = EqualizedConv2d(out_channels, img_channels, 1, gain=1)

    def _epilogue(self, idx: int, x: torch.Tensor, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        if self.use_noise:
            x = getattr(self, f"noise{idx}")(x, noise_mode)
        return getattr(self, f"adain{idx}")(_lrelu(x), w)

    def forward(
        self, x: torch.Tensor | None, w0: torch.Tensor, w1: torch.Tensor, noise_mode: str = "random"
    ) -> torch.Tensor:
        """Features at this resolution from the previous block's features ``x`` (None for the first)."""
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).expand(w0.shape[0], -1, -1, -1)
        else:
            check_shape(
                f"input of block b{self.resolution}",
                x,
                [None, self.in_channels, self.resolution // 2, self.resolution // 2],
            )
            x = self.conv0(_resample(x, 2, self.upsample_mode))
            if self.blur is not None:
                x = self.blur(x)
        x = self._epilogue(0, x, w0, noise_mode)
        return self._epilogue(1, self.conv1(x), w1, noise_mode)


class StyleGAN1SynthesisNetwork(nn.Module):
    """Maps ``ws`` ``[N, num_ws, w_dim]`` (two per resolution) to images at any grown resolution."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 4096,
        channel_max: int = 256,
        upsample_mode: str = "bilinear",
        use_blur: bool = False,
        use_noise: bool = True,
        const_init: str = "one_normal",
    ) -> None:
        _check_img_resolution(img_resolution)
        _check_choice("upsample_mode", upsample_mode, RESAMPLE_MODES)
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.upsample_mode = upsample_mode
        self.block_resolutions = _resolutions(img_resolution)
        self.num_ws = 2 * len(self.block_resolutions)
        for res in self.block_resolutions:
            block = SynthesisBlock(
                channel_count(res // 2, channel_base, channel_max) if res > START_RESOLUTION else 0,
                channel_count(res, channel_base, channel_max),
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                upsample_mode=upsample_mode,
                use_blur=use_blur,
                use_noise=use_noise,
                const_init=const_init,
            )
            setattr(self, f"b{res}", block)

    def forward(
        self,
        ws: torch.Tensor,
        resolution: int | None = None,
        alpha: float = 1.0,
        noise_mode: str = "random",
        update_emas: bool = False,
    ) -> torch.Tensor:
        """Render at ``resolution`` (default: ``img_resolution``), using its blocks' ws (the first
        ``2 log2(resolution) - 2``). With ``alpha < 1`` the image is the blend ``lerp(lower, new, alpha)``
        of the previous resolution's image, upsampled, and the new block's; it does not apply at 4x4.
        ``update_emas`` is accepted for the common generator interface; there is nothing to update."""
        del update_emas
        resolution = self.img_resolution if resolution is None else resolution
        _check_resolution(resolution, self.img_resolution)
        _check_alpha(alpha)
        _check_choice("noise_mode", noise_mode, NOISE_MODES)
        check_shape("ws", ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32)

        x = previous = None
        for idx, res in enumerate(self.block_resolutions[: int(math.log2(resolution)) - 1]):
            previous = x
            x = getattr(self, f"b{res}")(x, ws[:, 2 * idx], ws[:, 2 * idx + 1], noise_mode=noise_mode)
        img = getattr(self, f"b{resolution}").torgb(x)
        if alpha != 1 and previous is not None:
            lower = getattr(self, f"b{resolution // 2}").torgb(previous)
            img = torch.lerp(_resample(lower, 2, self.upsample_mode), img, alpha)
        return img


@register_network
class StyleGAN1Generator(nn.Module):
    """StyleGAN v1 generator: ``img = G.synthesis(G.mapping(z, c), resolution, alpha)``.

    Args:
        z_dim, c_dim, w_dim: latent, label (0 = unconditional) and intermediate latent sizes.
        img_resolution: the fully grown resolution (a power of two >= 4).
        img_channels: output colour channels.
        channel_base, channel_max: ``min(channel_base // res, channel_max)`` feature maps at ``res``.
        mapping_layers: layers of the mapping network.
        normalize_latents, latent_epsilon: pixel norm of the mapping input, and its epsilon.
        w_avg_beta: decay of the running average ``mapping.w_avg``.
        upsample_mode: ``torch.nn.functional.interpolate`` mode of the 2x upsampling (blocks and fade-in).
        use_blur: [1, 2, 1] blur after each upsampling convolution.
        use_noise: per-pixel noise inputs with learned per-channel strengths.
        const_init: initial learned constant: zeros, ones, zero_normal (N(0, 1)) or one_normal (N(1, 1)).
    """

    start_resolution = START_RESOLUTION

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 4096,
        channel_max: int = 256,
        mapping_layers: int = 8,
        normalize_latents: bool = True,
        latent_epsilon: float = 1e-8,
        w_avg_beta: float = 0.995,
        upsample_mode: str = "bilinear",
        use_blur: bool = False,
        use_noise: bool = True,
        const_init: str = "one_normal",
    ) -> None:
        super().__init__()
        self.init_kwargs = dict(
            z_dim=z_dim,
            c_dim=c_dim,
            w_dim=w_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            channel_base=channel_base,
            channel_max=channel_max,
            mapping_layers=mapping_layers,
            normalize_latents=normalize_latents,
            latent_epsilon=latent_epsilon,
            w_avg_beta=w_avg_beta,
            upsample_mode=upsample_mode,
            use_blur=use_blur,
            use_noise=use_noise,
            const_init=const_init,
        )
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = StyleGAN1SynthesisNetwork(
            w_dim=w_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            channel_base=channel_base,
            channel_max=channel_max,
            upsample_mode=upsample_mode,
            use_blur=use_blur,
            use_noise=use_noise,
            const_init=const_init,
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = StyleGAN1MappingNetwork(
            z_dim=z_dim,
            c_dim=c_dim,
            w_dim=w_dim,
            num_ws=self.num_ws,
            num_layers=mapping_layers,
            normalize_latents=normalize_latents,
            latent_epsilon=latent_epsilon,
            w_avg_beta=w_avg_beta,
        )

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None,
        resolution: int | None = None,
        alpha: float = 1.0,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        noise_mode: str = "random",
        update_emas: bool = False,
    ) -> torch.Tensor:
        ws = self.mapping(
            z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas
        )
        return self.synthesis(ws, resolution=resolution, alpha=alpha, noise_mode=noise_mode)


# --------------------------------------------------------------------------------------------------
# Discriminator


class DiscriminatorBlock(nn.Module):
    """One resolution: fromRGB (used where the image enters), then conv, leaky ReLU, (blur), conv,
    leaky ReLU, 2x average pooling; at 4x4 instead conv, conv 4x4 (valid) and a 1x1 output layer."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        num_outputs: int = 1,
        use_blur: bool = False,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.fromrgb = EqualizedConv2d(img_channels, in_channels, 1)
        if resolution == START_RESOLUTION:
            self.conv0 = EqualizedConv2d(in_channels, in_channels, 3, padding=1)
            self.conv1 = EqualizedConv2d(in_channels, in_channels, START_RESOLUTION)
            self.out = EqualizedConv2d(in_channels, num_outputs, 1, gain=1)
        else:
            self.conv0 = EqualizedConv2d(in_channels, out_channels, 3, padding=1)
            self.conv1 = EqualizedConv2d(out_channels, out_channels, 3, padding=1)
        self.blur = Blur() if use_blur and resolution > START_RESOLUTION else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _lrelu(self.conv0(x))
        if self.blur is not None:
            x = self.blur(x)
        x = _lrelu(self.conv1(x))
        if self.resolution == START_RESOLUTION:
            return self.out(x)
        return F.avg_pool2d(x, kernel_size=2)


@register_network
class StyleGAN1Discriminator(nn.Module):
    """StyleGAN v1 discriminator; reads images at any grown resolution (taken from their size).

    Args:
        c_dim: label size (0 = unconditional). With labels, the network has one output per label and
            returns the one selected by ``c`` (``sum(logits * c)``: a lookup for one-hot ``c``).
        img_resolution, img_channels: the fully grown image size.
        channel_base, channel_max: ``min(channel_base // res, channel_max)`` feature maps at ``res``.
        downsample_mode: ``torch.nn.functional.interpolate`` mode of the fade-in's 2x downsampling.
        use_blur: [1, 2, 1] blur between the two convolutions of each block above 4x4.
    """

    start_resolution = START_RESOLUTION

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 4096,
        channel_max: int = 256,
        downsample_mode: str = "bilinear",
        use_blur: bool = False,
    ) -> None:
        _check_img_resolution(img_resolution)
        _check_choice("downsample_mode", downsample_mode, RESAMPLE_MODES)
        super().__init__()
        self.init_kwargs = dict(
            c_dim=c_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            channel_base=channel_base,
            channel_max=channel_max,
            downsample_mode=downsample_mode,
            use_blur=use_blur,
        )
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.downsample_mode = downsample_mode
        self.block_resolutions = _resolutions(img_resolution)[::-1]
        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                channel_count(res, channel_base, channel_max),
                channel_count(res // 2, channel_base, channel_max),
                resolution=res,
                img_channels=img_channels,
                num_outputs=max(c_dim, 1),
                use_blur=use_blur,
            )
            setattr(self, f"b{res}", block)

    def forward(
        self, img: torch.Tensor, c: torch.Tensor | None, alpha: float = 1.0, update_emas: bool = False
    ) -> torch.Tensor:
        """Logits ``[N, 1]``. With ``alpha < 1`` the features after the newest block are blended,
        ``lerp(lower, new, alpha)``, with those of the image downsampled into the previous resolution's
        fromRGB; it does not apply at 4x4. ``update_emas`` is accepted for the common interface."""
        del update_emas
        resolution = img.shape[-1]
        _check_resolution(resolution, self.img_resolution)
        _check_alpha(alpha)
        check_shape("img", img, [None, self.img_channels, resolution, resolution])
        img = img.to(torch.float32)

        block = getattr(self, f"b{resolution}")
        x = block(_lrelu(block.fromrgb(img)))
        if alpha != 1 and resolution > START_RESOLUTION:
            lower = _resample(img, 0.5, self.downsample_mode)
            lower = _lrelu(getattr(self, f"b{resolution // 2}").fromrgb(lower))
            x = torch.lerp(lower, x, alpha)
        res = resolution // 2
        while res >= START_RESOLUTION:
            x = getattr(self, f"b{res}")(x)
            res //= 2

        x = x.flatten(1)
        if self.c_dim == 0:
            return x
        check_shape("c", c, [img.shape[0], self.c_dim])
        return (x * c.to(torch.float32)).sum(dim=1, keepdim=True)
