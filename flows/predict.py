"""The batch-prediction flow: resolve the model, read and convert the images, predict, write.
It only composes the tasks of ``tasks/predict.py``."""

from __future__ import annotations

from prefect import flow

from warmstart import predict as core
from warmstart.tasks.predict import load_images, resolve_model, run_model, write_predictions


@flow(name="batch-predict", log_prints=True, validate_parameters=True)
def batch_predict(model_uri: str, images: str, out: str) -> dict:
    """Predict every image under ``images`` (folder, s3://bucket/prefix) with a registered model
    (``models:/warmstart-<target>@champion``) and write file, class, probability to ``out``
    (.csv or .parquet, local or s3://)."""
    core.check_out(out)
    served = resolve_model(model_uri)
    batch = load_images(images, served)
    idx, prob = run_model(served, batch)
    result = write_predictions(served, batch, idx, prob, out)
    print(
        f"{result['images']} predictions by {result['model_uri']} -> {result['out']} "
        f"(classes from {result['classes_from']})"
    )
    return result


if __name__ == "__main__":
    import sys

    batch_predict(*sys.argv[1:4])
