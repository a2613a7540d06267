"""apps/benchmark.py: the FLOP counter against a hand computation, and one tiny worker run."""

from __future__ import annotations

import math

import pytest

from tests.helpers.apps import load_app
from tests.helpers.passes import once_in_tensorflow_pass
from tests.helpers.paths import REPO_ROOT

# A tiny model: 3 channels, encoder conv filters [4, 8], dense 16, decoder [8, 4].
TINY = [
    "model.num_channels=3",
    "model.encoder.filters=[4,8]",
    "model.encoder.dense_units=16",
    "model.decoder.filters=[8,4]",
    "model.decoder.embedding_dim=4",
    "curriculum.enabled=false",
]
# film_het's view consistency (its first phase) reads an augmented view of each image: off
# unless asked for, so that plain images are encoded once.
CONSISTENCY_OFF = ["loss.consistency.weight=0", "loss.consistency.stop_epoch=null"]


@pytest.fixture(scope="module")
def bench():
    return load_app("benchmark")


def _tiny_model(conditioning="film", elbo_channels="all", consistency=False):
    from kmixvae.config import load_config
    from kmixvae.models.factory import build_model

    film_keys = (
        []
        if conditioning == "film"
        else [
            'model.decoder.film_init="identity"',
            "model.decoder.film_input=false",
        ]
    )
    config = load_config(
        REPO_ROOT / "configs" / "film_het.json",
        overrides=TINY
        + [f"model.decoder.conditioning={conditioning}", f'loss.elbo.channels="{elbo_channels}"']
        + film_keys
        + ([] if consistency else CONSISTENCY_OFF),
    )
    return build_model(config, (28, 28, 1))


def _images(n, seed=0):
    import numpy as np

    return np.random.default_rng(seed).random((n, 28, 28, 1), dtype=np.float32)


def test_flop_counter_matches_hand_computation(bench):
    model = _tiny_model()
    model.set_active_channels([0, 1, 2])
    counts = bench.count_step_flops(model, _images(4))
    per = counts["layers"]
    # Plain images: the encoder sees each image once, the decoder 3 rows (one per channel).
    assert counts["encoder_rows"] == 1 and counts["decoder_rows"] == 3
    # The sampled-channel ELBO (the shipped default) decodes one channel per image.
    sampled = _tiny_model(elbo_channels="sampled")
    sampled.set_active_channels([0, 1, 2])
    assert bench.count_step_flops(sampled, _images(4))["decoder_rows"] == 1
    # Encoder conv_0: 28x28x1 -> stride 2, 'same' -> 14x14x4 with 3x3 kernels.
    assert per["mixture_vae/encoder/conv_0"] == 2 * 14 * 14 * 3 * 3 * 1 * 4
    # Encoder conv_1: 14x14x4 -> 7x7x8.
    assert per["mixture_vae/encoder/conv_1"] == 2 * 7 * 7 * 3 * 3 * 4 * 8
    # Encoder dense: flatten(7x7x8) = 392 -> 16.
    assert per["mixture_vae/encoder/dense"] == 2 * 392 * 16
    # Heads: 16 -> 3*2 mu.
    assert per["mixture_vae/encoder/mu"] == 2 * 16 * 6
    # Decoder, 3 decodes per image: grid 7x7 (one 2x upsampling, 2x pixel-shuffle head),
    # project [z, e_c] (film_input: 2 + 4) -> 7*7*8.
    assert per["mixture_vae/decoder/project"] == 3 * 2 * (2 + 4) * (7 * 7 * 8)
    # conv_0 at 14x14: 8 -> 4 filters; head projection 4 -> 2 params * 2^2 at 14x14.
    assert per["mixture_vae/decoder/conv_0"] == 3 * 2 * 14 * 14 * 9 * 8 * 4
    assert per["mixture_vae/decoder/head/projection"] == 3 * 2 * 14 * 14 * 9 * 4 * 8
    # FiLM: embedding 4 -> 2 * features, then one multiply-add per feature value.
    assert per["mixture_vae/decoder/conditioning/film_0/projection"] == 3 * 2 * 4 * 16
    assert per["mixture_vae/decoder/conditioning/film_1"] == 3 * 2 * 14 * 14 * 4
    enc = sum(f for p, f in per.items() if "/encoder/" in p)
    dec = sum(f for p, f in per.items() if "/decoder/" in p)
    assert counts["encoder_flops"] == enc and counts["decoder_flops"] == dec
    assert bench.train_flops_per_image(counts) == 3 * (enc + dec)
    model.set_active_channels([0])
    one = bench.count_step_flops(model, _images(4))
    assert one["decoder_rows"] == 1 and one["decoder_flops"] == pytest.approx(dec / 3)


def test_flop_counter_follows_neighbour_views_and_elbo_subbatch(bench):
    model = _tiny_model()
    model.elbo.subbatch = 2
    model.set_active_channels([0, 1, 2])
    x = _images(8)
    counts = bench.count_step_flops(model, {"x": x, "neighbor": _images(8, seed=1)})
    # The encoder sees the image and its augmented neighbour; the decoder only the
    # 2-image ELBO sub-batch, 3 channels each: 6 rows for 8 images.
    assert counts["encoder_rows"] == 2
    assert counts["decoder_rows"] == pytest.approx(6 / 8)
    plain = bench.count_step_flops(model, x)
    assert counts["encoder_flops"] == pytest.approx(2 * plain["encoder_flops"])


def test_flop_counter_counts_the_view_consistency_view(bench):
    """film_het's first phase: the image and its own augmented view both go through the encoder."""
    model = _tiny_model(consistency=True)  # as film_het.json ships it
    model.set_active_channels([0, 1, 2])
    counts = bench.count_step_flops(model, _images(4))
    plain = bench.count_step_flops(_tiny_model(), _images(4))
    assert counts["encoder_rows"] == 2 and plain["encoder_rows"] == 1
    assert counts["encoder_flops"] == pytest.approx(2 * plain["encoder_flops"])
    assert counts["decoder_flops"] == pytest.approx(plain["decoder_flops"])


def test_flop_counter_concat_decoder(bench):
    counts = bench.count_step_flops(_tiny_model("concat"), _images(2))
    per = counts["layers"]
    # Concat conditioning: the dense input is [z, e_c], 2 + 4 wide; 3 decodes per image.
    assert per["mixture_vae/decoder/project"] == 3 * 2 * 6 * (7 * 7 * 8)
    assert not any("film" in name for name in per)


def test_derive_and_table(bench):
    rows = []
    for backend, rate in (("tensorflow", 100.0), ("jax", 90.0)):
        for k, speed in ((10, 1.0), (1, 5.0)):
            rows.append(
                {key: 1 for key in bench.REQUIRED_KEYS}
                | {
                    "backend": backend,
                    "config": "c",
                    "k_active": k,
                    "train_images_per_s": rate * speed,
                    "xla_gflop_per_image": None,
                }
            )
    derived = bench.derive(rows)
    assert derived["k1_over_k10_speedup"]["tensorflow/c"] == pytest.approx(5.0)
    assert derived["jax_over_tf_train"]["c/k=10"] == pytest.approx(0.9)
    table = bench.format_table(rows, derived)
    assert "tensorflow" in table and "jax_over_tf_train" in table


@pytest.mark.slow
@once_in_tensorflow_pass("the JAX worker runs in test_no_tensorflow's benchmark test")
def test_worker_runs_tiny_config(bench):
    settings = bench.Settings(
        batch_size=16,
        warmup_steps=1,
        steps_per_epoch=2,
        epochs=2,
        infer_images=64,
        infer_batch=32,
        infer_repeats=1,
        gemm_size=256,
        gemm_repeats=1,
    )
    records = bench.run_worker(
        [str(REPO_ROOT / "configs" / "film_het.json")],
        settings,
        k_values=(3, 1),
        overrides=TINY,
        log=lambda m: None,
    )
    assert [r["k_active"] for r in records] == [3, 1]
    for r in records:
        missing = [key for key in bench.REQUIRED_KEYS if key not in r]
        assert not missing
        for key in (
            "batch_size",
            "train_images_per_s",
            "encode_images_per_s",
            "reconstruct_images_per_s",
            "compile_s",
            "peak_rss_mb",
            "gflop_per_image",
            "achieved_gflops",
            "machine_gemm_gflops",
            "utilisation",
        ):
            assert math.isfinite(r[key]) and r[key] > 0, key
        assert r["compilations_after_warmup"] == 0
        assert r["stage_traces"] >= 1  # the stage's train step was really re-made
        if r["backend"] == "jax":
            assert r["xla_gflop_per_image"] > 0
            # XLA's count of the gradient agrees with 3 x forward within 25%.
            assert r["xla_gflop_per_image"] == pytest.approx(r["gflop_per_image"], rel=0.25)
        else:
            assert r["xla_gflop_per_image"] is None
    # film_het.json decodes one channel per image (loss.elbo.channels "sampled"): the FLOPs
    # of a step do not grow with the active channels.
    assert records[0]["gflop_per_image"] == pytest.approx(records[1]["gflop_per_image"])


def test_bad_override_fails_before_any_worker(bench, capsys):
    assert bench.main(["--set", "model.decoder.block=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model.decoder.block") and "Traceback" not in err


def test_the_image_pipeline_is_kmixvaes_own_in_order_and_without_the_autotuner(bench):
    pytest.importorskip("tensorflow", reason="the tf_data pipeline needs TensorFlow")
    import numpy as np

    x = bench.synthetic_images(10)
    ds = bench.make_dataset(x, 4, neighbors=0, pipeline="tf_data")
    # tf.data's autotuner stalled whole epochs of the step the benchmark times.
    assert ds.options().autotune.enabled is False
    it = iter(ds)
    batches = [next(it).numpy() for _ in range(5)]  # whole batches, passes repeated in order
    assert all(b.shape == (4, 28, 28, 1) for b in batches)
    order = np.concatenate(batches)
    np.testing.assert_array_equal(order[:8], x[:8])
    np.testing.assert_array_equal(order[8:16], x[:8])  # the 2 left over are dropped each pass
