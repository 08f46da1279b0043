"""Loading and saving models: safe by default, atomic, Keras 3 and Keras 2 ``.h5`` quirks handled.

Example:

```python
kp.io.save(pruned, "pruned.keras")          # atomic; refuses to overwrite unless asked
model = kp.io.load("pruned.h5")             # masks, schedule step and compile state intact
model.fit(x, y, callbacks=[kp.callbacks.PruningScheduler()])
```
"""

from __future__ import annotations

import binascii
import codecs
import copy
import json
import marshal
import os
import shutil
import sys
import tempfile
import types
import zipfile
import zlib
from pathlib import Path

import h5py
import keras
from keras.src import layers as keras_src_layers
from keras.src.legacy.saving import json_utils, legacy_h5_format, saving_options, saving_utils
from keras.src.models.functional import Functional
from keras.src.saving import serialization_lib
from keras.src.saving.saving_lib import safe_get_h5_group

__all__ = ["load", "save", "atomic_path", "atomic_dir", "save_figure", "LoadError"]

_FORMATS = (".keras", ".h5", ".hdf5")


def _check_suffix(path: Path, what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(
            f"{what}: '{path}' has suffix {path.suffix or '(none)'!r}; use .keras (recommended) "
            "or .h5."
        )
    return suffix


class LoadError(ValueError):
    """A model file that :func:`load` cannot load; the message names the file and the fix."""


def load(
    path: str | os.PathLike,
    custom_objects: dict | None = None,
    safe_mode: bool = True,
    compile: bool = True,
) -> keras.Model:
    """Load a ``.keras`` or ``.h5`` model, pruned or not, including Keras 2-era ``.h5`` files.

    ``safe_mode`` stays on unless you turn it off. With it, a Lambda layer whose function
    is Python bytecode stored in the file is refused before anything is built, because
    loading it would run that code; pass ``safe_mode=False`` only for a file you trust.
    An explicit ``safe_mode=True`` wins over ``keras.config.enable_unsafe_deserialization()``.

    ``.h5`` files are rebuilt from their ``model_config`` here, so that files written by
    Keras 2 (``tf.keras``, ``tf_keras``) load too. Their config is normalised first:

    - a functional model whose class is named ``Model`` (Keras 2.0 to 2.4) is read as
      ``Functional``; a Sequential config stored as a bare list of layers (Keras 2.0) gets
      its ``name``/``layers`` form, and one that starts with a layer carrying
      ``batch_input_shape`` gets the InputLayer that Keras 2 implied;
    - single-entry ``input_layers``/``output_layers`` (Keras 2 wrote ``[[name, 0, 0]]``)
      become one tensor, as Keras 3 writes them;
    - keyword arguments that Keras 2 wrote but that Keras 3's built-in layers reject are
      dropped when they hold the only value Keras 3 supports: ``groups=1`` for the
      depthwise, separable and transposed convolutions, the unused ``kernel_*`` entries of
      separable convolutions, ``time_major=False`` for recurrent layers. Any other value is
      a :class:`LoadError` naming the layer. A class you pass in ``custom_objects`` is
      left alone. Nothing in Keras is patched; only the config read from the file changes;
    - Keras 2 compile settings: ``lr`` becomes ``learning_rate``, a zero ``decay`` is
      dropped, loss aliases such as ``"mse"`` get their full names and the loss reduction
      ``"auto"`` becomes ``"sum_over_batch_size"``.

    The weights are then read with Keras' own legacy ``.h5`` weight loader.

    With ``compile``, an ``.h5`` model is compiled from its saved compile config with a
    fresh optimizer: Keras 3.15 restores an ``.h5`` file's optimizer so that the next
    ``fit`` fails ("Unknown variable ... This optimizer can only be called for the
    variables it was originally built with"), so the optimizer's slots (e.g. Adam moments)
    start again from zero. ``.keras`` files keep them. A file without compile config loads
    uncompiled, and compile settings that cannot be rebuilt are a :class:`LoadError`
    (load with ``compile=False`` and compile yourself).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``path`` does not end in ``.keras``, ``.h5`` or ``.hdf5``.
        LoadError (a ``ValueError``): the file is truncated, corrupt or not a Keras model
            (raised from the underlying error), or an ``.h5`` file holds weights only; a
            layer class is neither built in nor in ``custom_objects`` (the message gives
            the ``custom_objects`` key to use), or is a Keras 2 ``TFOpLambda``; a
            Lambda layer holds code and ``safe_mode`` is on; a Keras 2 Lambda layer's
            bytecode cannot be read by this Python (even with ``safe_mode=False``: rebuild
            the layer in code and load the weights with ``model.load_weights(path)``).
    """
    path = Path(path)
    suffix = _check_suffix(path, "kp.io.load")
    if not path.is_file():
        raise FileNotFoundError(f"kp.io.load: no model file at '{path}'.")
    with open(path, "rb"):
        pass  # a permission problem surfaces here as itself, not as a "corrupt file"
    custom_objects = dict(custom_objects or {})
    if suffix == ".keras":
        return _load_keras(path, custom_objects, safe_mode, compile)
    return _load_h5(path, custom_objects, safe_mode, compile)


def _not_a_model_file(path: Path, error: BaseException) -> LoadError:
    return LoadError(
        f"kp.io.load: '{path}' is not a valid, complete Keras model file "
        f"({type(error).__name__}: {error}). It may be truncated (an interrupted download, "
        "copy or save) or not a Keras model at all: save or download it again."
    )


def _load_keras(path: Path, custom_objects: dict, safe_mode: bool, compile: bool) -> keras.Model:
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, zlib.error) as e:
        raise _not_a_model_file(path, e) from e
    _refuse_code(config, path, custom_objects, safe_mode, h5=False)
    try:
        return keras.saving.load_model(
            path, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode
        )
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
        raise _not_a_model_file(path, e) from e
    except (ValueError, TypeError) as e:
        _explain_unknown_class(config, path, custom_objects, e, h5=False)
        raise


def _load_h5(path: Path, custom_objects: dict, safe_mode: bool, compile: bool) -> keras.Model:
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise _not_a_model_file(path, e) from e
    with f:
        try:
            raw_config = f.attrs.get("model_config")
            raw_training = f.attrs.get("training_config")
            keras_version = _text(f.attrs.get("keras_version", ""))
        except OSError as e:
            raise _not_a_model_file(path, e) from e
        if raw_config is None:
            raise LoadError(
                f"kp.io.load: '{path}' holds no model architecture (weights only, e.g. from "
                "save_weights). Build the model in code and call model.load_weights(path)."
            )
        try:
            config = json_utils.decode(_text(raw_config))
        except ValueError as e:
            raise _not_a_model_file(path, e) from e
        _refuse_code(config, path, custom_objects, safe_mode, h5=True)
        _normalise_model_config(config, path, custom_objects, _written_by_keras2(keras_version))
        pristine = copy.deepcopy(config)  # Keras pops keys from the config it builds from
        try:
            with (
                saving_options.keras_option_scope(use_legacy_config=True),
                serialization_lib.SafeModeScope(safe_mode),
            ):
                model = saving_utils.model_from_config(config, custom_objects=custom_objects)
        except (ValueError, TypeError) as e:
            _explain_unknown_class(pristine, path, custom_objects, e, h5=True)
            raise
        try:
            legacy_h5_format.load_weights_from_hdf5_group(
                safe_get_h5_group(f, "model_weights"), model
            )
        except (OSError, KeyError) as e:
            raise _not_a_model_file(path, e) from e
        if compile and raw_training is not None:
            try:
                training_config = json_utils.decode(_text(raw_training))
                model.compile(
                    **saving_utils.compile_args_from_training_config(
                        _normalise_training_config(training_config), custom_objects
                    )
                )
            except (ValueError, TypeError, KeyError) as e:
                raise LoadError(
                    f"kp.io.load: '{path}': its saved compile settings cannot be rebuilt "
                    f"({type(e).__name__}: {e}). Load it with compile=False and compile the "
                    "model yourself, or pass the custom loss/metric/optimizer classes in "
                    "custom_objects."
                ) from e
    return model


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _written_by_keras2(keras_version: str) -> bool:
    try:
        return int(keras_version.split(".")[0]) < 3
    except ValueError:
        return True  # Keras 3 always records its version


def _layer_configs(config):
    """Every layer config (``{"class_name": ..., "config": ...}``) in a model config, the
    model itself first, then nested models, wrapped layers and RNN cells, in order."""
    if not isinstance(config, dict) or "class_name" not in config:
        return
    yield config
    inner = config.get("config")
    if isinstance(inner, list):  # Keras 2.0-era Sequential: a bare list of layers
        for layer in inner:
            yield from _layer_configs(layer)
        return
    if not isinstance(inner, dict):
        return
    for key in ("layers", "cells"):
        if isinstance(inner.get(key), list):
            for layer in inner[key]:
                yield from _layer_configs(layer)
    for key in ("layer", "forward_layer", "backward_layer", "cell"):
        yield from _layer_configs(inner.get(key))


def _layer_name(layer: dict) -> str:
    inner = layer.get("config")
    return str(layer.get("name") or (inner.get("name") if isinstance(inner, dict) else None) or "?")


def _is_keras_builtin(layer: dict, class_name: str, custom_objects: dict, h5: bool) -> bool:
    """Whether ``layer`` will be built by Keras' own ``class_name`` (not a custom class)."""
    if layer.get("class_name") != class_name:
        return False
    if h5:  # a custom object of the same name takes precedence over the built-in
        return keras.saving.get_registered_object(class_name, custom_objects) is None
    return _keras_package(layer.get("module"))


def _keras_package(module: str | None) -> bool:
    """Whether a ``.keras`` config's ``module`` is one Keras itself resolves classes from."""
    return (module or "").split(".", 1)[0] in ("keras", "keras_hub", "keras_cv", "keras_nlp")


# Keras 2's Conv base class wrote these into every convolution's config; Keras 3's depthwise,
# separable and transposed convolutions take no such argument. Recurrent layers lost
# `time_major`. Each is dropped when it holds the only value Keras 3 implements.
_LEGACY_ONLY = {"groups": 1, "time_major": False}
_LEGACY_ONLY_CLASSES = {
    "groups": (
        "DepthwiseConv1D",
        "DepthwiseConv2D",
        "SeparableConv1D",
        "SeparableConv2D",
        "Conv1DTranspose",
        "Conv2DTranspose",
        "Conv3DTranspose",
    ),
    "time_major": ("SimpleRNN", "LSTM", "GRU", "RNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"),
}
# Unused by Keras 2's separable convolutions (they use depthwise_*/pointwise_*).
_UNUSED_SEPARABLE = ("kernel_initializer", "kernel_regularizer", "kernel_constraint")


def _normalise_model_config(config: dict, path: Path, custom_objects: dict, keras2: bool) -> None:
    """Rewrite Keras 2-era parts of an ``.h5`` model config, in place, into Keras 3's form."""
    for layer in _layer_configs(config):
        name = layer["class_name"]
        if name == "Sequential" and isinstance(layer["config"], list):
            layer["config"] = {"name": layer.get("name", "sequential"), "layers": layer["config"]}
        inner = layer["config"]
        if not isinstance(inner, dict):
            continue
        if name == "Sequential" and isinstance(inner.get("layers"), list):
            _give_sequential_an_input_layer(inner["layers"])
        functional = all(k in inner for k in ("layers", "input_layers", "output_layers"))
        if functional and _is_keras_builtin(layer, "Model", custom_objects, h5=True):
            layer["class_name"] = "Functional"
        if functional and keras2:
            for key in ("input_layers", "output_layers"):
                ends = inner[key]
                if (
                    isinstance(ends, list)
                    and len(ends) == 1
                    and isinstance(ends[0], list)
                    and ends[0]
                    and isinstance(ends[0][0], str)
                ):
                    inner[key] = ends[0]
        for kwarg, value in _LEGACY_ONLY.items():
            if (
                kwarg in inner
                and name in _LEGACY_ONLY_CLASSES[kwarg]
                and _is_keras_builtin(layer, name, custom_objects, h5=True)
            ):
                if inner[kwarg] != value:
                    raise LoadError(
                        f"kp.io.load: '{path}': layer '{_layer_name(layer)}' ({name}) has "
                        f"{kwarg}={inner[kwarg]!r}, which Keras 3's {name} does not "
                        f"implement (only {kwarg}={value!r}). Rebuild this layer in code and "
                        "load the weights with model.load_weights(path), or pass a class "
                        f"that implements it: custom_objects={{'{name}': YourLayer}}."
                    )
                del inner[kwarg]
        if name in ("SeparableConv1D", "SeparableConv2D") and _is_keras_builtin(
            layer, name, custom_objects, h5=True
        ):
            for key in _UNUSED_SEPARABLE:
                inner.pop(key, None)
        if (
            name == "Lambda"
            and inner.get("output_shape_type") == "lambda"
            and isinstance(inner.get("output_shape"), list)
        ):
            # Keras 3 converts a Keras 2 bytecode `function` itself, but not `output_shape`.
            code, defaults, closure = (list(inner["output_shape"]) + [None, None])[:3]
            inner["output_shape"] = {
                "class_name": "__lambda__",
                "config": {"code": code, "defaults": defaults, "closure": closure},
            }


def _give_sequential_an_input_layer(layers: list) -> None:
    """Keras 2 Sequential configs may start with a layer holding ``batch_input_shape``
    instead of an InputLayer; Keras 3.15's legacy loader turns that into an ``input_shape``
    with one dimension too many. Put the InputLayer Keras 2 implied in front instead."""
    first = layers[0] if layers and isinstance(layers[0], dict) else {}
    inner = first.get("config")
    if (
        first.get("class_name") != "InputLayer"
        and isinstance(inner, dict)
        and "batch_input_shape" in inner
    ):
        dtype = inner.get("dtype")
        layers.insert(
            0,
            {
                "class_name": "InputLayer",
                "config": {
                    "batch_input_shape": inner["batch_input_shape"],
                    "dtype": dtype if isinstance(dtype, str) else "float32",
                    "sparse": False,
                    "name": f"{inner.get('name', 'sequential')}_input",
                },
            },
        )
    for layer in layers[1:]:  # Keras 2 used it on the first layer only
        if isinstance(layer, dict) and isinstance(layer.get("config"), dict):
            layer["config"].pop("batch_input_shape", None)


def _normalise_training_config(config: dict) -> dict:
    """Rewrite Keras 2-era compile settings, in place, into what Keras 3 reads."""
    optimizer = config.get("optimizer_config", {}).get("config")
    if isinstance(optimizer, dict):
        if "lr" in optimizer:
            lr = optimizer.pop("lr")
            optimizer.setdefault("learning_rate", lr)
        if optimizer.get("decay", None) == 0:
            del optimizer["decay"]
    config["loss"] = _normalise_loss(config.get("loss"))
    return config


def _normalise_loss(loss):
    if isinstance(loss, str):  # "mse" and other aliases do not deserialize in Keras 3.15
        try:
            function = keras.losses.get(loss)
        except ValueError:
            return loss
        if getattr(function, "__module__", "").startswith("keras."):  # built-ins only
            return function.__name__
        return loss
    if isinstance(loss, dict) and "class_name" in loss:
        inner = loss.get("config")
        if isinstance(inner, dict) and inner.get("reduction") == "auto":
            inner["reduction"] = "sum_over_batch_size"  # Keras 2's AUTO outside distribution
        return loss
    if isinstance(loss, dict):
        return {k: _normalise_loss(v) for k, v in loss.items()}
    if isinstance(loss, list):
        return [_normalise_loss(v) for v in loss]
    return loss


def _refuse_code(config: dict, path: Path, custom_objects: dict, safe_mode: bool, h5: bool) -> None:
    """Refuse Lambda layers holding bytecode under ``safe_mode``; without it, refuse Keras 2
    bytecode that this Python cannot read. Nothing from the file is run here."""
    for layer in _layer_configs(config):
        if not _is_keras_builtin(layer, "Lambda", custom_objects, h5):
            continue
        inner = layer["config"]
        if not isinstance(inner, dict):
            continue
        keras2 = [
            inner[key][0]
            for key in ("function", "output_shape")
            if isinstance(inner.get(key), list)
            and inner[key]
            and (key == "function" or inner.get("output_shape_type") == "lambda")
        ]
        keras3 = any(
            isinstance(inner.get(key), dict) and inner[key].get("class_name") == "__lambda__"
            for key in ("function", "output_shape", "mask")
        )
        if not keras2 and not keras3:
            continue
        name = _layer_name(layer)
        if safe_mode:
            raise LoadError(
                f"kp.io.load: '{path}': layer '{name}' is a Lambda layer whose function is "
                "Python bytecode stored in the file; loading it would execute code from the "
                "file, so safe_mode=True refuses it. Pass safe_mode=False only if you trust "
                "the file; otherwise rebuild the layer in code (a custom layer class, passed "
                "in custom_objects) and load the weights with model.load_weights(path)."
                + (_KERAS2_BYTECODE_NOTE if keras2 else "")
            )
        for code in keras2:
            _check_keras2_bytecode(code, path, name)


_PYTHON = f"Python {sys.version_info.major}.{sys.version_info.minor}"
_KERAS2_BYTECODE_NOTE = (
    f" It is Keras 2 bytecode, which loads only if {_PYTHON} can read the bytecode of the "
    "Python that saved the file."
)


def _check_keras2_bytecode(code, path: Path, name: str) -> None:
    """Raise unless ``code`` (Keras 2's base64 ``marshal`` of a code object) unmarshals here.

    Called only with ``safe_mode=False``: ``marshal`` is not meant for untrusted data.
    """
    try:
        try:
            raw = codecs.decode(code.encode("ascii"), "base64")
        except (UnicodeEncodeError, binascii.Error):
            raw = code.encode("raw_unicode_escape")  # Keras 2's fallback, as in func_load
        loaded = marshal.loads(raw)
        if not isinstance(loaded, types.CodeType):
            raise ValueError(f"unmarshalled a {type(loaded).__name__}, not a code object")
    except (ValueError, EOFError, TypeError, AttributeError) as e:
        raise LoadError(
            f"kp.io.load: '{path}': layer '{name}' is a Keras 2 Lambda layer whose function "
            f"is marshalled Python bytecode, and {_PYTHON} cannot read it ({e}): bytecode is "
            "tied to the Python version that saved the file. Keras 3 cannot load this layer, "
            "not even with safe_mode=False. Rebuild the layer in code (a custom layer, or a "
            "Lambda around a function defined in your code), build the model with it and "
            "load the weights with model.load_weights(path); or pass a replacement class as "
            "custom_objects={'Lambda': YourLayer}."
        ) from e


def _legacy_module_objects() -> dict:
    """The classes Keras' legacy ``.h5`` loader resolves by name (a copy; never mutated)."""
    return {
        **vars(keras_src_layers),
        "InputLayer": keras.layers.InputLayer,
        "Functional": Functional,
        "Model": keras.Model,
        "Sequential": keras.Sequential,
    }


def _explain_unknown_class(
    config: dict, path: Path, custom_objects: dict, error: Exception, h5: bool
) -> None:
    """After a failed load, raise a clear error if a layer's class cannot be resolved."""
    module_objects = _legacy_module_objects() if h5 else {}
    for layer in _layer_configs(config):
        class_name = layer["class_name"]
        if h5:
            key = class_name
            known = (
                keras.saving.get_registered_object(key, custom_objects, module_objects) is not None
            )
        else:
            key = layer.get("registered_name") or class_name
            known = (
                _keras_package(layer.get("module"))
                or keras.saving.get_registered_object(key, custom_objects) is not None
            )
        if known:
            continue
        name = _layer_name(layer)
        if class_name in ("TFOpLambda", "SlicingOpLambda"):
            raise LoadError(
                f"kp.io.load: '{path}': layer '{name}' is a TensorFlow operation that Keras 2 "
                f"recorded as a {class_name} layer; Keras 3 cannot rebuild it. Rebuild the "
                "model in code (with keras.ops or a custom layer for that operation) and load "
                "the weights with model.load_weights(path)."
            ) from error
        short = key.rsplit(">", 1)[-1]
        raise LoadError(
            f"kp.io.load: '{path}': layer '{name}' has class '{key}', which is neither a Keras "
            "built-in nor in custom_objects. Import or define the class and pass it: "
            f"kp.io.load(path, custom_objects={{'{key}': {short}}}). The key is the name the "
            "file stores: a class registered with @register_keras_serializable(package=...) "
            "(Keras 2 or 3) is stored as 'package>ClassName', and needs that full name."
        ) from error


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
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.stem}.", suffix=self.path.suffix, dir=self.path.parent
        )
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
        """Raise now if the directory could not be written at the end: it exists (unless
        ``overwrite``) or is a file, or the nearest existing folder above it cannot be
        written. Writability is tried (a temporary folder made and removed), not guessed
        from permission bits, so read-only mounts and ``/proc`` are caught as root too."""
        if self.path.exists() and not self.overwrite:
            raise FileExistsError(
                f"'{self.path}' already exists; pass force=True (or --force) to replace it."
            )
        if self.path.exists() and not self.path.is_dir():
            raise FileExistsError(f"'{self.path}' exists and is not a directory.")
        probe = self.path.absolute().parent
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise NotADirectoryError(
                f"Cannot write the output directory '{self.path}': '{probe}' is a file, "
                "so it is not writable as a folder. Choose another output directory (--out)."
            )
        try:
            tempfile.TemporaryDirectory(prefix=".kp_probe-", dir=probe).cleanup()
        except OSError as e:
            raise PermissionError(
                f"Cannot write the output directory '{self.path}': '{probe}' is not "
                f"writable ({e.strerror or e}). Choose another output directory (--out)."
            ) from None

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
            old = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.old-", dir=self.tmp.parent))
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


def save_figure(fig, path: str | os.PathLike, overwrite: bool = False, dpi: int = 120) -> Path:
    """Lay out a matplotlib figure, write it to ``path`` atomically (PNG by default, from
    the suffix) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.tight_layout()
    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)
    return path


def save(model: keras.Model, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save ``model`` to ``.keras`` or ``.h5`` atomically (temp file, then rename)."""
    path = Path(path)
    _check_suffix(path, "kp.io.save")
    with atomic_path(path, overwrite=overwrite) as tmp:
        model.save(tmp)
    return path
