"""apps/xla_cpu_kernel_gradient.py: its programs compute the gradients they are named for."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.apps import load_app

jax = pytest.importorskip("jax", reason="the reproducer times JAX programs")


@pytest.fixture(scope="module")
def app():
    return load_app("xla_cpu_kernel_gradient")


def test_programs_compute_the_named_gradients(app):
    table = app.programs(chunk_rows=3)
    data = app.inputs(4)
    x, kernel, upstream = data["x"], data["kernel"], data["upstream"]
    y = app.scale_shift_relu(x, data["scale"], data["shift"])

    def run(name, *names):
        fn, takes = table[name]
        assert takes == names
        return np.asarray(fn(*[data[k] for k in names]))

    np.testing.assert_array_equal(run("transpose", "x"), np.transpose(np.asarray(x), (3, 1, 2, 0)))
    np.testing.assert_allclose(
        run("transpose, relu(a x + b) fused", "x", "scale", "shift"),
        np.transpose(np.asarray(y), (3, 1, 2, 0)),
        rtol=1e-6,
        atol=1e-6,  # one fused multiply-add against two roundings
    )
    # The kernel gradient of a convolution is linear in the upstream gradient:
    # <upstream, conv(x, k)> = <dk, k>, whatever the kernel.
    dk = run("kernel gradient", "x", "kernel", "upstream")
    assert dk.shape == kernel.shape
    lhs = float(np.sum(np.asarray(upstream) * np.asarray(app.convolution(x, kernel))))
    assert float(np.sum(dk * np.asarray(kernel))) == pytest.approx(lhs, rel=1e-4)
    dk_fused = run("kernel gradient of relu(a x + b)", "x", "kernel", "upstream", "scale", "shift")
    data_y = dict(data, x=y)
    fn, takes = table["kernel gradient"]
    np.testing.assert_allclose(
        dk_fused, np.asarray(fn(*[data_y[k] for k in takes])), rtol=1e-5, atol=1e-4
    )
    dx = run("input gradient", "x", "kernel", "upstream")
    assert dx.shape == x.shape
    assert float(np.sum(dx * np.asarray(x))) == pytest.approx(lhs, rel=1e-4)
    # 4 rows in chunks of <= 3: the same input gradient
    chunked = run("input gradient, chunks of <= 3 rows", "x", "kernel", "upstream")
    np.testing.assert_allclose(chunked, dx, rtol=1e-5, atol=1e-5)


def test_main_times_every_program_and_the_input_gradient_at_each_count(app, tmp_path):
    out = tmp_path / "xla.json"
    argv = ["--views", "4,8", "--chunk-rows", "3", "--calls", "1", "--json", str(out)]
    assert app.main(argv) == 0
    record = json.loads(out.read_text())
    rows = [(r["program"], r["views"]) for r in record["rows"]]
    chunked = "input gradient, chunks of <= 3 rows"
    assert rows == [(name, 4) for name in app.programs(3)] + [
        ("input gradient", 8),
        (chunked, 8),
    ]
    assert record["chunk_rows"] == 3
    assert all(r["ms"] > 0 for r in record["rows"])
    assert "xla_flags" in record and record["calls"] == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--views", "0"], "counts must be at least 1"),
        (["--views", "a,b"], "not a comma-separated list of counts"),
        (["--calls", "0"], "--calls must be at least 1"),
        (["--chunk-rows", "0"], "--chunk-rows must be at least 1"),
    ],
)
def test_bad_counts_are_usage_errors(app, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        app.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_a_missing_json_folder_is_one_error_line(app, capsys):
    assert app.main(["--views", "4", "--calls", "1", "--json", "/no/such/folder/x.json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --json: no folder")
