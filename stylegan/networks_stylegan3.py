"""StyleGAN3 generator (Karras et al. 2021, "Alias-Free Generative Adversarial Networks"), configs T and R.

Constructor arguments, parameter and buffer names equal those of NVIDIA's
``training/networks_stylegan3.py``, so an official state dict loads with ``load_state_dict`` and the
official ``init_kwargs`` build the matching network (see :mod:`stylegan.interop`). Parameters are
drawn in the official order, so equal seeds give equal initial weights.

The synthesis network starts from Fourier features (:class:`SynthesisInput`) and runs
``num_layers`` modulated convolutions with filtered leaky ReLUs, whose cutoffs, stopbands and
sampling rates follow a geometric schedule (:func:`synthesis_schedule`), then a ToRGB layer.
Config T uses 3x3 convolutions and separable Kaiser-windowed sinc filters; config R
(``conv_kernel=1, use_radial_filters=True``) uses 1x1 convolutions and radially symmetric (jinc)
downsampling filters in its non-critically-sampled layers.

The discriminator of StyleGAN3 is StyleGAN2's (:class:`stylegan.networks_stylegan2.Discriminator`).

Mixed precision: layers whose sampling rate times ``2**num_fp16_res`` exceeds the output resolution
run in float16 on CUDA (float32 on CPU or with ``force_fp32=True``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stylegan.layers import FullyConnectedLayer, MappingNetwork, check_shape
from stylegan.networks_stylegan2 import NOISE_MODES, _json_kwargs, compute_dtype
from stylegan.ops import activation_memory_format, modulated_conv2d
from stylegan.ops.filtered_lrelu import filtered_lrelu
from stylegan.serialization import register_network

MAPPING_DEFAULTS = {"num_layers": 2, "w_avg_beta": 0.998}
"""StyleGAN3's mapping network differs from StyleGAN2's only in these defaults."""


# --------------------------------------------------------------------------------------------------
# Layer schedule and filters


@dataclass(frozen=True)
class SynthesisSchedule:
    """Per-layer quantities of the synthesis network, index 0 = the Fourier features.

    Frequencies are in cycles per image (the image without its margin), so a sampling rate equals
    the number of pixels across the image.
    """

    cutoffs: np.ndarray  # f_c
    stopbands: np.ndarray  # f_t
    sampling_rates: np.ndarray  # s
    half_widths: np.ndarray  # f_h, transition band half-width
    sizes: np.ndarray  # feature map size in pixels, margin included
    channels: np.ndarray


def synthesis_schedule(
    img_resolution: int,
    img_channels: int,
    channel_base: int,
    channel_max: int,
    num_layers: int,
    num_critical: int,
    first_cutoff: float,
    first_stopband: float,
    last_stopband_rel: float,
    margin_size: int,
) -> SynthesisSchedule:
    """Cutoffs and minimum stopbands grow geometrically from the first layer to the last
    ``num_critical + 1`` layers (which sit at the output's Nyquist frequency, critically sampled);
    sampling rates are the smallest power of two holding the stopband."""
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    progress = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** progress
    stopbands = first_stopband * (last_stopband / first_stopband) ** progress
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    return SynthesisSchedule(cutoffs, stopbands, sampling_rates, half_widths, sizes, channels)


def design_lowpass_filter(
    numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False
) -> torch.Tensor | None:
    """Kaiser-windowed low-pass filter: separable sinc taps ``[numtaps]``, or with ``radial`` a 2-D
    jinc ``[numtaps, numtaps]`` windowed by the outer product of the Kaiser window; None for one tap."""
    if numtaps < 1:
        raise ValueError(f"numtaps must be >= 1, got {numtaps}")
    if numtaps == 1:
        return None
    # Imported here, not at the top: scipy.signal takes half a second, and every stage imports this module.
    import scipy.signal
    import scipy.special

    if not radial:
        taps = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        return torch.as_tensor(taps, dtype=torch.float32)
    coords = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    radius = np.hypot(*np.meshgrid(coords, coords))
    with np.errstate(invalid="ignore", divide="ignore"):
        jinc = scipy.special.j1(2 * np.pi * cutoff * radius) / (np.pi * radius)
    jinc = np.where(radius == 0, cutoff, jinc)  # the limit at the centre (odd numtaps only)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    f = jinc * np.outer(window, window)
    return torch.as_tensor(f / np.sum(f), dtype=torch.float32)


# --------------------------------------------------------------------------------------------------
# Layers


class SynthesisInput(nn.Module):
    """Fourier features: ``channels`` sinusoids of random frequency within ``bandwidth``, rotated and
    translated per sample by an affine function of ``w``, then mixed by a learned matrix.

    ``transform`` (3x3, identity by default) is a user-specified inverse transform of the output
    image's coordinates, applied after the learned one: setting its translation to ``-t`` shifts the
    image content by ``t`` (in image widths). The equivariance metrics use it.
    """

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = size
        self.sampling_rate = sampling_rate
        self.bandwidth = bandwidth

        # Uniform over the disc of radius ``bandwidth``: exp(-|g|^2 / 4) of a 2-D normal g is sqrt(uniform).
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs /= radii * radii.square().exp().pow(0.25)
        freqs *= bandwidth
        phases = torch.rand([channels]) - 0.5

        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4)  # (rotation cos, rotation sin, t_x, t_y)
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3, 3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)

    def _sample_transforms(self, w: torch.Tensor) -> torch.Tensor:
        """Per-sample inverse transforms ``[N, 3, 3]``: learned rotation, then learned translation,
        then ``transform``."""
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        n = w.shape[0]
        rotation = torch.eye(3, device=w.device).unsqueeze(0).repeat([n, 1, 1])
        rotation[:, 0, 0] = t[:, 0]
        rotation[:, 0, 1] = -t[:, 1]
        rotation[:, 1, 0] = t[:, 1]
        rotation[:, 1, 1] = t[:, 0]
        translation = torch.eye(3, device=w.device).unsqueeze(0).repeat([n, 1, 1])
        translation[:, 0, 2] = -t[:, 2]
        translation[:, 1, 2] = -t[:, 3]
        return rotation @ translation @ self.transform.unsqueeze(0)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        check_shape("w", w, [None, self.w_dim])
        transforms = self._sample_transforms(w)
        freqs = self.freqs.unsqueeze(0)  # [N, C, xy]
        phases = self.phases.unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]
        # Fade out frequencies that the user transform pushes beyond the bandwidth (towards Nyquist).
        amplitudes = 1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)
        amplitudes = amplitudes.clamp(0, 1)

        # Pixel centres in image widths, [1, H, W, xy].
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = theta[1, 1] = 0.5 * self.size / self.sampling_rate
        grid = F.affine_grid(theta.unsqueeze(0), [1, 1, self.size, self.size], align_corners=False)

        x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)
        x = x + phases.unsqueeze(1).unsqueeze(2)  # [N, H, W, C]
        x = torch.sin(x * (2 * np.pi)) * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight / np.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)  # [N, C, H, W], channels-last in memory

    def extra_repr(self) -> str:
        return (
            f"w_dim={self.w_dim}, channels={self.channels}, size={self.size}, "
            f"sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}"
        )


class SynthesisLayer(nn.Module):
    """Modulated convolution followed by a filtered leaky ReLU (or, for ToRGB, bias and clamp only).

    The leaky ReLU runs at ``lrelu_upsampling`` times the larger of the input and output sampling
    rates: the input is upsampled with a low-pass filter at the input cutoff, and the result is
    low-pass filtered at the output cutoff and downsampled. Inputs are scaled by the inverse RMS of
    the input magnitudes seen in training (``magnitude_ema``).
    """

    def __init__(
        self,
        w_dim: int,
        is_torgb: bool,
        is_critically_sampled: bool,
        use_fp16: bool,
        in_channels: int,
        out_channels: int,
        in_size: int,
        out_size: int,
        in_sampling_rate: int,
        out_sampling_rate: int,
        in_cutoff: float,
        out_cutoff: float,
        in_half_width: float,
        out_half_width: float,
        conv_kernel: int = 3,
        filter_size: int = 6,
        lrelu_upsampling: int = 2,
        use_radial_filters: bool = False,
        conv_clamp: float | None = 256,
        magnitude_ema_beta: float = 0.999,
    ) -> None:
        """``conv_kernel`` and ``lrelu_upsampling`` are ignored by ToRGB (1x1, no resampling);
        ``filter_size`` is the filter length relative to the lower sampling rate of the resampling;
        ``use_radial_filters`` applies to the downsampling filter of non-critically-sampled layers."""
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = in_size
        self.out_size = out_size
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        lrelu_rate = 1 if is_torgb else lrelu_upsampling
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * lrelu_rate
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.in_half_width = in_half_width
        self.out_half_width = out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        kernel = self.conv_kernel
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel, kernel]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        self.up_factor = self._resampling_factor(in_sampling_rate)
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        up_filter = design_lowpass_filter(self.up_taps, in_cutoff, in_half_width * 2, self.tmp_sampling_rate)
        self.register_buffer("up_filter", up_filter)

        self.down_factor = self._resampling_factor(out_sampling_rate)
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        down_filter = design_lowpass_filter(
            self.down_taps, out_cutoff, out_half_width * 2, self.tmp_sampling_rate, radial=self.down_radial
        )
        self.register_buffer("down_filter", down_filter)
        self.padding = self._padding()

    def _resampling_factor(self, sampling_rate: float) -> int:
        factor = int(np.rint(self.tmp_sampling_rate / sampling_rate))
        if sampling_rate * factor != self.tmp_sampling_rate:
            raise ValueError(
                f"sampling rate {sampling_rate} does not divide the activation's {self.tmp_sampling_rate}"
            )
        return factor

    def _padding(self) -> list[int]:
        """Padding of the upsampled image that makes the output ``out_size`` pixels, with the samples
        placed as in the paper's symmetric interpretation (Appendix C.3)."""
        total = (self.out_size - 1) * self.down_factor + 1  # size before downsampling
        total -= (self.in_size + self.conv_kernel - 1) * self.up_factor  # size after upsampling
        total += self.up_taps + self.down_taps - 2  # lost to the two filters
        lo = (total + self.up_factor) // 2
        return [lo, total - lo, lo, total - lo]

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, force_fp32: bool = False, update_emas: bool = False
    ) -> torch.Tensor:
        check_shape("synthesis layer input", x, [None, self.in_channels, self.in_size, self.in_size])
        check_shape("w", w, [x.shape[0], self.w_dim])
        if update_emas:
            magnitude = x.detach().to(torch.float32).square().mean()
            self.magnitude_ema.copy_(magnitude.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()

        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / math.sqrt(self.in_channels * self.conv_kernel**2))
        dtype = compute_dtype(self.use_fp16, force_fp32, x.device)
        x = x.to(dtype=dtype, memory_format=activation_memory_format(False, x.device))
        x = _modulated_conv(x, self.weight, styles, demodulate=not self.is_torgb, input_gain=input_gain)

        return filtered_lrelu(
            x,
            self.up_filter,
            self.down_filter,
            self.bias.to(x.dtype),
            up=self.up_factor,
            down=self.down_factor,
            padding=self.padding,
            gain=1 if self.is_torgb else math.sqrt(2),
            slope=1 if self.is_torgb else 0.2,
            clamp=self.conv_clamp,
        )

    def extra_repr(self) -> str:
        return (
            f"is_torgb={self.is_torgb}, is_critically_sampled={self.is_critically_sampled}, "
            f"use_fp16={self.use_fp16}, in_sampling_rate={self.in_sampling_rate:g}, "
            f"out_sampling_rate={self.out_sampling_rate:g}, in_cutoff={self.in_cutoff:g}, "
            f"out_cutoff={self.out_cutoff:g}, in_size={self.in_size}, out_size={self.out_size}, "
            f"in_channels={self.in_channels}, out_channels={self.out_channels}"
        )


def _modulated_conv(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool, input_gain: torch.Tensor
) -> torch.Tensor:
    """StyleGAN3's modulated convolution: "full" padding (``kernel - 1``), weights and styles
    pre-normalised to unit RMS before demodulation, output scaled by the scalar ``input_gain``."""
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    x = modulated_conv2d(
        x,
        weight,
        styles,
        padding=weight.shape[-1] - 1,
        demodulate=demodulate,
        fused_modconv=x.device.type != "cpu",
    )
    return x * input_gain.to(x.dtype)


# --------------------------------------------------------------------------------------------------
# Networks


class SynthesisNetwork(nn.Module):
    """Maps ``ws`` ``[N, num_ws, w_dim]`` (``num_ws = num_layers + 2``) to images."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_layers: int = 14,
        num_critical: int = 2,
        first_cutoff: float = 2,
        first_stopband: float = 2**2.1,
        last_stopband_rel: float = 2**0.3,
        margin_size: int = 10,
        output_scale: float = 0.25,
        num_fp16_res: int = 4,
        **layer_kwargs: Any,
    ) -> None:
        """``layer_kwargs`` go to every :class:`SynthesisLayer` (conv_kernel, filter_size,
        lrelu_upsampling, use_radial_filters, conv_clamp, magnitude_ema_beta)."""
        if num_layers <= num_critical:
            raise ValueError(f"num_layers ({num_layers}) must exceed num_critical ({num_critical})")
        super().__init__()
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res

        s = synthesis_schedule(
            img_resolution,
            img_channels,
            channel_base,
            channel_max,
            num_layers,
            num_critical,
            first_cutoff,
            first_stopband,
            last_stopband_rel,
            margin_size,
        )
        self.input = SynthesisInput(
            w_dim=w_dim,
            channels=int(s.channels[0]),
            size=int(s.sizes[0]),
            sampling_rate=float(s.sampling_rates[0]),
            bandwidth=float(s.cutoffs[0]),
        )
        self.layer_names = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim=w_dim,
                is_torgb=idx == num_layers,
                is_critically_sampled=idx >= num_layers - num_critical,
                use_fp16=bool(s.sampling_rates[idx] * 2**num_fp16_res > img_resolution),
                in_channels=int(s.channels[prev]),
                out_channels=int(s.channels[idx]),
                in_size=int(s.sizes[prev]),
                out_size=int(s.sizes[idx]),
                in_sampling_rate=int(s.sampling_rates[prev]),
                out_sampling_rate=int(s.sampling_rates[idx]),
                in_cutoff=float(s.cutoffs[prev]),
                out_cutoff=float(s.cutoffs[idx]),
                in_half_width=float(s.half_widths[prev]),
                out_half_width=float(s.half_widths[idx]),
                **layer_kwargs,
            )
            name = f"L{idx}_{layer.out_size}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(
        self,
        ws: torch.Tensor,
        update_emas: bool = False,
        noise_mode: str = "random",
        force_fp32: bool = False,
    ) -> torch.Tensor:
        """Render ``ws``. ``noise_mode`` is accepted for the common generator interface: StyleGAN3
        has no noise inputs."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"unknown noise_mode {noise_mode!r}; expected one of {NOISE_MODES}")
        check_shape("ws", ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:], strict=True):
            x = getattr(self, name)(x, w, force_fp32=force_fp32, update_emas=update_emas)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(dtype=torch.float32, memory_format=torch.contiguous_format)

    def extra_repr(self) -> str:
        return (
            f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
            f"img_channels={self.img_channels}, num_layers={self.num_layers}, "
            f"num_critical={self.num_critical}, margin_size={self.margin_size}, "
            f"num_fp16_res={self.num_fp16_res}"
        )


@register_network
class StyleGAN3Generator(nn.Module):
    """StyleGAN3 generator: ``img = G.synthesis(G.mapping(z, c))``.

    The arguments are NVIDIA's (its ``Generator`` takes the synthesis arguments as keywords), with
    its defaults (config T; config R is ``conv_kernel=1, use_radial_filters=True`` and, in NVIDIA's
    training setup, doubled ``channel_base`` and ``channel_max``).

    Args:
        z_dim, c_dim, w_dim: latent, label (0 = unconditional) and intermediate latent sizes.
        img_resolution, img_channels: output image shape.
        mapping_kwargs: :class:`~stylegan.layers.MappingNetwork` arguments; StyleGAN3 defaults to
            ``num_layers=2, w_avg_beta=0.998``.
        channel_base, channel_max: feature maps of a layer are ``min(channel_base / 2 / cutoff,
            channel_max)``.
        num_layers: layers excluding the Fourier features and ToRGB.
        num_critical: critically sampled layers at the end.
        first_cutoff, first_stopband: cutoff and minimum stopband of the first layer.
        last_stopband_rel: minimum stopband of the last layer relative to its cutoff.
        margin_size: extra pixels around the image in the intermediate layers.
        output_scale: scale of the output image.
        num_fp16_res: float16 (on CUDA) for layers at the ``num_fp16_res`` highest sampling rates.
        conv_kernel, filter_size, lrelu_upsampling, use_radial_filters, conv_clamp,
        magnitude_ema_beta: :class:`SynthesisLayer` arguments.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict[str, Any] | None = None,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_layers: int = 14,
        num_critical: int = 2,
        first_cutoff: float = 2,
        first_stopband: float = 2**2.1,
        last_stopband_rel: float = 2**0.3,
        margin_size: int = 10,
        output_scale: float = 0.25,
        num_fp16_res: int = 4,
        conv_kernel: int = 3,
        filter_size: int = 6,
        lrelu_upsampling: int = 2,
        use_radial_filters: bool = False,
        conv_clamp: float | None = 256,
        magnitude_ema_beta: float = 0.999,
    ) -> None:
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = dict(
            channel_base=channel_base,
            channel_max=channel_max,
            num_layers=num_layers,
            num_critical=num_critical,
            first_cutoff=first_cutoff,
            first_stopband=first_stopband,
            last_stopband_rel=last_stopband_rel,
            margin_size=margin_size,
            output_scale=output_scale,
            num_fp16_res=num_fp16_res,
            conv_kernel=conv_kernel,
            filter_size=filter_size,
            lrelu_upsampling=lrelu_upsampling,
            use_radial_filters=use_radial_filters,
            conv_clamp=conv_clamp,
            magnitude_ema_beta=magnitude_ema_beta,
        )
        self.init_kwargs = _json_kwargs(
            dict(
                z_dim=z_dim,
                c_dim=c_dim,
                w_dim=w_dim,
                img_resolution=img_resolution,
                img_channels=img_channels,
                mapping_kwargs=mapping_kwargs,
                **synthesis_kwargs,
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
        mapping_kwargs = {**MAPPING_DEFAULTS, **mapping_kwargs}
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
    ) -> torch.Tensor:
        ws = self.mapping(
            z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas
        )
        return self.synthesis(ws, update_emas=update_emas, noise_mode=noise_mode, force_fp32=force_fp32)
