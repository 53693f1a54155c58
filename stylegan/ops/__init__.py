"""Pure PyTorch StyleGAN ops: FIR resampling, fused bias/activation, (modulated) resampling convolutions.

Each op runs on CPU and CUDA in any floating dtype and supports double backward (for R1). The
``impl`` argument (or :func:`use_impl`) picks the fast formulation or the reference one.
"""

from stylegan.ops.bias_act import ACTIVATIONS, Activation, activation_spec, bias_act
from stylegan.ops.conv import conv2d_resample, modulated_conv2d
from stylegan.ops.fir import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d
from stylegan.ops.impl import IMPLS, activation_memory_format, current_impl, use_impl

__all__ = [
    "ACTIVATIONS",
    "IMPLS",
    "Activation",
    "activation_memory_format",
    "activation_spec",
    "bias_act",
    "conv2d_resample",
    "current_impl",
    "downsample2d",
    "filter2d",
    "modulated_conv2d",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
    "use_impl",
]
