"""StyleGAN2(-ADA) generator and discriminator (Karras et al. 2020), config-for-config with NVIDIA's.

Constructor arguments, parameter and buffer names equal those of NVIDIA's ``training/networks.py``
in stylegan2-ada-pytorch, so an official state dict loads with ``load_state_dict`` and an official
``init_kwargs`` dict builds the matching network (see :mod:`stylegan.interop`).

Mixed precision: the ``num_fp16_res`` highest resolutions run in float16 on CUDA (fp32 on CPU or with
``force_fp32=True``); ``conv_clamp`` clamps every convolution output against float16 overflow and is
applied in every precision, so results only differ by rounding.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from stylegan.layers import (
    Conv2dLayer,
    FullyConnectedLayer,
    MappingNetwork,
    MinibatchStdLayer,
    check_shape,
)
from stylegan.ops import (
    activation_memory_format,
    activation_spec,
    bias_act,
    downsample2d,
    modulated_conv2d,
    setup_filter,
    upsample2d,
)
from stylegan.serialization import register_network

ARCHITECTURES = ("orig", "skip", "resnet")
NOISE_MODES = ("random", "const", "none")
_SQRT_HALF = math.sqrt(0.5)


def _check_architecture(architecture: str) -> None:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")


def compute_dtype(use_fp16: bool, force_fp32: bool, device: torch.device) -> torch.dtype:
    """float16 for fp16 blocks on CUDA unless ``force_fp32``; float32 otherwise (always on CPU)."""
    return torch.float16 if use_fp16 and not force_fp32 and device.type == "cuda" else torch.float32


def channel_counts(resolutions: Sequence[int], channel_base: int, channel_max: int) -> dict[int, int]:
    """Feature maps per resolution: ``min(channel_base // res, channel_max)``."""
    return {res: min(channel_base // res, channel_max) for res in resolutions}


def _fp16_resolution(img_resolution: int, num_fp16_res: int) -> int:
    """Lowest resolution that runs in float16 (never the 4x4 block)."""
    return max(2 ** (int(np.log2(img_resolution)) + 1 - num_fp16_res), 8)


def _json_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of constructor arguments, checked to be JSON-serialisable (for rebuilding)."""
    try:
        return json.loads(json.dumps(kwargs))
    except TypeError as e:
        raise TypeError(f"network arguments must be JSON-serialisable: {e}") from None


# --------------------------------------------------------------------------------------------------
# Generator


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally 2x upsampling), noise input, bias, activation, clamp."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = activation_spec(activation).def_gain

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        self.weight = nn.Parameter(weight.to(memory_format=memory_format))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "random",
        fused_modconv: bool = True,
        gain: float = 1.0,
    ) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"unknown noise_mode {noise_mode!r}; expected one of {NOISE_MODES}")
        in_resolution = self.resolution // self.up
        check_shape("synthesis layer input", x, [None, self.in_channels, in_resolution, in_resolution])
        styles = self.affine(w)

        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device)
            noise = noise * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength

        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=noise,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            flip_weight=self.up == 1,
            fused_modconv=fused_modconv,
        )
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(
            x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=act_clamp
        )

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"resolution={self.resolution}, up={self.up}, activation={self.activation}"
        )


class ToRGBLayer(nn.Module):
    """Modulated (not demodulated) 1x1 convolution to image channels, with bias and clamp."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 1,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        self.weight = nn.Parameter(weight.to(memory_format=memory_format))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (const or 2x upsampling conv) + conv + toRGB."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        kernel_size: int = 3,
        use_noise: bool = True,
        activation: str = "lrelu",
    ) -> None:
        """``in_channels=0`` makes the first block, which starts from a learned constant."""
        _check_architecture(architecture)
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0

        layer_kwargs = dict(
            w_dim=w_dim,
            resolution=resolution,
            kernel_size=kernel_size,
            use_noise=use_noise,
            activation=activation,
            conv_clamp=conv_clamp,
            channels_last=self.channels_last,
        )
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, up=2, resample_filter=resample_filter, **layer_kwargs
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(
                out_channels,
                img_channels,
                w_dim=w_dim,
                conv_clamp=conv_clamp,
                channels_last=self.channels_last,
            )
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(
                in_channels,
                out_channels,
                kernel_size=1,
                bias=False,
                up=2,
                resample_filter=resample_filter,
                channels_last=self.channels_last,
            )

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        noise_mode: str = "random",
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Consume ``ws`` ``[N, num_conv + num_torgb, w_dim]``; return features and the running image."""
        check_shape(f"ws of block b{self.resolution}", ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        w_iter = iter(ws.unbind(dim=1))
        dtype = compute_dtype(self.use_fp16, force_fp32, ws.device)
        memory_format = activation_memory_format(self.channels_last and not force_fp32, ws.device)
        if fused_modconv is None:
            # Both compute the same. NVIDIA's rule: per-sample weights (one grouped convolution) at
            # inference in float32; scaled activations in training and float16. On CPU, grouped
            # convolutions are slower than scaling activations, so CPU always scales.
            fused_modconv = (
                ws.device.type != "cpu" and not self.training and (dtype == torch.float32 or ws.shape[0] == 1)
            )
        layer_kwargs = dict(noise_mode=noise_mode, fused_modconv=fused_modconv)

        if self.in_channels == 0:
            x = self.const.to(dtype=dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = x.contiguous(memory_format=memory_format)
        else:
            check_shape(
                f"input of block b{self.resolution}",
                x,
                [None, self.in_channels, self.resolution // 2, self.resolution // 2],
            )
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), **layer_kwargs)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=_SQRT_HALF)
            x = self.conv0(x, next(w_iter), **layer_kwargs)
            x = self.conv1(x, next(w_iter), gain=_SQRT_HALF, **layer_kwargs)
            x = y + x
        else:
            x = self.conv0(x, next(w_iter), **layer_kwargs)
            x = self.conv1(x, next(w_iter), **layer_kwargs)

        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """Maps ``ws`` ``[N, num_ws, w_dim]`` to images ``[N, img_channels, img_resolution, img_resolution]``."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        **block_kwargs: Any,
    ) -> None:
        """``block_kwargs`` go to every :class:`SynthesisBlock` (architecture, conv_clamp, ...)."""
        if img_resolution < 4 or img_resolution & (img_resolution - 1) != 0:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, int(np.log2(img_resolution)) + 1)]
        channels = channel_counts(self.block_resolutions, channel_base, channel_max)
        fp16_resolution = _fp16_resolution(img_resolution, num_fp16_res)

        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0,
                channels[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                is_last=is_last,
                use_fp16=res >= fp16_resolution,
                **block_kwargs,
            )
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f"b{res}", block)

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "random",
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        """Render ``ws``. ``update_emas`` is accepted for the common generator interface (StyleGAN3's
        synthesis tracks statistics); StyleGAN2's synthesis has none to update."""
        del update_emas
        check_shape("ws", ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            # Consecutive blocks share one w: the toRGB of a block uses the next block's first w.
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(
                x, img, block_ws, noise_mode=noise_mode, force_fp32=force_fp32, fused_modconv=fused_modconv
            )
        return img


@register_network
class Generator(nn.Module):
    """StyleGAN2 generator: ``img = G.synthesis(G.mapping(z, c))``.

    Args:
        z_dim: latent dimensionality (0 = no latent).
        c_dim: label dimensionality (0 = unconditional).
        w_dim: intermediate latent dimensionality.
        img_resolution: output resolution (power of two).
        img_channels: output colour channels.
        mapping_kwargs: :class:`~stylegan.layers.MappingNetwork` arguments (num_layers, lr_multiplier,
            w_avg_beta, embed_features, layer_features, activation).
        synthesis_kwargs: :class:`SynthesisNetwork` arguments (channel_base, channel_max, num_fp16_res,
            conv_clamp, architecture, fp16_channels_last, resample_filter, use_noise, ...).
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict[str, Any] | None = None,
        synthesis_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = dict(synthesis_kwargs or {})
        self.init_kwargs = _json_kwargs(
            dict(
                z_dim=z_dim,
                c_dim=c_dim,
                w_dim=w_dim,
                img_resolution=img_resolution,
                img_channels=img_channels,
                mapping_kwargs=mapping_kwargs,
                synthesis_kwargs=synthesis_kwargs,
            )
        )
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(
            w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs
        )

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
        noise_mode: str = "random",
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
    ) -> torch.Tensor:
        ws = self.mapping(
            z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas
        )
        return self.synthesis(
            ws,
            noise_mode=noise_mode,
            force_fp32=force_fp32,
            fused_modconv=fused_modconv,
            update_emas=update_emas,
        )


# --------------------------------------------------------------------------------------------------
# Discriminator


class DiscriminatorBlock(nn.Module):
    """One resolution of the discriminator: (fromRGB) + conv + 2x downsampling conv (+ residual)."""

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        first_layer_idx: int,
        architecture: str = "resnet",
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        freeze_layers: int = 0,
    ) -> None:
        """``in_channels=0`` makes the first block, which reads the image; the first ``freeze_layers``
        layers of the discriminator (counted from ``first_layer_idx``) are frozen (Freeze-D)."""
        if in_channels not in (0, tmp_channels):
            raise ValueError(f"in_channels must be 0 or tmp_channels={tmp_channels}, got {in_channels}")
        _check_architecture(architecture)
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_layers = 0

        def layer(*args: Any, **kwargs: Any) -> Conv2dLayer:
            trainable = first_layer_idx + self.num_layers >= freeze_layers
            self.num_layers += 1
            return Conv2dLayer(*args, trainable=trainable, channels_last=self.channels_last, **kwargs)

        if in_channels == 0 or architecture == "skip":
            self.fromrgb = layer(
                img_channels, tmp_channels, kernel_size=1, activation=activation, conv_clamp=conv_clamp
            )
        self.conv0 = layer(
            tmp_channels, tmp_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp
        )
        self.conv1 = layer(
            tmp_channels,
            out_channels,
            kernel_size=3,
            activation=activation,
            down=2,
            resample_filter=resample_filter,
            conv_clamp=conv_clamp,
        )
        if architecture == "resnet":
            self.skip = layer(
                tmp_channels, out_channels, kernel_size=1, bias=False, down=2, resample_filter=resample_filter
            )

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, force_fp32: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        device = (x if x is not None else img).device
        dtype = compute_dtype(self.use_fp16, force_fp32, device)
        memory_format = activation_memory_format(self.channels_last and not force_fp32, device)

        if x is not None:
            check_shape(
                f"input of block b{self.resolution}",
                x,
                [None, self.in_channels, self.resolution, self.resolution],
            )
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0 or self.architecture == "skip":
            check_shape("img", img, [None, self.img_channels, self.resolution, self.resolution])
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None

        if self.architecture == "resnet":
            y = self.skip(x, gain=_SQRT_HALF)
            x = self.conv0(x)
            x = self.conv1(x, gain=_SQRT_HALF)
            x = y + x
        else:
            x = self.conv0(x)
            x = self.conv1(x)
        return x, img


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 head: minibatch stddev, conv, fully connected, output (projected onto ``cmap``)."""

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        activation: str = "lrelu",
        conv_clamp: float | None = None,
    ) -> None:
        _check_architecture(architecture)
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture

        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = (
            MinibatchStdLayer(group_size=mbstd_group_size, num_channels=mbstd_num_channels)
            if mbstd_num_channels > 0
            else None
        )
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels,
            in_channels,
            kernel_size=3,
            activation=activation,
            conv_clamp=conv_clamp,
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, img: torch.Tensor | None, cmap: torch.Tensor | None) -> torch.Tensor:
        check_shape("epilogue input", x, [None, self.in_channels, self.resolution, self.resolution])
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == "skip":
            img = img.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            x = x + self.fromrgb(img)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            check_shape("cmap", cmap, [None, self.cmap_dim])
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


@register_network
class Discriminator(nn.Module):
    """StyleGAN2 discriminator: ``logits [N, 1] = D(img, c)``.

    Args:
        c_dim: label dimensionality (0 = unconditional); labels are mapped to ``cmap`` and the output
            is its projection onto the image features.
        img_resolution, img_channels: input image shape.
        architecture: 'resnet' (default), 'skip' or 'orig'.
        channel_base, channel_max, num_fp16_res, conv_clamp: as in the generator.
        cmap_dim: label embedding size (None = channels at 4x4).
        block_kwargs: :class:`DiscriminatorBlock` arguments (activation, freeze_layers,
            fp16_channels_last, ...).
        mapping_kwargs: label :class:`~stylegan.layers.MappingNetwork` arguments.
        epilogue_kwargs: :class:`DiscriminatorEpilogue` arguments (mbstd_group_size, mbstd_num_channels).
    """

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        cmap_dim: int | None = None,
        block_kwargs: dict[str, Any] | None = None,
        mapping_kwargs: dict[str, Any] | None = None,
        epilogue_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if img_resolution < 4 or img_resolution & (img_resolution - 1) != 0:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        super().__init__()
        block_kwargs = dict(block_kwargs or {})
        mapping_kwargs = dict(mapping_kwargs or {})
        epilogue_kwargs = dict(epilogue_kwargs or {})
        self.init_kwargs = _json_kwargs(
            dict(
                c_dim=c_dim,
                img_resolution=img_resolution,
                img_channels=img_channels,
                architecture=architecture,
                channel_base=channel_base,
                channel_max=channel_max,
                num_fp16_res=num_fp16_res,
                conv_clamp=conv_clamp,
                cmap_dim=cmap_dim,
                block_kwargs=block_kwargs,
                mapping_kwargs=mapping_kwargs,
                epilogue_kwargs=epilogue_kwargs,
            )
        )
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(int(np.log2(img_resolution)), 2, -1)]
        channels = channel_counts(self.block_resolutions + [4], channel_base, channel_max)
        fp16_resolution = _fp16_resolution(img_resolution, num_fp16_res)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0

        common_kwargs = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                channels[res] if res < img_resolution else 0,
                channels[res],
                channels[res // 2],
                resolution=res,
                first_layer_idx=layer_idx,
                use_fp16=res >= fp16_resolution,
                **block_kwargs,
                **common_kwargs,
            )
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(
                z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **mapping_kwargs
            )
        self.b4 = DiscriminatorEpilogue(
            channels[4], cmap_dim=cmap_dim, resolution=4, **epilogue_kwargs, **common_kwargs
        )

    def forward(
        self, img: torch.Tensor, c: torch.Tensor | None, force_fp32: bool = False, update_emas: bool = False
    ) -> torch.Tensor:
        """Logits ``[N, 1]``; ``update_emas`` is accepted for the common interface (nothing to update)."""
        del update_emas
        check_shape("img", img, [None, self.img_channels, self.img_resolution, self.img_resolution])
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, force_fp32=force_fp32)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)
