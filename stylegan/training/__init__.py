"""Training for every model family: configs, schedules, the loop, checkpoints and multi-process helpers."""

from stylegan.training.checkpoint import CheckpointError, CheckpointManager, load_checkpoint
from stylegan.training.configs import TrainingConfig, build_networks, resolve_config, run_key
from stylegan.training.data import TensorImageDataset
from stylegan.training.distributed import DistributedContext, init_distributed, shutdown_distributed
from stylegan.training.loop import TickReport, TrainingDiverged, TrainingSummary, train

__all__ = [
    "CheckpointError",
    "CheckpointManager",
    "DistributedContext",
    "TensorImageDataset",
    "TickReport",
    "TrainingConfig",
    "TrainingDiverged",
    "TrainingSummary",
    "build_networks",
    "init_distributed",
    "load_checkpoint",
    "resolve_config",
    "run_key",
    "shutdown_distributed",
    "train",
]
