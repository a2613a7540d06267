"""Channel pruning: merges that must happen, ones that must not, empty channels, and a
`kmixvae fit` run whose masked channels stay masked through save/reload, evaluate and sample.

Runs on the backend in KERAS_BACKEND (tensorflow or jax).
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from kmixvae import config as config_lib
from kmixvae.data.synthetic import glyph_mixture
from kmixvae.errors import ConfigError
from kmixvae.training.channel_pruning import (
    ChannelPruning,
    channel_links,
    mutual_pairs,
    plan_pruning,
)
from tests.helpers.cli import assert_one_error_line, run_cli
from tests.helpers.runs import fit_smoke


def cluster_graph(labels, k=8, cross=0.0, seed=0):
    """A neighbour table linking each image to random images of its own cluster,
    with a share `cross` of the slots pointing into another cluster."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    table = np.empty((len(labels), k), np.int64)
    members = {c: np.nonzero(labels == c)[0] for c in np.unique(labels)}
    for i, c in enumerate(labels):
        for m in range(k):
            if rng.random() < cross:
                other = rng.choice([d for d in members if d != c])
                table[i, m] = rng.choice(members[other])
            else:
                table[i, m] = rng.choice(members[c][members[c] != i])
    return table


def test_channel_links_count_pairs_between_channels():
    assignments = np.array([0, 0, 1, 1])
    neighbors = np.array([[1], [0], [0], [2]])  # pairs 0-1 (twice listed), 2-0, 3-2
    links = channel_links(assignments, neighbors, 2)
    np.testing.assert_array_equal(links, links.T)
    # 0->1 and 1->0 inside channel 0 (each counted both ways), 2->0 across, 3->2 inside 1.
    assert links[0, 0] == 4 and links[1, 1] == 2 and links[0, 1] == 1


def test_mutual_pairs_keep_only_pairs_that_point_both_ways():
    # Points on a line: 0-1 and 2-3 are mutual nearest neighbours; 4 is far from all.
    vectors = np.array(
        [[1.0, 0.0, 0.0], [0.99, 0.1, 0.0], [0.0, 1.0, 0.0], [0.1, 0.99, 0.0], [0.0, 0.0, 1.0]]
    )
    table = mutual_pairs(vectors, 1)
    assert table[:, 0].tolist() == [1, 0, 3, 2, 4]  # 4's nearest is not mutual: it points at itself
    links = channel_links(np.array([0, 0, 1, 1, 2]), table, 3)
    assert links[2].sum() == 0


def test_pruning_rejects_an_unknown_graph():
    with pytest.raises(ValueError, match="graph"):
        ChannelPruning(np.zeros((4, 2, 2, 1)), [1], graph="edges")


def test_a_cluster_split_over_two_channels_is_merged():
    labels = np.repeat([0, 1, 2], 200)
    assignments = labels.copy() + 1  # clusters 0, 1, 2 -> channels 1, 2, 3
    half = np.nonzero(labels == 0)[0][::2]
    assignments[half] = 0  # cluster 0 split between channels 0 and 1
    assignments[np.nonzero(labels == 0)[0][1::2][:10]] = 0  # channel 0 the larger
    events = plan_pruning(assignments, cluster_graph(labels, cross=0.05), [0, 1, 2, 3], 0.2, 0.01)
    assert [(e["action"], e["channel"], e["into"]) for e in events] == [("merged", 1, 0)]
    assert events[0]["ratio"] > 2.0  # about half its pairs, where chance gives a sixth
    assert "channel 0" in events[0]["reason"]


def test_distinct_clusters_with_noisy_pairs_are_not_merged():
    labels = np.repeat([0, 1, 2, 3], 150)
    events = plan_pruning(labels, cluster_graph(labels, cross=0.1), [0, 1, 2, 3], 1.0, 0.01)
    assert events == []


def test_an_empty_channel_is_masked_and_never_below_min_channels():
    labels = np.repeat([0, 1], 300)
    assignments = labels.copy()
    assignments[:2] = 2  # channel 2 holds 2 images of 600
    events = plan_pruning(assignments, cluster_graph(labels), [0, 1, 2], 1.0, 0.01)
    assert [(e["action"], e["channel"]) for e in events] == [("empty", 2)]
    assert events[0]["usage"] == pytest.approx(2 / 600)
    # Cluster 0 over channels 0 and 1, cluster 1 in channel 2: min_channels=3 keeps all three.
    assignments = np.where(labels == 0, np.arange(600) % 2, 2)
    graph = cluster_graph(labels)
    merged = plan_pruning(assignments, graph, [0, 1, 2], 1.0, 0.0, 2)
    assert [e["action"] for e in merged] == ["merged"]
    assert plan_pruning(assignments, graph, [0, 1, 2], 1.0, 0.0, 3) == []


def test_each_channel_takes_part_in_one_merge_per_check():
    labels = np.repeat([0, 1], 600)
    assignments = np.where(labels == 0, np.arange(1200) % 3, 3)  # cluster 0 over three channels
    events = plan_pruning(assignments, cluster_graph(labels), [0, 1, 2, 3], 1.0, 0.0)
    assert len(events) == 1 and events[0]["into"] in (0, 1, 2)


def test_a_higher_merge_ratio_keeps_weakly_linked_channels():
    labels = np.repeat([0, 1, 2], 200)
    assignments = labels.copy() + 1
    assignments[np.nonzero(labels == 0)[0][::2]] = 0
    graph = cluster_graph(labels, cross=0.05)
    ratio = plan_pruning(assignments, graph, [0, 1, 2, 3], 1.0, 0.0)[0]["ratio"]
    assert plan_pruning(assignments, graph, [0, 1, 2, 3], ratio + 0.01, 0.0) == []


@pytest.mark.parametrize(
    "pruning, message",
    [
        ({"enabled": True, "check_epochs": [2, 1]}, "pruning.check_epochs"),
        ({"enabled": True, "check_epochs": [5]}, "must be below training.epochs"),
        ({"enabled": True, "check_epochs": [2], "min_channels": 9}, "pruning.min_channels"),
        ({"enabled": True, "check_epochs": [2], "merge_ratio": 0.0}, "pruning.merge_ratio"),
        ({"merge_ratio": 2.0}, "pruning.merge_ratio"),  # set while pruning is off
    ],
)
def test_pruning_keys_are_checked(pruning, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        config_lib.from_dict(
            {"model": {"num_channels": 4}, "training": {"epochs": 5}, "pruning": pruning}
        )


def test_pruning_and_curriculum_are_not_combined():
    with pytest.raises(ConfigError, match="curriculum"):
        config_lib.from_dict(
            {
                "training": {"epochs": 5},
                "pruning": {"enabled": True, "check_epochs": [2]},
                "curriculum": {"enabled": True},
            }
        )


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    """`kmixvae fit` with 6 channels on 3 glyphs, pruning at epochs 2 and 3 with a low merge ratio."""
    data = tmp_path_factory.mktemp("glyphs")
    x, y = glyph_mixture(3, 240, seed=1)
    np.savez(
        data / "mnist.npz",
        x_train=x[:192, ..., 0],
        y_train=y[:192],
        x_test=x[192:, ..., 0],
        y_test=y[192:],
    )
    tmp = tmp_path_factory.mktemp("fit")
    run, out, _ = fit_smoke(
        tmp,
        data,
        "training.epochs=4",
        "curriculum.enabled=false",
        "model.num_channels=6",
        "pruning.enabled=true",
        "pruning.check_epochs=[1,2]",
        "pruning.merge_ratio=0.05",
        "pruning.neighbors=5",
    )
    return {"tmp": tmp, "run": run, "model": tmp / "m.keras", "out": out, "data": data}


def test_fit_reports_the_kept_channels_and_why(pruned):
    metrics = json.loads((pruned["run"] / "metrics.json").read_text())
    events = metrics["pruning_events"]
    assert events, "a merge ratio of 0.05 merges linked channels"
    assert metrics["kept_channels"] == 6 - len(events)
    assert {e["epoch"] for e in events} <= {1, 2}
    assert all(e["reason"] for e in events)
    assert f"kept {metrics['kept_channels']} of 6 channels" in pruned["out"]
    state = json.loads((pruned["run"] / "checkpoints" / "last.json").read_text())
    assert state["pruning"]["checked"] == [1, 2]


def test_masked_channels_stay_masked_after_reload_evaluate_and_sample(pruned, tmp_path):
    from kmixvae.runs import load_model_file

    metrics = json.loads((pruned["run"] / "metrics.json").read_text())
    masked = sorted(e["channel"] for e in metrics["pruning_events"])
    model = load_model_file(pruned["model"])
    assert sorted(set(range(6)) - set(model.active_channels)) == masked
    x = np.load(pruned["data"] / "mnist.npz")["x_test"][..., None] / 255.0
    q = model.encode(x)["q"]
    assert np.all(q[:, masked] == 0.0)
    assert not np.isin(model.sample(32, seed=0)["channel"], masked).any()
    run_cli(
        "evaluate",
        pruned["model"],
        "--data-dir",
        pruned["data"],
        "--split",
        "test",
        "--out",
        tmp_path / "m.json",
    )
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["active_channels"] == list(model.active_channels)
    result, out, err = run_cli(
        "sample", pruned["model"], "--channel", masked[0], "--out", tmp_path / "s.png", expect=2
    )
    assert_one_error_line(result, out, err, "--channel", "masked")
    assert not (tmp_path / "s.png").exists()
    keras.backend.clear_session()


def test_a_resumed_run_does_not_check_an_epoch_twice():
    pruning = ChannelPruning(np.zeros((4, 2, 2, 1)), [1, 2])
    pruning.set_state({"events": [{"epoch": 1, "channel": 3}], "checked": [1]})
    assert not pruning.complete
    pruning.on_epoch_begin(1)  # already checked: must not touch the (absent) model
    assert pruning.get_state() == {"events": [{"epoch": 1, "channel": 3}], "checked": [1]}
    pruning.set_state({"events": [], "checked": [1, 2]})
    assert pruning.complete
