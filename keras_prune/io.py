"""Loading and saving models: safe by default, atomic, with the Keras 3 ``.h5`` quirks handled.

Example:

```python
kp.io.save(pruned, "pruned.keras")          # atomic; refuses to overwrite unless asked
model = kp.io.load("pruned.h5")             # masks, schedule step and compile state intact
model.fit(x, y, callbacks=[kp.callbacks.PruningScheduler()])
```
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import keras

__all__ = ["load", "save", "atomic_path", "atomic_dir"]

_FORMATS = (".keras", ".h5", ".hdf5")


def _check_suffix(path: Path, what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(
            f"{what}: '{path}' has suffix {path.suffix or '(none)'!r}; use .keras (recommended) "
            "or .h5."
        )
    return suffix


def load(path: str | os.PathLike, custom_objects: dict | None = None, safe_mode: bool = True,
         compile: bool = True) -> keras.Model:
    """Load a ``.keras`` or ``.h5`` model, pruned or not.

    ``safe_mode`` stays on unless you turn it off: with it, Keras refuses to deserialize
    code (Lambda layers) from the file, because loading it would run that code.

    Keras 3.15 restores an ``.h5`` file's optimizer so that the next ``fit`` fails
    ("Unknown variable ... This optimizer can only be called for the variables it was
    originally built with"). For ``.h5`` files this function recompiles the model from
    its saved compile config with a fresh optimizer, so ``fit`` works; the optimizer's
    slots (e.g. Adam moments) start again from zero. ``.keras`` files keep them.
    """
    path = Path(path)
    suffix = _check_suffix(path, "kp.io.load")
    if not path.is_file():
        raise FileNotFoundError(f"kp.io.load: no model file at '{path}'.")
    model = keras.saving.load_model(path, custom_objects=custom_objects, compile=compile,
                                    safe_mode=safe_mode)
    if suffix != ".keras" and compile and getattr(model, "optimizer", None) is not None:
        config = model.get_compile_config()
        if config:
            model.compile_from_config(config)
    return model


class atomic_path:
    """Context manager giving a temporary path beside ``path``; renamed onto it on success.

    The temporary file keeps ``path``'s suffix (Keras picks the format from it). Nothing
    is left behind if the body raises.

    ```python
    with atomic_path("out/model.keras") as tmp:
        model.save(tmp)
    ```
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite

    def __enter__(self) -> Path:
        if self.path.exists() and not self.overwrite:
            raise FileExistsError(
                f"'{self.path}' already exists; pass overwrite=True (or --force) to replace it."
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=self.path.suffix,
                                   dir=self.path.parent)
        os.close(fd)
        os.unlink(tmp)  # writers such as h5py refuse to reuse an existing file
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.path)
        elif self.tmp.exists():
            self.tmp.unlink()


class atomic_dir:
    """Context manager giving a temporary directory beside ``path``; renamed onto it on
    success, removed if the body raises.

    An existing ``path`` is refused unless ``overwrite``; with it, the old directory is
    replaced only once the new one is complete.

    ```python
    with atomic_dir("out/tflm") as tmp:
        (tmp / "model.tflite").write_bytes(data)
    ```
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite

    def check(self) -> None:
        """Raise now if the directory could not be written at the end."""
        if self.path.exists() and not self.overwrite:
            raise FileExistsError(
                f"'{self.path}' already exists; pass force=True (or --force) to replace it."
            )
        if self.path.exists() and not self.path.is_dir():
            raise FileExistsError(f"'{self.path}' exists and is not a directory.")
        parent = self.path.absolute().parent
        probe = parent
        while not probe.exists():
            probe = probe.parent
        if not os.access(probe, os.W_OK | os.X_OK):
            raise PermissionError(f"Cannot write the output directory '{self.path}': "
                                  f"'{probe}' is not writable.")

    def __enter__(self) -> Path:
        self.check()
        parent = self.path.absolute().parent
        parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.tmp-", dir=parent))
        umask = os.umask(0)
        os.umask(umask)
        self.tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 is for the temporary name only
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = None
        if self.path.exists():
            self.check()
            old = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.old-",
                                        dir=self.tmp.parent))
            os.replace(self.path, old / "old")
        try:
            os.replace(self.tmp, self.path)
        except BaseException:
            if old is not None:
                os.replace(old / "old", self.path)
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)


def save(model: keras.Model, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save ``model`` to ``.keras`` or ``.h5`` atomically (temp file, then rename)."""
    path = Path(path)
    _check_suffix(path, "kp.io.save")
    with atomic_path(path, overwrite=overwrite) as tmp:
        model.save(tmp)
    return path
