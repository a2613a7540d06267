"""Tests of kmixvae.layers.chunked_input_gradient: the same values and gradients as Conv2D,
the input gradient in chunks on JAX's CPU (and nowhere else), and the encoder using it."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kmixvae.layers.chunked_input_gradient import (
    MAX_ROWS,
    chunk_input_gradient,
    chunks_input_gradient,
)
from kmixvae.models.encoder import Encoder

JAX = keras.backend.backend() == "jax"
RNG = np.random.default_rng(0)
X = RNG.normal(size=(10, 14, 14, 3)).astype("float32")
UPSTREAM = RNG.normal(size=(10, 7, 7, 8)).astype("float32")


def pair(max_rows=4, dtype=None):
    """A chunked layer and a keras Conv2D with the same weights (3x3, stride 2, 'same')."""
    chunked = chunk_input_gradient(
        keras.layers.Conv2D(8, 3, strides=2, padding="same", dtype=dtype), max_rows=max_rows
    )
    plain = keras.layers.Conv2D(8, 3, strides=2, padding="same", dtype=dtype)
    chunked.build(X.shape)
    plain.build(X.shape)
    plain.set_weights(chunked.get_weights())
    return chunked, plain


def test_max_rows_must_be_positive():
    with pytest.raises(ValueError, match="max_rows: 0"):
        chunk_input_gradient(keras.layers.Conv2D(8, 3), max_rows=0)


def test_it_chunks_on_jax_cpu_only_and_not_under_a_distribution():
    if not JAX:
        assert not chunks_input_gradient()
        return
    import jax

    assert chunks_input_gradient() == (jax.default_backend() == "cpu")
    keras.distribution.set_distribution(keras.distribution.DataParallel())
    try:
        assert not chunks_input_gradient()
    finally:
        keras.distribution.set_distribution(None)


@pytest.mark.skipif(not JAX, reason="the chunked input gradient is JAX's (jax.custom_vjp)")
def test_same_values_and_gradients_as_conv2d_with_the_input_gradient_in_chunks():
    import jax

    chunked, plain = pair(max_rows=4)
    kernel = keras.ops.convert_to_tensor(chunked.kernel)

    def vjp(layer):
        y, back = jax.vjp(layer.convolution_op, X, kernel)
        return (y, *back(UPSTREAM))

    for got, want in zip(vjp(chunked), vjp(plain)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)

    def convolutions(layer):
        """Convolutions of the compiled gradient (the forward one is unused, so dropped)."""
        gradient = jax.jit(lambda x, k, g: jax.vjp(layer.convolution_op, x, k)[1](g))
        return gradient.lower(X, kernel, UPSTREAM).as_text().count("stablehlo.convolution")

    # the kernel gradient, then the input gradient: one for Conv2D, ceil(10 / 4) = 3 chunks
    assert convolutions(plain) == 2
    assert convolutions(chunked) == (4 if jax.default_backend() == "cpu" else 2)
    # at or under max_rows rows, the layer is Conv2D's convolution
    assert convolutions(pair(max_rows=10)[0]) == 2


def test_training_gives_conv2ds_weights():
    """One SGD step of a model on each layer, from the same weights: the same kernel."""
    chunked, plain = pair(max_rows=4)
    for layer in (chunked, plain):
        model = keras.Sequential([keras.Input(X.shape[1:]), layer])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.train_on_batch(X, UPSTREAM)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(chunked.kernel),
        keras.ops.convert_to_numpy(plain.kernel),
        rtol=1e-5,
        atol=1e-6,
    )


def test_the_encoders_convolutions_chunk_their_input_gradient_and_stay_conv2ds():
    """Still keras Conv2D layers: a saved file names their weights by their class."""
    encoder = Encoder(num_channels=3, latent_dim=2, filters=[4, 8], dense_units=8)
    assert [type(c) for c in encoder.convs] == [keras.layers.Conv2D] * 2
    assert all(c.chunk_rows == MAX_ROWS for c in encoder.convs)


def test_a_model_saved_with_it_loads_into_plain_conv2ds_and_back(tmp_path):
    chunked, _ = pair()
    model = keras.Sequential([keras.Input(X.shape[1:]), chunked])
    model.save(tmp_path / "m.keras")
    revived = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(revived(X)), keras.ops.convert_to_numpy(model(X)), atol=1e-6
    )


@pytest.mark.skipif(not JAX, reason="the chunked input gradient is JAX's (jax.custom_vjp)")
def test_mixed_precision_chunks_in_the_compute_dtype():
    """Under mixed_float16 the kernel is read in float16, as Conv2D's: same output and
    input gradient as Conv2D's to float16 precision."""
    import jax

    layers = pair(max_rows=4, dtype="mixed_float16")

    def output_and_input_gradient(layer):
        def total(x):
            y = layer(x)  # the layer's __call__: inputs cast, the kernel read in float16
            return keras.ops.sum(keras.ops.cast(y, "float32") * UPSTREAM), y

        (value, y), dx = jax.value_and_grad(total, has_aux=True)(X)
        return y, dx

    (y_chunked, dx_chunked), (y_plain, dx_plain) = map(output_and_input_gradient, layers)
    assert y_chunked.dtype == y_plain.dtype == "float16"
    np.testing.assert_allclose(np.asarray(y_chunked), np.asarray(y_plain), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(np.asarray(dx_chunked), np.asarray(dx_plain), rtol=1e-3, atol=1e-2)
