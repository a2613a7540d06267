"""`ViewAugmentation`: the random rotation, shift, shear, zoom, mirroring, grey levels and hole of the views."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kmixvae.objectives import ViewAugmentation
from tests.helpers.tiny import tiny_model


def _vertical_bars(n=64, size=28):
    x = np.zeros((n, size, size, 1), "float32")
    x[:, 4:-4, size // 2 - 1 : size // 2 + 1] = 1.0
    return x


def _slopes(x):
    """Per image, the slope dx/dy of the line through each row's centre of mass."""
    slopes = []
    for image in np.asarray(x)[..., 0]:
        mass = image.sum(axis=1)
        rows = np.nonzero(mass > 0.5)[0]
        centres = (image[rows] * np.arange(image.shape[1])).sum(axis=1) / mass[rows]
        slopes.append(np.polyfit(rows, centres, 1)[0])
    return np.array(slopes)


def _augment(augmentation, x, seed=0):
    return keras.ops.convert_to_numpy(augmentation(x, keras.random.SeedGenerator(seed)))


def test_shear_slants_a_vertical_bar_within_its_range():
    x = _vertical_bars()
    np.testing.assert_allclose(
        _slopes(_augment(ViewAugmentation(rotation=0.0, shift=0.0), x)), 0.0, atol=1e-6
    )
    slopes = _slopes(_augment(ViewAugmentation(rotation=0.0, shift=0.0, shear=0.4), x))
    assert np.abs(slopes).max() <= 0.4 + 0.02
    assert np.abs(slopes).max() > 0.25  # drawn over the range, not a constant
    assert (slopes > 0.05).any() and (slopes < -0.05).any()  # both directions


def test_scale_zooms_within_its_range():
    x = np.zeros((64, 28, 28, 1), "float32")
    x[:, 9:19, 9:19] = 1.0  # a centred 10 x 10 square
    same = _augment(ViewAugmentation(rotation=0.0, shift=0.0), x)
    np.testing.assert_allclose(same, x, atol=1e-5)
    ratio = (
        _augment(ViewAugmentation(rotation=0.0, shift=0.0, scale=0.2), x).sum(axis=(1, 2, 3)) / 100
    )
    assert ratio.min() >= 0.8**2 - 0.05 and ratio.max() <= 1.2**2 + 0.05
    assert ratio.min() < 0.85 and ratio.max() > 1.15


def test_shear_and_scale_off_draw_the_rotation_and_shift_alone():
    """Shear and zoom draw nothing when off, so the other draws do not move."""
    x = np.random.default_rng(0).random((8, 28, 28, 1)).astype("float32")
    off = _augment(ViewAugmentation(10.0, 0.08), x, seed=3)
    again = _augment(ViewAugmentation(10.0, 0.08, shear=0.0, scale=0.0), x, seed=3)
    np.testing.assert_array_equal(off, again)
    assert not np.allclose(_augment(ViewAugmentation(10.0, 0.08, shear=0.3), x, seed=3), off)


def _grey_ramp(n=64):
    """Images whose pixels run through every grey level from 0 to 1, the same in each image."""
    ramp = np.linspace(0.0, 1.0, 28 * 28, dtype="float32").reshape(28, 28, 1)
    return np.repeat(ramp[None], n, axis=0)


def test_brightness_scales_each_image_within_its_range_and_clips():
    x = _grey_ramp()
    views = _augment(ViewAugmentation(rotation=0.0, shift=0.0, brightness=0.4), x)
    assert views.min() >= 0.0 and views.max() <= 1.0
    mid = 28 * 28 // 4  # a pixel of grey 0.25: never clipped, so its ratio is the factor
    factors = views.reshape(64, -1)[:, mid] / x.reshape(64, -1)[:, mid]
    assert factors.min() >= 0.6 - 1e-4 and factors.max() <= 1.4 + 1e-4
    assert factors.min() < 0.75 and factors.max() > 1.25  # drawn over the range
    # One factor an image: every unclipped pixel of an image moves by the same ratio.
    low = views.reshape(64, -1)[:, 1:mid] / x.reshape(64, -1)[:, 1:mid]
    np.testing.assert_allclose(low, factors[:, None] * np.ones_like(low), rtol=1e-4)


def test_gamma_moves_the_mid_tones_and_keeps_black_and_white():
    x = _grey_ramp()
    views = _augment(ViewAugmentation(rotation=0.0, shift=0.0, gamma=0.5), x).reshape(64, -1)
    flat = x.reshape(64, -1)
    np.testing.assert_allclose(views[:, 0], 0.0, atol=1e-6)
    np.testing.assert_allclose(views[:, -1], 1.0, atol=1e-5)
    half = np.argmin(np.abs(flat[0] - 0.5))
    exponents = np.log(views[:, half]) / np.log(flat[:, half])
    assert exponents.min() >= np.exp(-0.5) - 1e-3 and exponents.max() <= np.exp(0.5) + 1e-3
    assert exponents.min() < 0.75 and exponents.max() > 1.4
    # The order of the grey levels is kept within each image.
    assert (np.diff(views, axis=1) >= -1e-6).all()


def test_grey_levels_off_draw_the_geometry_alone():
    """Brightness and gamma draw nothing when off, so the geometric draws do not move."""
    x = np.random.default_rng(0).random((8, 28, 28, 1)).astype("float32")
    off = _augment(ViewAugmentation(10.0, 0.08, shear=0.3, scale=0.2), x, seed=3)
    again = _augment(ViewAugmentation(10.0, 0.08, 0.3, 0.2, brightness=0.0, gamma=0.0), x, seed=3)
    np.testing.assert_array_equal(off, again)
    on = _augment(ViewAugmentation(10.0, 0.08, 0.3, 0.2, gamma=0.4), x, seed=3)
    assert not np.allclose(on, off)


def test_flip_mirrors_about_the_centre_with_its_probability():
    x = np.zeros((200, 28, 28, 1), "float32")
    x[:, 6:22, 3:8] = 1.0  # a bar on the left
    mirrored = x[:, :, ::-1]
    views = _augment(ViewAugmentation(rotation=0.0, shift=0.0, flip=0.5), x)
    is_same = np.isclose(views, x, atol=1e-5).all(axis=(1, 2, 3))
    is_mirror = np.isclose(views, mirrored, atol=1e-5).all(axis=(1, 2, 3))
    assert (is_same ^ is_mirror).all()  # each view is one or the other, exactly
    assert 0.35 < is_mirror.mean() < 0.65
    always = _augment(ViewAugmentation(rotation=0.0, shift=0.0, flip=1.0), x)
    np.testing.assert_allclose(always, mirrored, atol=1e-5)


def test_erase_blacks_out_one_rectangle_within_its_size():
    x = np.ones((200, 28, 28, 1), "float32")
    views = _augment(ViewAugmentation(rotation=0.0, shift=0.0, erase=0.5), x)[..., 0]
    assert set(np.unique(views)) <= {0.0, 1.0}
    for view in views:
        rows, cols = np.nonzero(view == 0.0)
        if len(rows) == 0:
            continue
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert len(rows) == height * width  # one solid axis-aligned rectangle
        assert height <= 14 + 1 and width <= 14 + 1
    holes = (views == 0.0).sum(axis=(1, 2))
    assert (holes > 0).mean() > 0.8 and holes.max() > 100  # drawn, and over the range


def test_flip_and_erase_off_draw_the_rest_alone():
    x = np.random.default_rng(0).random((8, 28, 28, 1)).astype("float32")
    off = _augment(ViewAugmentation(10.0, 0.08, shear=0.3, scale=0.2), x, seed=3)
    again = _augment(ViewAugmentation(10.0, 0.08, 0.3, 0.2, flip=0.0, erase=0.0), x, seed=3)
    np.testing.assert_array_equal(off, again)


@pytest.mark.parametrize(
    "key,value",
    [
        ("shear", 0.3),
        ("scale", 0.1),
        ("brightness", 0.3),
        ("gamma", 0.4),
        ("flip", 0.5),
        ("erase", 0.3),
    ],
)
def test_the_config_reaches_the_model_and_survives_saving(key, value):
    model = tiny_model(loss={"self_label": {"weight": 1.0}, "augment": {key: value}})
    assert getattr(model.augmentation, key) == value
    revived = ViewAugmentation.from_config(model.augmentation.get_config())
    assert getattr(revived, key) == value


def test_an_augmentation_saved_before_shear_and_scale_loads():
    old = ViewAugmentation.from_config({"rotation": 10.0, "shift": 0.08})
    assert (old.shear, old.scale, old.brightness, old.gamma) == (0.0, 0.0, 0.0, 0.0)
    assert (old.flip, old.erase) == (0.0, 0.0)
