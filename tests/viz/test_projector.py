"""Tests of kmixvae.viz: projector export (read back by a real TensorBoard) and image summaries."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from kmixvae.viz.projector import export_projector
from kmixvae.viz.tensorboard_images import write_image_summaries, write_scalars
from tests.helpers.tiny import tiny_model as shared_tiny_model

N_IMAGES = 50
K, D, E = 3, 2, 32  # channels, latent dim (default), embedding dim (default)
TENSORS = {
    "latent_chosen": D,
    "latent_all_channels": K * D,
    "latent_chosen_with_channel_embedding": D + E,
}


def tiny_model(conditioning: str = "film"):
    return shared_tiny_model(model={"num_channels": K, "decoder": {"conditioning": conditioning}})


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(N_IMAGES + 10, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(N_IMAGES + 10,))
    return images, labels


@pytest.fixture(scope="module")
def projector_dir(model, data, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("tb") / "projector"
    export_projector(model, data[0], data[1], log_dir, max_samples=N_IMAGES, batch_size=16)
    return log_dir


def read_tsv(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter="\t", dtype="float32", ndmin=2)


def test_projector_files(projector_dir, data, model):
    from google.protobuf import text_format
    from PIL import Image
    from tensorboard.plugins import projector

    config = projector.ProjectorConfig()
    text_format.Parse((projector_dir / "projector_config.pbtxt").read_text(), config)
    assert [e.tensor_name for e in config.embeddings] == list(TENSORS)
    for emb in config.embeddings:
        dim = TENSORS[emb.tensor_name]
        assert read_tsv(projector_dir / emb.tensor_path).shape == (N_IMAGES, dim)
        assert list(emb.tensor_shape) == [N_IMAGES, dim]
        assert emb.metadata_path == "metadata.tsv"
        assert emb.sprite.image_path == "sprite.png"
        assert list(emb.sprite.single_image_dim) == [28, 28]

    lines = (projector_dir / "metadata.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["index", "label", "channel", "q_max"]
    assert len(lines) == N_IMAGES + 1
    rows = [line.split("\t") for line in lines[1:]]
    assert [int(r[1]) for r in rows] == data[1][:N_IMAGES].tolist()
    enc = model.encode(data[0][:N_IMAGES].astype("float32") / 255.0)
    assert [int(r[2]) for r in rows] == enc["channel"].tolist()
    assert all(0.0 <= float(r[3]) <= 1.0 for r in rows)

    chosen = read_tsv(projector_dir / "latent_chosen.tsv")
    want = enc["mu"][np.arange(N_IMAGES), enc["channel"]]
    np.testing.assert_allclose(chosen, want, rtol=1e-5, atol=1e-6)
    both = read_tsv(projector_dir / "latent_chosen_with_channel_embedding.tsv")
    np.testing.assert_allclose(both[:, :D], want, rtol=1e-5, atol=1e-6)

    sprite = Image.open(projector_dir / "sprite.png")
    assert sprite.mode == "L"
    assert sprite.size == (8 * 28, 8 * 28)  # ceil(sqrt(50)) = 8 tiles a side
    first = np.asarray(sprite)[:28, :28]
    np.testing.assert_array_equal(first, data[0][0, ..., 0])
    assert not list(projector_dir.glob("*.tmp*"))


def test_projector_without_embedding_and_labels(data, tmp_path):
    model = tiny_model(conditioning="none")
    path = export_projector(model, data[0][:5], None, tmp_path, max_samples=10)
    text = path.read_text()
    assert "latent_chosen_with_channel_embedding" not in text
    assert "latent_all_channels" in text
    rows = (tmp_path / "metadata.tsv").read_text().splitlines()[1:]
    assert len(rows) == 5 and all(r.split("\t")[1] == "-" for r in rows)


# ---------------------------------------------------------------------------
# A real TensorBoard reads the export through the projector plugin's HTTP API
# ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(base: str, route: str, **params) -> bytes:
    url = f"{base}/data/plugin/projector/{route}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@pytest.fixture(scope="module")
def tensorboard_url(projector_dir, model, data, tmp_path_factory):
    """A real TensorBoard on `projector_dir`: the export at its root (run ".") and
    a second export in a run folder with event files (run "sub")."""
    sub = projector_dir / "sub"
    write_scalars(sub, 0, {"x": 0.0})
    export_projector(model, data[0], data[1], sub, max_samples=7)
    log = tmp_path_factory.mktemp("tb_log") / "tensorboard.log"
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tensorboard.main",
                "--logdir",
                str(projector_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--reload_interval",
                "1",
                "--load_fast",
                "false",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"tensorboard exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if sorted(json.loads(get(base, "runs"))) == [".", "sub"]:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"tensorboard did not answer in 90 s:\n{log.read_text()}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def test_tensorboard_projector_plugin_reads_export(tensorboard_url, data):
    base = tensorboard_url
    assert sorted(json.loads(get(base, "runs"))) == [".", "sub"]
    sub_info = json.loads(get(base, "info", run="sub"))
    assert [e["tensorShape"] for e in sub_info["embeddings"]] == [[7, d] for d in TENSORS.values()]
    assert len(get(base, "tensor", run="sub", name="latent_all_channels")) == 7 * K * D * 4
    info = json.loads(get(base, "info", run="."))
    shapes = {e["tensorName"]: e["tensorShape"] for e in info["embeddings"]}
    assert shapes == {name: [N_IMAGES, dim] for name, dim in TENSORS.items()}
    for emb in info["embeddings"]:
        assert emb["sprite"]["singleImageDim"] == [28, 28]

    for name, dim in TENSORS.items():
        raw = get(base, "tensor", run=".", name=name)
        assert len(raw) == N_IMAGES * dim * 4
        tensor = np.frombuffer(raw, dtype="<f4").reshape(N_IMAGES, dim)
        assert np.all(np.isfinite(tensor))

        meta = get(base, "metadata", run=".", name=name).decode().splitlines()
        assert meta[0] == "index\tlabel\tchannel\tq_max"
        assert len(meta) == N_IMAGES + 1
        assert meta[1].split("\t")[1] == str(data[1][0])

        sprite = get(base, "sprite_image", run=".", name=name)
        assert sprite.startswith(b"\x89PNG")


# ---------------------------------------------------------------------------
# Image and scalar summaries
# ---------------------------------------------------------------------------


def test_write_image_summaries(model, data, tmp_path):
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    tags = write_image_summaries(model, data[0], tmp_path / "images", step=3, n=4)
    write_scalars(tmp_path / "images", 3, {"eval/nelbo": 1.5})
    expected = ["reconstructions"] + [f"samples/channel_{c}" for c in range(K)]
    assert tags == expected
    assert list((tmp_path / "images").glob("events.out.tfevents.*"))

    acc = EventAccumulator(str(tmp_path / "images"), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    tensors = acc.Tags()["tensors"]  # TF2 summaries are stored as tensors
    assert set(expected + ["eval/nelbo"]) <= set(tensors)
    recon = acc.Tensors("reconstructions")[0]
    assert recon.step == 3
    # tensor_proto of an image summary: [width, height, png bytes...]
    width, height, png = recon.tensor_proto.string_val[:3]
    img = Image.open(io.BytesIO(png))
    assert img.size == (int(width), int(height))
    # Rows of originals, reconstructions, sigma; 4 images across; 28 px tiles, 1 px gaps.
    assert img.size == (4 * 29 - 1, 3 * 29 - 1)
    sample = acc.Tensors("samples/channel_0")[0].tensor_proto.string_val
    assert Image.open(io.BytesIO(sample[2])).size == (2 * 29 - 1, 2 * 29 - 1)
    scalar = acc.Tensors("eval/nelbo")[0]
    assert scalar.step == 3
    assert float(tensor_util.make_ndarray(scalar.tensor_proto)) == pytest.approx(1.5)


def test_masked_channels_never_reach_the_projector(data):
    from kmixvae.viz.projector import projector_tensors

    model = tiny_model()
    model.set_active_channels([0, 2])  # channel 1 masked (pruned or locked)
    tensors = projector_tensors(model, data[0][:20], batch_size=16)
    assert tensors["latent_all_channels"].shape == (20, 2 * D)
    enc = model.encode(data[0][:20].astype("float32") / 255.0)
    np.testing.assert_allclose(
        tensors["latent_all_channels"], enc["mu"][:, [0, 2]].reshape(20, -1), rtol=1e-5, atol=1e-6
    )
    assert 1 not in set(tensors["channel"].tolist())
