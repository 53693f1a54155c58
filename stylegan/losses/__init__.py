"""Training losses: StyleGAN2's (logistic + lazy R1 + path length, StyleGAN3's blur) and the progressive
families' (WGAN-GP + drift, logistic, logistic + R1)."""

from stylegan.losses.progressive import OBJECTIVES, ProgressiveLoss, gradient_penalty
from stylegan.losses.stylegan2 import PHASES, StyleGAN2Loss, gaussian_blur, lazy_regularization_adam

__all__ = [
    "OBJECTIVES",
    "PHASES",
    "ProgressiveLoss",
    "StyleGAN2Loss",
    "gaussian_blur",
    "gradient_penalty",
    "lazy_regularization_adam",
]
