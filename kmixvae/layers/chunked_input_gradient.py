"""Conv2D layers whose input gradient XLA:CPU computes in batch chunks (JAX on a CPU).

XLA:CPU's Eigen convolution falls off a cliff on the input gradient of the
encoder's stride-2 convolution when the batch grows past 512-700 rows: over
14x14x32 -> 7x7x64 a row cost 12-16 us up to 640 rows and 34-36 us from 704
on one day, 11-12 us up to 512 and 35-38 us from 640 on another, on the
same 2-core Intel Xeon (`python apps/xla_cpu_kernel_gradient.py --views
384,512,640,704,768`, `docs/performance.md`). A real run's batch of 256
images is 768 rows in the encoder (three views an image), so every training
step paid the slow side. The same gradient taken in chunks of at most
`max_rows` rows, concatenated, is the same numbers (each row's input
gradient reads only its own rows of the upstream gradient; a real
`film_het.json` run logged the same values to the last digit) and runs
below the cliff: 768 rows in two chunks 13-15 ms against 28-36.

`chunk_input_gradient(conv)` gives one `keras.layers.Conv2D` that
convolution: the layer stays a Conv2D (its class names its weights in a
saved `.keras` file, so files saved before load as they did), with the same
variables, outputs and gradients. The chunks apply only where they were
measured to help: the JAX backend on its CPU platform, with no
`keras.distribution` set (a batch sharded over devices is cut by the
sharding instead), and a static batch of more than `max_rows` rows; the
forward pass and the kernel gradient are always the whole batch's.

Example:

```python
conv = chunk_input_gradient(keras.layers.Conv2D(64, 3, strides=2, padding="same"))
y = conv(x)   # as before; on JAX's CPU, dL/dx in chunks of at most 512 rows
```
"""

from __future__ import annotations

import keras

# Rows a chunk of the input gradient: the most measured below the cliff on both days (two
# chunks of 256 took 9-10 ms where 512 rows whole took 6-8, so smaller is not better).
MAX_ROWS = 512


def chunks_input_gradient() -> bool:
    """Whether the input gradient is taken in chunks here: JAX on its CPU, undistributed."""
    if keras.backend.backend() != "jax" or keras.distribution.distribution() is not None:
        return False
    import jax

    return jax.default_backend() == "cpu"


def input_gradient_in_chunks(convolution, max_rows: int):
    """`convolution(x, kernel)` with a VJP that takes dL/dx in batch chunks (JAX).

    Args:
        convolution: a JAX-traceable `(x, kernel) -> y`, batch first.
        max_rows: int. The most rows of one chunk of the input gradient.

    Returns:
        A function with the same values and gradients as `convolution`; the
        kernel gradient is one whole-batch convolution, as autodiff's.
    """
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def chunked(x, kernel):
        return convolution(x, kernel)

    def forward(x, kernel):
        return convolution(x, kernel), (x, kernel)

    def backward(saved, upstream):
        x, kernel = saved
        (d_kernel,) = jax.vjp(lambda k: convolution(x, k), kernel)[1](upstream)
        pieces = -(-x.shape[0] // max_rows)
        d_x = jnp.concatenate(
            [
                jax.vjp(lambda v: convolution(v, kernel), x_part)[1](up_part)[0]
                for x_part, up_part in zip(
                    jnp.array_split(x, pieces), jnp.array_split(upstream, pieces)
                )
            ],
            axis=0,
        )
        return d_x, d_kernel

    chunked.defvjp(forward, backward)
    return chunked


def chunk_input_gradient(conv, max_rows: int = MAX_ROWS):
    """Makes `conv` (a `keras.layers.Conv2D`) take its input gradient in chunks; returns it.

    Args:
        conv: a `keras.layers.Conv2D`, built or not.
        max_rows: int. The most rows of one chunk of the input gradient
            (default `MAX_ROWS`, 512).

    Returns:
        `conv`, whose `convolution_op` now chunks the input gradient where
        `chunks_input_gradient()` holds and the batch has more than
        `max_rows` rows.
    """
    if int(max_rows) < 1:
        raise ValueError(f"max_rows: {max_rows} must be at least 1")
    plain = conv.convolution_op

    def convolution_op(inputs, kernel):
        rows = inputs.shape[0]  # None or a symbolic dimension while Keras infers shapes
        limit = conv.chunk_rows
        if not isinstance(rows, int) or rows <= limit or not chunks_input_gradient():
            return plain(inputs, kernel)
        # The kernel arrives as a Keras variable: its value, for jax.custom_vjp.
        kernel = keras.ops.convert_to_tensor(kernel)
        return input_gradient_in_chunks(plain, limit)(inputs, kernel)

    conv.chunk_rows = int(max_rows)
    conv.convolution_op = convolution_op
    return conv
