"""XLA:CPU's gradients of film_het's second encoder convolution, in isolation (JAX).

What `apps/kernel_gradients.py` found JAX's CPU gap to be, reduced to
jitted JAX functions of one convolution shaped like the encoder's second
(3x3, stride 2, 'same', 14x14x32 -> 64; 384 views is what the encoder sees
at 128 images, three views an image), each its own compiled program, timed
as the median of `--calls` calls after a warm-up call:

- `transpose`: the `[32, 14, 14, views]` transposed copy that XLA's Eigen
  kernel-gradient convolution reads, of a parameter; `transpose, relu(a x
  + b) fused`: the same copy of `relu(a * x + b)` (a per-channel scale and
  shift, then a ReLU: what the model's batch norm and ReLU are), which XLA
  fuses into the copy;
- `kernel gradient`: `jax.vjp` with respect to the kernel, of a parameter
  input and of `relu(a * x + b)`;
- `input gradient`: `jax.vjp` with respect to the input, at every
  `--views` count; `input gradient, chunks of <= N rows`: the same in
  batch chunks of at most `--chunk-rows` rows, as kmixvae's encoder takes
  it on JAX's CPU (`kmixvae.layers.chunked_input_gradient`: XLA:CPU's input
  gradient is ~3x slower a row past 512-700 rows).

It imports kmixvae first, so the XLA flags are the ones a kmixvae run uses
(`kmixvae.utils.xla_cpu_flags`); the JSON records them. A reproducer for
XLA:CPU, not a kmixvae feature: it needs JAX (installed with either
backend) and no Keras backend.

```
python apps/xla_cpu_kernel_gradient.py [--views 384,512,768] [--chunk-rows 512] [--calls 30] [--json OUT]
```
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "apps"))

# Importing kmixvae sets its XLA:CPU flags (as a run has them) before JAX starts.
from kmixvae.layers.chunked_input_gradient import (  # noqa: E402
    MAX_ROWS,
    input_gradient_in_chunks,
)

HEIGHT, WIDTH, IN_CHANNELS, OUT_CHANNELS = 14, 14, 32, 64


def convolution(x, kernel):
    """The encoder's second convolution: 3x3, stride 2, 'same', NHWC."""
    import jax

    return jax.lax.conv_general_dilated(
        x, kernel, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def scale_shift_relu(x, scale, shift):
    import jax.numpy as jnp

    return jnp.maximum(x * scale + shift, 0.0)


def chunked_name(chunk_rows: int) -> str:
    return f"input gradient, chunks of <= {chunk_rows} rows"


def programs(chunk_rows: int = MAX_ROWS) -> dict:
    """name -> (function, which inputs it takes), every one jitted."""
    import jax
    import jax.numpy as jnp

    chunked = input_gradient_in_chunks(convolution, chunk_rows)

    def kernel_gradient(x, kernel, upstream):
        return jax.vjp(lambda k: convolution(x, k), kernel)[1](upstream)[0]

    def kernel_gradient_fused(x, kernel, upstream, scale, shift):
        y = scale_shift_relu(x, scale, shift)
        return jax.vjp(lambda k: convolution(y, k), kernel)[1](upstream)[0]

    def input_gradient_of(conv):
        def input_gradient(x, kernel, upstream):
            return jax.vjp(lambda v: conv(v, kernel), x)[1](upstream)[0]

        return input_gradient

    return {
        "transpose": (jax.jit(lambda x: jnp.transpose(x, (3, 1, 2, 0))), ("x",)),
        "transpose, relu(a x + b) fused": (
            jax.jit(lambda x, s, b: jnp.transpose(scale_shift_relu(x, s, b), (3, 1, 2, 0))),
            ("x", "scale", "shift"),
        ),
        "kernel gradient": (jax.jit(kernel_gradient), ("x", "kernel", "upstream")),
        "kernel gradient of relu(a x + b)": (
            jax.jit(kernel_gradient_fused),
            ("x", "kernel", "upstream", "scale", "shift"),
        ),
        "input gradient": (jax.jit(input_gradient_of(convolution)), ("x", "kernel", "upstream")),
        chunked_name(chunk_rows): (
            jax.jit(input_gradient_of(chunked)),
            ("x", "kernel", "upstream"),
        ),
    }


def inputs(views: int, seed: int = 0) -> dict:
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(seed)

    def draw(*shape):
        return jnp.asarray(rng.standard_normal(shape).astype("float32"))

    return {
        "x": draw(views, HEIGHT, WIDTH, IN_CHANNELS),
        "kernel": draw(3, 3, IN_CHANNELS, OUT_CHANNELS),
        "upstream": draw(views, HEIGHT // 2, WIDTH // 2, OUT_CHANNELS),
        "scale": draw(IN_CHANNELS),
        "shift": draw(IN_CHANNELS),
    }


def time_call(fn, args, calls: int) -> float:
    """Median ms of `calls` calls of `fn(*args)` after one warm-up call."""
    import jax

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(1000.0 * (time.perf_counter() - start))
    return statistics.median(times)


def measure(views: list[int], calls: int, chunk_rows: int = MAX_ROWS) -> list[dict]:
    """Rows of (program, views, ms): every program at the first count, the
    input gradient whole and in chunks at every count."""
    table = programs(chunk_rows)
    rows = []
    for i, n in enumerate(views):
        data = inputs(n)
        for name, (fn, names) in table.items():
            if i > 0 and name not in ("input gradient", chunked_name(chunk_rows)):
                continue
            ms = time_call(fn, [data[k] for k in names], calls)
            rows.append({"program": name, "views": n, "ms": ms})
    return rows


def markdown(rows: list[dict], header: str) -> str:
    lines = [header, "", "| program | views | ms (median) |", "|---|---:|---:|"]
    lines += [f"| {r['program']} | {r['views']} | {r['ms']:.2f} |" for r in rows]
    return "\n".join(lines) + "\n"


def _views(text: str) -> list[int]:
    try:
        views = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of counts: {text!r}"
        ) from None
    if not views or min(views) < 1:
        raise argparse.ArgumentTypeError(f"counts must be at least 1: {text!r}")
    return views


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--views", type=_views, default=[384, 512, 768])
    parser.add_argument("--chunk-rows", type=int, default=MAX_ROWS, help="kmixvae's MAX_ROWS")
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error("--calls must be at least 1")
    if args.chunk_rows < 1:
        parser.error("--chunk-rows must be at least 1")
    from records import json_folder_error, write_record

    if json_folder_error(args.json):
        return 2

    try:
        import jax
    except ImportError:
        print("error: this reproducer needs JAX (pip install jax)", file=sys.stderr)
        return 2

    rows = measure(args.views, args.calls, args.chunk_rows)
    flags = os.environ.get("XLA_FLAGS", "")
    header = (
        f"jax {jax.__version__} on {jax.devices()[0].platform}, XLA_FLAGS={flags!r}, "
        f"median of {args.calls} calls"
    )
    print(markdown(rows, header))
    if args.json:
        from benchmark import machine_info

        record = {"jax": jax.__version__, "xla_flags": flags, "machine": machine_info()}
        record.update(calls=args.calls, chunk_rows=args.chunk_rows, rows=rows)
        return write_record(args.json, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
