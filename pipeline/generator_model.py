"""The trained generator as an MLflow pyfunc model: seeds (and truncation psi) in, uint8 images out.

This file is logged as the model's code ("models from code", see :mod:`pipeline.logged_model`): MLflow
runs it when the model is loaded, next to a copy of the `stylegan` package, so it imports nothing from
`pipeline/` and no code is ever unpickled. The model's artifacts are the generator (`network`,
safetensors), the W average truncation goes towards (`w_avg`) and the training config (`config`).

    model = mlflow.pyfunc.load_model("models:/<model id or name/version>")
    images = model.predict(pd.DataFrame({"seed": [0, 1, 2], "psi": [0.7, 0.7, 1.0]}))  # uint8 [3, H, W, C]

Input columns: `seed` (int, required), `psi` (float, default 1: no truncation), `class_idx` (int, for a
conditional network). Params: `noise_mode` (`const`, `random` or `none`), `truncation_cutoff` (truncate
only the first N ws; 0 = all).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

DEFAULT_PSI = 1.0


class GeneratorModel(PythonModel):
    """Generates one image per input row with :class:`stylegan.generate.Sampler`, on the CPU."""

    def load_context(self, context) -> None:
        from stylegan.generate import Sampler

        self.sampler = Sampler.load(context.artifacts["network"], "cpu", context.artifacts.get("w_avg"))

    # A DataFrame hint: MLflow infers no schema from it (the logged signature is the schema).
    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "seed" not in frame:
            raise ValueError(f"expected a 'seed' column, got columns {list(frame.columns)}")
        params = params or {}
        noise_mode = params.get("noise_mode") or "const"
        cutoff = int(params.get("truncation_cutoff") or 0) or None
        seeds = [int(seed) for seed in frame["seed"]]
        psis = frame["psi"].fillna(DEFAULT_PSI) if "psi" in frame else pd.Series(DEFAULT_PSI, frame.index)
        classes = frame["class_idx"] if "class_idx" in frame else None
        images: list[np.ndarray | None] = [None] * len(seeds)
        for psi in dict.fromkeys(float(value) for value in psis):  # one pass per psi, in input order
            rows = [i for i, value in enumerate(psis) if float(value) == psi]
            class_idx = None if classes is None else [int(classes.iloc[i]) for i in rows]
            batch = self.sampler.generate(
                [seeds[i] for i in rows], psi, cutoff, noise_mode=noise_mode, class_idx=class_idx
            )
            for i, image in zip(rows, batch, strict=True):
                images[i] = image
        return np.stack(images)


set_model(GeneratorModel())
