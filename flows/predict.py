"""The batch-prediction flow: resolve the model, read and convert the images, predict, write.
It only composes the tasks of ``tasks/predict.py``."""

from __future__ import annotations

from prefect import flow

from warmstart import predict as core
from warmstart.reports.predict import check_top_k
from warmstart.tasks.predict import load_images, resolve_model, run_model, write_predictions


@flow(name="batch-predict", log_prints=True, validate_parameters=True)
def batch_predict(model_uri: str, images: str, out: str, top_k: int = 1) -> dict:
    """Predict every image under ``images`` (folder, s3://bucket/prefix) with a registered model
    (``models:/warmstart-<target>@champion``) and write file, class, probability (the ``top_k``
    most probable classes) to ``out`` (.csv or .parquet, local or s3://). Non-image files are
    skipped and counted; class sub-folders named like the model's classes are scored."""
    core.check_out(out)
    check_top_k(top_k)
    served = resolve_model(model_uri)
    check_top_k(top_k, len(served.classes))
    batch = load_images(images, served)
    probs = run_model(served, batch)
    result = write_predictions(served, batch, probs, out, top_k)
    print(
        f"{result['images']} predictions by {result['model_uri']} -> {result['out']} "
        f"(classes from {result['classes_from']})"
    )
    if result["skipped"]:
        print(f"skipped {len(result['skipped'])} file(s) that are not images")
    if result["accuracy"] is not None:
        print(f"accuracy {result['accuracy']:.3f} on {result['labelled']} labelled images")
    return result


if __name__ == "__main__":
    import sys

    batch_predict(*sys.argv[1:4])
