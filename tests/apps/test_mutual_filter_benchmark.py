"""apps/mutual_filter_benchmark.py: both filters timed on both kinds of table, with the same mask."""

from tests.helpers.apps import load_app


def test_both_filters_agree_on_random_and_local_tables(capsys):
    assert load_app("mutual_filter_benchmark").main(["--sizes", "300", "1000", "--k", "6"]) == 0
    rows = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| random") or line.startswith("| local")
    ]
    assert len(rows) == 4
    assert all(row.split("|")[5].strip() == "True" for row in rows)
    # The local tables hold many mutual pairs, the random ones almost none.
    shares = {row.split("|")[1].strip(): float(row.split("|")[6]) for row in rows}
    assert shares["local"] > 5 * shares["random"]
