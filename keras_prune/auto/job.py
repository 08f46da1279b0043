"""The ``keras-prune prune`` job: ``prune_to_budget`` on an ``.npz``, then the files."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import keras

from keras_prune import io
from keras_prune._data import check_splits
from keras_prune.auto.budget import BudgetResult, prune_to_budget

__all__ = ["run_job", "EXPORTS"]

EXPORTS = ("cmsis", "tflm", "savedmodel")


def checkpoint_path(out: Path) -> Path:
    return out.parent / f".{out.name}.prune-checkpoint"


def run_job(
    model: keras.Model,
    data: dict,
    out: str | os.PathLike,
    export: str | None = None,
    resume: bool = False,
    force: bool = False,
    print_fn: Callable[[str], None] = print,
    **kwargs,
) -> BudgetResult:
    """Prune ``model`` to the budget in ``kwargs`` on ``data`` (x_train, y_train, x_val,
    y_val) and write ``out/``: ``model.keras``, ``plan.json``, ``plan.png`` and, with
    ``export``, the ``cmsis``/``tflm``/``savedmodel`` export in a folder of that name.
    Everything is written atomically; the checkpoint lives beside ``out`` until the job
    completes, and ``resume=True`` continues from it."""
    out = Path(out)
    writer = io.atomic_dir(out, overwrite=force)
    writer.check()
    if export is not None and export not in EXPORTS:
        raise ValueError(f"--export must be one of {', '.join(EXPORTS)}, got {export!r}.")
    check_splits(data, "The prune job")
    ckpt = checkpoint_path(out)
    if ckpt.exists() and not resume:
        raise FileExistsError(
            f"An interrupted prune run left '{ckpt}'; pass --resume to continue it, or "
            "delete it to start over."
        )
    result = prune_to_budget(
        model,
        (data["x_train"], data["y_train"]),
        (data["x_val"], data["y_val"]),
        checkpoint=ckpt,
        print_fn=print_fn,
        **kwargs,
    )
    with writer as tmp:
        result.model.save(tmp / "model.keras")
        (tmp / "plan.json").write_text(json.dumps(result.to_json(), indent=1) + "\n")
        result.plot(tmp / "plan.png")
        if export is not None:
            _export(result.model, export, tmp / export, data)
    shutil.rmtree(ckpt, ignore_errors=True)
    if print_fn is not None:
        est = ", ".join(f"{m} {result.estimate[m]:,.4g}" for m in result.budget)
        print_fn(f"pruned '{model.name}' to {est}; wrote {out}/")
    return result


def _export(model: keras.Model, kind: str, path: Path, data: dict) -> None:
    from keras_prune import export

    rep = data["x_train"][:500]
    if kind == "cmsis":
        export.cmsis(
            model,
            path,
            rep,
            labels=data["y_train"][:500],
            validation_data=(data["x_val"], data["y_val"]),
            print_fn=None,
        )
    elif kind == "tflm":
        export.tflm(model, path, rep, print_fn=None)
    else:
        export.saved_model(model, path, print_fn=None)
