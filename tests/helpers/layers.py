"""`run_layer_test`: the checks every kmixvae layer gets (in the spirit of keras-hub's)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def roundtrip(layer):
    """get_config -> from_config and serialize -> deserialize keep the config; returns the revived layer."""
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == config
    revived = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(revived) is type(layer)
    assert revived.get_config() == config
    return revived


def run_layer_test(layer, inputs, expected_output_shape, check_output_shape_fn=True):
    """Builds and calls `layer`, checks its output shape and its serialisation round trip.

    Checks: the call builds the layer and returns `expected_output_shape`;
    `compute_output_shape` agrees (unless `check_output_shape_fn` is False);
    the config survives `from_config` and `serialize`/`deserialize`; the
    revived layer with the same weights gives the same output.

    Args:
        layer: a fresh layer instance.
        inputs: tuple of numpy arrays, the positional call arguments.
        expected_output_shape: tuple.

    Returns:
        The layer's output as a numpy array.
    """
    out = np.asarray(ops.convert_to_numpy(layer(*inputs)))
    assert layer.built
    assert out.shape == tuple(expected_output_shape), (out.shape, expected_output_shape)
    if check_output_shape_fn:
        shapes = [tuple(np.shape(x)) for x in inputs]
        assert tuple(layer.compute_output_shape(*shapes)) == tuple(expected_output_shape)
    revived = roundtrip(layer)
    revived(*inputs)
    revived.set_weights(layer.get_weights())
    again = np.asarray(ops.convert_to_numpy(revived(*inputs)))
    np.testing.assert_allclose(again, out, rtol=1e-6, atol=1e-6)
    return out
