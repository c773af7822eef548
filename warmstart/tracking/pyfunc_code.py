"""The models-from-code file of every model ``warmstart.tracking.log_model`` logs: MLflow copies
it into the model and runs it at load time (no pickle). It needs warmstart installed."""

import mlflow
from mlflow.pyfunc import PythonModel

from warmstart.serving import ImageClassifier


class ImagePyfunc(ImageClassifier, PythonModel):
    """The served model (see ``warmstart.serving``)."""


mlflow.models.set_model(ImagePyfunc())
