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


def _numpy(out):
    return keras.tree.map_structure(lambda t: np.asarray(ops.convert_to_numpy(t)), out)


def _shapes(out):
    """The shape of a single output, or the list of the shapes of a tuple of outputs."""
    if isinstance(out, (tuple, list)):
        return [tuple(t.shape) for t in out]
    return tuple(out.shape)


def _without_batch(shape):
    if shape and isinstance(shape[0], tuple):
        return [(None,) + tuple(s[1:]) for s in shape]
    return (None,) + tuple(shape[1:])


def check_symbolic_call(layer, inputs, expected_output_shape):
    """Calls `layer` on `keras.KerasTensor`s of the inputs' shapes with the batch size unknown.

    The symbolic output must have `expected_output_shape` with its batch
    dimension None (as `keras.Input` gives a functional model). Inputs that
    are not arrays (None) are passed as they are.
    """
    symbolic = [
        keras.KerasTensor((None,) + tuple(np.shape(x)[1:]), dtype=str(np.asarray(x).dtype))
        if x is not None
        else None
        for x in inputs
    ]
    out = layer(*symbolic)
    for t in keras.tree.flatten(out):
        assert isinstance(t, keras.KerasTensor), type(t)
    got, want = _shapes(out), _without_batch(tuple(expected_output_shape))
    assert got == want, (got, want)


def _without_dtypes(config):
    """A layer config without the dtype policies of the layer and of the layers it nests."""
    if isinstance(config, dict):
        return {k: _without_dtypes(v) for k, v in config.items() if k != "dtype"}
    if isinstance(config, list):
        return [_without_dtypes(v) for v in config]
    return config


def check_mixed_precision(layer, inputs, output_dtype=None):
    """Rebuilds `layer` from its config under the `mixed_float16` policy and calls it.

    The new layer must build, keep float32 variables and return its compute
    dtype (float16), or `output_dtype` where the layer documents another
    (e.g. float32 log-probabilities). The global policy is restored after.

    Returns:
        The mixed-precision layer.
    """
    # Take the global policy, as a model built under it does (nested layers too).
    config = _without_dtypes(layer.get_config())
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        mixed = type(layer).from_config(config)
        assert mixed.compute_dtype == "float16" and mixed.variable_dtype == "float32"
        out = mixed(*inputs)
        assert mixed.built
        for v in mixed.weights:
            assert v.dtype == "float32", (v.path, v.dtype)
        want = output_dtype or mixed.compute_dtype
        for t in keras.tree.flatten(out):
            if "float" in str(t.dtype):
                assert keras.backend.standardize_dtype(t.dtype) == want, (t.dtype, want)
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.config.dtype_policy().name == previous.name
    return mixed


def run_layer_test(
    layer,
    inputs,
    expected_output_shape,
    check_output_shape_fn=True,
    mixed_output_dtype=None,
):
    """Builds and calls `layer`; checks shapes, a symbolic call, serialisation and mixed precision.

    Checks: the call builds the layer and returns `expected_output_shape`;
    `compute_output_shape` agrees (unless `check_output_shape_fn` is False);
    a call on `keras.KerasTensor` inputs with the batch size unknown gives the
    same shape with a None batch; the config survives `from_config` and
    `serialize`/`deserialize`; the revived layer with the same weights gives
    the same output; the layer rebuilt under `mixed_float16` keeps float32
    variables and returns its compute dtype (`mixed_output_dtype` where it
    documents another).

    Args:
        layer: a fresh layer instance.
        inputs: tuple of numpy arrays (or None), the positional call arguments.
        expected_output_shape: tuple, or a list of tuples for a layer that
            returns a tuple of tensors.
        check_output_shape_fn: bool. Check `compute_output_shape` too.
        mixed_output_dtype: None (the compute dtype) or the dtype the layer
            documents for its output under mixed precision.

    Returns:
        The layer's output as a numpy array (a tuple of them for a tuple).
    """
    out = _numpy(layer(*inputs))
    assert layer.built
    assert _shapes(out) == (
        [tuple(s) for s in expected_output_shape]
        if isinstance(out, (tuple, list))
        else tuple(expected_output_shape)
    ), (_shapes(out), expected_output_shape)
    if check_output_shape_fn:
        shapes = [tuple(np.shape(x)) for x in inputs]
        assert tuple(layer.compute_output_shape(*shapes)) == tuple(expected_output_shape)
    if any(x is not None for x in inputs):
        check_symbolic_call(layer, inputs, expected_output_shape)
    revived = roundtrip(layer)
    revived(*inputs)
    revived.set_weights(layer.get_weights())
    again = _numpy(revived(*inputs))
    for a, b in zip(keras.tree.flatten(again), keras.tree.flatten(out)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    check_mixed_precision(layer, inputs, mixed_output_dtype)
    return out
