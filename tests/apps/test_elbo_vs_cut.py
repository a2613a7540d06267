"""apps/elbo_vs_cut.py: the per-run table of a study report read back, and its rank correlation."""

from tests.helpers.apps import load_app

HEADER = (
    "Per run:\n\n| run | acc % | specialised | garbage channels | active channels at the end "
    "| -ELBO | recon MSE | sample consistency per channel | train s |\n|---|---|---|---|---|---|---|---|---|\n"
)


def _report(points, variant="v"):
    lines = [
        f"| `study_runs/s/{variant}__seed{i}` | {acc} | 10 | [] | 10 | {nelbo} | 0.04 | 0:1.00 | 50 |"
        for i, (acc, nelbo) in enumerate(points)
    ]
    return "# Study\n\n" + HEADER + "\n".join(lines) + "\n"


def test_per_run_reads_accuracy_and_elbo_of_each_variant():
    app = load_app("elbo_vs_cut")
    text = (
        _report([(90.0, -12.0), (80.0, -10.0)]) + _report([(70.0, -5.0)], "w").split("Per run:")[1]
    )
    assert app.per_run(text) == {"v": [(90.0, -12.0), (80.0, -10.0)], "w": [(70.0, -5.0)]}
    assert app.per_run("# no table") == {}


def test_rows_rank_runs_and_pick_the_best_elbo_run():
    app = load_app("elbo_vs_cut")
    good = _report(
        [(99.0, -14.0), (90.0, -12.0), (85.0, -11.0), (80.0, -10.0)]
    )  # better ELBO, better cut
    bad = _report([(99.0, -10.0), (90.0, -11.0), (85.0, -12.0), (80.0, -14.0)])
    flat = _report([(98.9, -10.0), (98.8, -11.0), (98.9, -12.0), (98.8, -14.0)])  # no bad cut
    table = {r["study"]: r for r in app.rows({"good": good, "bad": bad, "flat": flat}, 4, 2.0)}
    assert set(table) == {"good", "bad"}
    assert table["good"]["spearman"] == 1.0 and table["good"]["best_elbo_acc"] == 99.0
    assert table["bad"]["spearman"] == -1.0 and table["bad"]["best_elbo_acc"] == 80.0
    assert table["good"]["mean_acc"] == 88.5
