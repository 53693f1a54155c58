"""Generator quality metrics with StyleGAN2-ADA's definitions: FID, KID, precision/recall, PPL, IS.

Feature-set functions (:func:`fid_from_features`, :func:`kid_from_features`,
:func:`precision_recall`, :func:`inception_score`) work on arrays; :func:`compute_metric` /
:func:`compute_metrics` measure a generator by the official metric names (``fid50k_full``,
``kid50k_full``, ``pr50k3_full``, ``pr_inception``, ``is50k``, ``ppl2_wend``, ``ppl_zfull``,
``ppl_wfull``, ``ppl_zend``, ``ppl_wend``); :func:`w_average` measures the W average used for
truncation. Detector weights are TorchScript files found or downloaded by :class:`DetectorStore`.
"""

from .detectors import (
    CACHE_DIR_ENV,
    DETECTORS,
    DetectorSpec,
    DetectorStore,
    DetectorUnavailable,
    InceptionDetector,
    VGG16Detector,
    default_cache_dir,
)
from .feature_cache import cached_dataset_features, load_cached_features
from .frechet import fid_from_features, frechet_distance, mean_cov
from .images import quantize_generated
from .inception import default_inception, inception_features
from .inception_score import inception_score
from .kid import kid_from_features
from .latent_stats import w_average
from .metric_main import METRICS, compute_metric, compute_metrics, list_metrics
from .perceptual_path_length import (
    face_crop,
    perceptual_path_length,
    ppl_distances,
    ppl_from_distances,
    slerp,
)
from .precision_recall import precision_recall
from .resize import tf1_bilinear_resize
from .sampling import class_frequency_sampler, dataset_label_sampler, generate_images

__all__ = [
    "CACHE_DIR_ENV",
    "DETECTORS",
    "METRICS",
    "DetectorSpec",
    "DetectorStore",
    "DetectorUnavailable",
    "InceptionDetector",
    "VGG16Detector",
    "cached_dataset_features",
    "compute_metric",
    "compute_metrics",
    "class_frequency_sampler",
    "dataset_label_sampler",
    "default_cache_dir",
    "default_inception",
    "face_crop",
    "fid_from_features",
    "frechet_distance",
    "generate_images",
    "inception_features",
    "inception_score",
    "kid_from_features",
    "list_metrics",
    "load_cached_features",
    "mean_cov",
    "perceptual_path_length",
    "ppl_distances",
    "ppl_from_distances",
    "precision_recall",
    "quantize_generated",
    "slerp",
    "tf1_bilinear_resize",
    "w_average",
]
