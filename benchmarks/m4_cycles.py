"""Estimated Cortex-M4 cycles of the C export, per layer, for the four reference models.

Each model (LeNet-300-100, LeNet-5, MLPerf Tiny's ResNet-8 and DS-CNN, untrained but
int8-calibrated: cycles do not depend on the weights' values) is exported with
``kp.export.cmsis``, built for a Cortex-M4 (``-mcpu=cortex-m4 -mthumb -O2``) and run
layer by layer under unicorn (``kp.mcu.profile_model``), once with our DSP kernels and
once with the portable C99 path (``-DKP_NO_DSP``). With a CMSIS-NN checkout (``--cmsis-nn
DIR``, by default ``KP_CMSIS_NN_DIR``; never needed) the same generated code is also built
with ``-DKP_USE_CMSIS_NN`` and measured in the same run, so ARM's kernels and ours are
compared on the same layers. Without one, the CMSIS-NN column holds the whole-network
figures measured the same way, from the table "CMSIS-NN baseline" in docs/c-export.md.

Every build's output is checked against the host build's, bit for bit. Emulation is
deterministic, so one run per build is exact; there is nothing to take a median of.

    python benchmarks/m4_cycles.py [--models lenet_300_100 lenet5 resnet8 ds_cnn]
                                   [--cmsis-nn CMSIS_NN_DIR] [--per-layer]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_prune as kp  # noqa: E402
from keras_prune.mcu import cycles as m4_cycles  # noqa: E402
from keras_prune.mcu import host  # noqa: E402

# Whole networks, CMSIS-NN at 99f736a, -O2, same cycle model: the table "CMSIS-NN
# baseline" in docs/c-export.md (change both together).
CMSIS_NN_NOTE = {
    "lenet_300_100": 655_278,
    "lenet5": 3_041_313,
    "resnet8": 36_739_306,
    "ds_cnn": 9_166_719,
}
BUILDERS = {
    "lenet_300_100": kp.models.lenet_300_100,
    "lenet5": kp.models.lenet5,
    "resnet8": kp.models.resnet8,
    "ds_cnn": kp.models.ds_cnn,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    parser.add_argument(
        "--cmsis-nn",
        default=os.environ.get("KP_CMSIS_NN_DIR") or None,
        help="a CMSIS-NN checkout (optional; default: $KP_CMSIS_NN_DIR)",
    )
    parser.add_argument("--per-layer", action="store_true", help="print per-layer tables")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            keras.utils.set_random_seed(args.seed)
            model = BUILDERS[name]()
            x = rng.random((100, *model.inputs[0].shape[1:])).astype("float32")
            path = Path(tmp) / name
            report = kp.export.cmsis(model, path, x, samples=10, print_fn=None, progress=False)
            inp = report.manifest["io"]["input"]
            xq = rng.integers(-128, 128, (1, int(np.prod(inp["shape"]))), dtype=np.int8)
            host_out = host.run_host(
                host.build_host(path, Path(tmp) / f"{name}.host"),
                xq,
                int(np.prod(report.manifest["io"]["output"]["shape"])),
            )
            builds = {"ours (DSP)": {}, "ours (portable C)": {"defines": ("KP_NO_DSP",)}}
            if args.cmsis_nn:
                builds["CMSIS-NN"] = {"cmsis_nn": args.cmsis_nn}
            costs = {}
            for label, kwargs in builds.items():
                t = time.time()
                cost = m4_cycles.profile_model(path, xq, **kwargs)
                if not np.array_equal(cost.output, host_out[0]):
                    raise SystemExit(
                        f"{name}, {label}: the Cortex-M4 output differs from the host's"
                    )
                costs[label] = cost
                print(f"[{name}: {label} emulated in {time.time() - t:.0f} s]", flush=True)
                if args.per_layer:
                    print(m4_cycles.table(cost, f"\n{name}, {label}"))
            rows.append((name, report, costs))

    anchor = "CMSIS-NN (measured here)" if args.cmsis_nn else "CMSIS-NN (docs)"
    head = (
        f"{'model':<15}{'MACs':>12}{'ours DSP':>13}{'cyc/MAC':>8}{'portable':>13}"
        f"{anchor:>26}{'ours/CMSIS':>11}{'ms@120':>8}{'arena B':>9}{'TFLM arena':>11}"
        f"{'flash B':>10}{'.tflite B':>10}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for name, report, costs in rows:
        ours, port = costs["ours (DSP)"], costs["ours (portable C)"]
        ref = costs["CMSIS-NN"].cycles if "CMSIS-NN" in costs else CMSIS_NN_NOTE[name]
        size = report.manifest["sizes"].get("cortex_m4", {})
        mem = report.manifest["memory"]
        print(
            f"{name:<15}{ours.macs:>12,}{ours.cycles:>13,}{ours.cycles / ours.macs:>8.2f}"
            f"{port.cycles:>13,}{ref:>26,}{ours.cycles / ref:>11.2f}{ours.ms():>8.1f}"
            f"{mem['arena_bytes']:>9,}{mem['tflm_arena_bytes']:>11,}"
            f"{size.get('model_flash', 0):>10,}{report.manifest['sizes']['tflite_bytes']:>10,}"
        )
    print(
        "\nflash B: the model's weights + code in the Cortex-M4 image (firmware and test "
        "inputs excluded). " + m4_cycles.ASSUMPTIONS
    )


if __name__ == "__main__":
    main()
