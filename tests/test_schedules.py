import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune import schedules

CASES = [
    (
        "PolynomialDecay",
        dict(initial_sparsity=0.0, final_sparsity=0.9, begin_step=0, end_step=2000, frequency=100),
    ),
    (
        "PolynomialDecay",
        dict(
            initial_sparsity=0.2,
            final_sparsity=0.8,
            begin_step=7,
            end_step=93,
            power=2,
            frequency=3,
        ),
    ),
    (
        "PolynomialDecay",
        dict(
            initial_sparsity=0.5,
            final_sparsity=0.55,
            begin_step=10,
            end_step=11,
            power=1,
            frequency=1,
        ),
    ),
    (
        "PolynomialDecay",
        dict(
            initial_sparsity=0.0,
            final_sparsity=0.97,
            begin_step=100,
            end_step=250,
            power=5,
            frequency=10,
        ),
    ),
    ("ConstantSparsity", dict(target_sparsity=0.5, begin_step=0, frequency=1)),
    ("ConstantSparsity", dict(target_sparsity=0.3, begin_step=13, end_step=60, frequency=7)),
    ("ConstantSparsity", dict(target_sparsity=0.0, begin_step=5, end_step=5, frequency=4)),
]
STEPS = list(range(0, 320)) + [1999, 2000, 2001, 2100, 10**6]

TFMOT_SCRIPT = r"""
import json, sys
import tensorflow_model_optimization as tfmot
cases, steps = json.loads(sys.stdin.read())
out = []
for name, kwargs in cases:
    s = getattr(tfmot.sparsity.keras, name)(**kwargs)
    rows = []
    for t in steps:
        should, sp = s(t)
        rows.append([bool(should.numpy()), float(sp.numpy())])
    out.append(rows)
print(json.dumps(out))
"""


@pytest.mark.slow  # tfmot in a subprocess: about 8 s
def test_schedules_match_tfmot_at_every_step():
    """Same arguments -> same (should_prune, sparsity), bit for bit, as tfmot 0.8."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", TFMOT_SCRIPT],
        input=json.dumps([CASES, STEPS]),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if proc.returncode != 0 and "No module named 'tensorflow_model_optimization'" in proc.stderr:
        pytest.skip("tfmot extra not installed (pip install 'keras-prune[tfmot]')")
    assert proc.returncode == 0, proc.stderr[-2000:]
    reference = json.loads(proc.stdout.strip().splitlines()[-1])
    for (name, kwargs), ref in zip(CASES, reference, strict=True):
        ours = getattr(schedules, name)(**kwargs)
        got = [[bool(s), float(v)] for s, v in (ours(t) for t in STEPS)]
        assert got == ref, f"{name}({kwargs}) differs from tfmot"


def test_polynomial_decay_values():
    s = kp.schedules.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=2000, frequency=100)
    should, sp = s(1000)
    assert bool(should) and np.isclose(float(sp), 0.9 * (1 - 0.5**3))
    assert not bool(s(1001)[0])
    assert not bool(s(2100)[0]) and np.isclose(float(s(2100)[1]), 0.9)
    assert float(s(0)[1]) == 0.0


def test_constant_sparsity_forever():
    s = kp.schedules.ConstantSparsity(0.4, begin_step=10, frequency=5)
    assert [bool(s(t)[0]) for t in (9, 10, 12, 15, 10**7)] == [False, True, False, True, True]


@pytest.mark.parametrize(
    "cls,kwargs,match",
    [
        (
            schedules.PolynomialDecay,
            dict(initial_sparsity=0.0, final_sparsity=1.0, begin_step=0, end_step=10),
            "final_sparsity.*\\[0, 1\\)",
        ),
        (
            schedules.PolynomialDecay,
            dict(initial_sparsity=-0.1, final_sparsity=0.5, begin_step=0, end_step=10),
            "initial_sparsity",
        ),
        (schedules.ConstantSparsity, dict(target_sparsity=1.5, begin_step=0), "target_sparsity"),
        (
            schedules.PolynomialDecay,
            dict(initial_sparsity=0.0, final_sparsity=0.5, begin_step=10, end_step=5),
            "end_step.*before.*begin_step",
        ),
        (
            schedules.ConstantSparsity,
            dict(target_sparsity=0.5, begin_step=10, end_step=5),
            "end_step.*before.*begin_step",
        ),
        (
            schedules.PolynomialDecay,
            dict(initial_sparsity=0.0, final_sparsity=0.5, begin_step=0, end_step=10, frequency=0),
            "frequency.*positive",
        ),
        (
            schedules.ConstantSparsity,
            dict(target_sparsity=0.5, begin_step=0, frequency=-3),
            "frequency.*positive",
        ),
        (
            schedules.PolynomialDecay,
            dict(initial_sparsity=0.0, final_sparsity=0.5, begin_step=4, end_step=4),
            "greater than",
        ),
        (
            schedules.PolynomialDecay,
            dict(initial_sparsity=0.0, final_sparsity=0.5, begin_step=-1, end_step=4),
            "begin_step",
        ),
        (
            schedules.PolynomialDecay,
            dict(initial_sparsity=0.0, final_sparsity=0.5, begin_step=0, end_step=-1),
            "end_step",
        ),
    ],
)
def test_bad_schedule_arguments(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_config_round_trip():
    for s in (
        kp.schedules.PolynomialDecay(0.1, 0.8, 3, 50, power=2, frequency=7),
        kp.schedules.ConstantSparsity(0.25, 4, 40, 2),
    ):
        assert type(s).from_config(s.get_config()) == s
        again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s))
        assert again == s and again is not s


def test_any_callable_is_a_schedule():
    def every_other_step(step):
        return step % 2 == 0, 0.5

    assert schedules.get(every_other_step) is every_other_step
    with pytest.raises(TypeError, match="must return"):
        schedules.get(lambda step: 0.5)
    with pytest.raises(TypeError, match="schedule"):
        schedules.get("polynomial")
