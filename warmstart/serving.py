"""The pyfunc every registered version is served by: images in, class names and probabilities out.

``mlflow models serve -m models:/warmstart-<target>@champion --env-manager local`` (in an
environment with warmstart installed) then takes PNG or JPEG files as base64 strings in a column
``image``::

    POST /invocations  {"dataframe_split": {"columns": ["image"], "data": [["iVBORw0KGgo..."]]}}
    -> {"predictions": [{"class": "7", "probability": 0.93, "probabilities": [...]}, ...]}

In Python, ``mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"image": [png_bytes]}))`` gives
the same frame. Each image is converted to the model's input exactly as ``warmstart predict``
converts it (``warmstart.predict.convert_image``: channels, resize, the same refusals), then
scaled to [0, 1]. ``probabilities`` lists every class's probability in the order of
``classes`` (the model's metadata). A float32 N×C×H×W tensor in [0, 1] (what training saw) goes
through ``ImageClassifier.logits`` — the gate's scorer and ``warmstart predict`` call it — and
gives logits. Image bytes only: the server never opens a path it is sent.

The weights are the model's ``torch.export`` graph (the artifact ``program``, ``model.pt2``),
loaded without unpickling; the class and its code file load through MLflow's models-from-code,
so no pickle is involved either.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np

from warmstart.errors import DataError

IMAGE_COLUMN = "image"


def _bytes_of(value: Any, row: int) -> bytes:
    """Image bytes from a cell: bytes as they are, a str as base64."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise DataError(
                f"row {row}: the '{IMAGE_COLUMN}' value is a string but not base64: send the "
                "image file's bytes base64-encoded"
            ) from None
    raise DataError(
        f"row {row}: the '{IMAGE_COLUMN}' value is a {type(value).__name__}: send image bytes "
        "(base64 in JSON)"
    )


class ImageClassifier:
    """``mlflow.pyfunc.PythonModel`` behaviour, without importing mlflow at module import (the
    code file ``warmstart/tracking/pyfunc_code.py`` makes the PythonModel subclass)."""

    net: Any = None
    channels: int = 0
    size: tuple[int, int] = (0, 0)
    classes: list[str] = []  # noqa: RUF012 - filled per instance by load_context

    def load_context(self, context: Any) -> None:
        import torch  # deferred: heavy

        self.net = torch.export.load(context.artifacts["program"]).module()
        meta = json.loads(open(context.artifacts["meta"]).read())  # noqa: SIM115, PTH123
        self.channels = int(meta["input_shape"][0])
        self.size = (int(meta["input_shape"][1]), int(meta["input_shape"][2]))
        self.classes = [str(c) for c in meta["classes"]]

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits of float32 N×C×H×W images in [0, 1]."""
        import torch  # deferred: heavy

        x = torch.from_numpy(np.ascontiguousarray(np.asarray(images, dtype=np.float32)))
        with torch.no_grad():
            return self.net(x).detach().numpy()

    def decode(self, frame: Any) -> np.ndarray:
        """uint8 N×C×H×W from the ``image`` column of a DataFrame (or a dict of lists)."""
        from warmstart.predict import convert_image  # cycle: predict loads models through here

        column = frame[IMAGE_COLUMN] if IMAGE_COLUMN in frame else None
        if column is None:
            raise DataError(
                f"no '{IMAGE_COLUMN}' column: send {{'dataframe_split': {{'columns': "
                f"['{IMAGE_COLUMN}'], 'data': [[<base64 PNG or JPEG>], ...]}}}}"
            )
        out = [
            convert_image(_bytes_of(v, i), f"row {i}", channels=self.channels, size=self.size)[0]
            for i, v in enumerate(list(column))
        ]
        return np.stack(out) if out else np.zeros((0, self.channels, *self.size), np.uint8)

    def predict(self, context: Any, model_input, params: dict | None = None) -> Any:
        """Images (DataFrame column ``image``) → DataFrame class, probability, probabilities;
        a float tensor → logits. ``model_input`` has no type hint on purpose: MLflow would try
        to infer a signature from one (and warn at every log that it cannot), where the logged
        model carries an explicit signature."""
        import pandas as pd  # deferred: heavy

        from warmstart.predict import softmax  # cycle: predict loads models through here

        if isinstance(model_input, np.ndarray) and model_input.ndim == 4:
            return self.logits(model_input)
        images = self.decode(model_input)
        if not len(images):
            return pd.DataFrame({"class": [], "probability": [], "probabilities": []})
        probs = softmax(self.logits(images.astype(np.float32) / 255.0).astype(np.float64))
        best = probs.argmax(axis=1)
        return pd.DataFrame(
            {
                "class": [self.classes[i] for i in best],
                "probability": probs.max(axis=1),
                "probabilities": [row.tolist() for row in probs],
            }
        )
