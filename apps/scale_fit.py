"""The whole default run at several data sizes: data, graph, epochs, peak RSS, accuracy.

`apps/scale_benchmark.py` times the neighbour graph alone; this app runs the
real `fit_run` of a config (as `kmixvae fit` reads it) on the synthetic glyph
mixture (`apps/synthetic_mixture.py`: `--clusters` glyphs, a known answer)
at each size, and reports per size: the seconds to write the data (when it
had to be made), the whole run's seconds (data, pixel graph, model, every
epoch, the end-of-run evaluation, saving), the pixel graph's seconds, the
median epoch's wall time and its images, peak RSS, and the held-out
clustering accuracy of the last epoch (`val_cluster_acc` on the `--test`
held-out glyphs, at most `training.validation_images` of them). The growth
exponent of each cost between consecutive sizes goes under the table.

    python apps/scale_fit.py --sizes 10000 60000 100000 --out runs/scale_fit
        [--config configs/film_het.json] [--clusters 10] [--test 10000]
        [--data-root study_data] [--set KEY=VALUE ...]

Each size runs in its own process, so its peak RSS is its own. The data
folders (`<data-root>/glyphs<K>_n<N>`) are kept and reused. Writes
`scale_fit.json` and `scale_fit.md` to `--out`. Run it alone on an idle
machine for seconds that mean something.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "apps"))
COSTS = ("run_s", "graph_s", "epoch_s", "peak_rss_mb")


def data_folder(root: Path, clusters: int, n: int) -> Path:
    return root / f"glyphs{clusters}_n{n}"


def make_data(folder: Path, clusters: int, n: int, test: int, seed: int = 0) -> float | None:
    """Writes the glyph set unless it is there; its seconds, or None when it was reused."""
    if (folder / "mnist.npz").is_file():
        return None
    started = time.perf_counter()
    cmd = [sys.executable, str(ROOT / "apps/synthetic_mixture.py"), "--clusters", str(clusters)]
    cmd += ["--out", str(folder), "--train", str(n), "--test", str(test), "--seed", str(seed)]
    subprocess.run(cmd, check=True)
    return round(time.perf_counter() - started, 1)


def measure(n: int, config_path: str, folder: Path, overrides: list[str]) -> dict:
    """One size, in this process: the real fit and what it cost."""
    import keras
    from benchmark import peak_rss_mb

    from kmixvae import cli
    from kmixvae.training.epoch_timing import EpochTiming
    from kmixvae.training.fit import fit_run

    work = Path(tempfile.mkdtemp(prefix="scale_fit_"))
    sets = ["data.train_split=train", "data.val_split=test"]
    sets += [f"output.saved_model={work / 'model.keras'}"] + overrides
    config = cli._load(config_path, sets, str(folder))
    timing = EpochTiming()
    accuracy: list[float] = []
    messages: list[str] = []

    class Accuracy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            accuracy.append(float((logs or {}).get("val_cluster_acc", float("nan"))))

    def log(message):
        messages.append(str(message))
        print(message, flush=True)

    started = time.perf_counter()
    fit_run(
        config,
        run_dir=str(work / "run"),
        callbacks=[timing, Accuracy()],
        full_output=False,
        log=log,
    )
    run_s = time.perf_counter() - started
    walls = [r["wall_s"] for r in timing.epochs]
    return {
        "images": n,
        "epochs": len(walls),
        "images_per_epoch": timing.epochs[-1]["steps"] * config.data.batch_size,
        "run_s": round(run_s, 1),
        "graph_s": graph_seconds(messages),
        "epoch_s": round(statistics.median(walls[1:] or walls), 2),
        "first_epoch_s": round(walls[0], 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "accuracy": round(accuracy[-1], 4),
        "backend": keras.backend.backend(),
    }


def graph_seconds(messages: list[str]) -> float | None:
    """The input graph's seconds from the run's log line (`... in pixel space (7.1 s)`)."""
    for message in messages:
        if message.startswith("neighbour pairs") and " space (" in message:
            return float(message.rsplit("(", 1)[1].split(" s)")[0])
    return None


def exponents(results: list[dict], key: str) -> list:
    """log(cost ratio) / log(size ratio) between consecutive sizes."""
    out = []
    for a, b in zip(results, results[1:]):
        if a.get(key) and b.get(key) and a[key] > 0 and b[key] > 0:
            out.append(round(math.log(b[key] / a[key]) / math.log(b["images"] / a["images"]), 2))
        else:
            out.append(None)
    return out


def markdown(results: list[dict], header: str) -> str:
    lines = [
        header,
        "",
        "| images | data written s | whole run s | pixel graph s | median epoch s "
        "| images an epoch | epochs | peak RSS MB | held-out accuracy % |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        made = "reused" if r["data_s"] is None else f"{r['data_s']:.0f}"
        lines.append(
            f"| {r['images']:,} | {made} | {r['run_s']:.0f} | {r['graph_s']} | {r['epoch_s']:.2f} "
            f"| {r['images_per_epoch']:,} | {r['epochs']} | {r['peak_rss_mb']:.0f} "
            f"| {100 * r['accuracy']:.2f} |"
        )
    lines.append("")
    for key in COSTS:
        lines.append(
            f"- growth exponent of `{key}` between consecutive sizes: {exponents(results, key)}"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 60_000, 100_000])
    parser.add_argument("--out", required=True, help="folder for scale_fit.json / .md")
    parser.add_argument("--config", default=str(ROOT / "configs/film_het.json"))
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--data-root", type=Path, default=ROOT / "study_data")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:
        from kmixvae.errors import KmixvaeError

        folder = data_folder(args.data_root, args.clusters, args.one)
        try:
            result = measure(args.one, args.config, folder, args.overrides)
        except KmixvaeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print("RESULT " + json.dumps(result))
        return 0
    if min(args.sizes) < 2 or args.clusters < 1 or args.test < 1:
        print("error: --sizes must be >= 2, --clusters and --test >= 1", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for n in sorted(args.sizes):
        folder = data_folder(args.data_root, args.clusters, n)
        data_s = make_data(folder, args.clusters, n, args.test)
        cmd = [sys.executable, __file__, "--one", str(n), "--config", args.config]
        cmd += ["--clusters", str(args.clusters), "--data-root", str(args.data_root), "--out", "-"]
        cmd += [f"--set={o}" for o in args.overrides]
        done = subprocess.run(cmd, capture_output=True, text=True)
        lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            errors = [x for x in done.stderr.splitlines() if x.startswith("error: ")]
            if errors:  # the config or the data: one line, as kmixvae fit says it
                print(errors[-1], file=sys.stderr)
                return 2
            print(done.stdout[-2000:] + done.stderr[-4000:], file=sys.stderr)
            print(f"error: the run on {n} images failed (exit {done.returncode})", file=sys.stderr)
            return 1
        result = json.loads(lines[-1][len("RESULT ") :])
        result["data_s"] = data_s
        results.append(result)
        print(json.dumps(result), flush=True)
    config = Path(args.config)
    name = config.relative_to(ROOT) if config.is_relative_to(ROOT) else config
    header = (
        f"`{results[0]['backend']}`, `{name}` with "
        f"{' '.join('--set ' + o for o in args.overrides) or 'no --set'}, glyph mixture "
        f"(K={args.clusters}), trained on `train`, held-out accuracy on {args.test:,} `test` images"
    )
    (out / "scale_fit.json").write_text(json.dumps({"header": header, "rows": results}, indent=2))
    text = markdown(results, header)
    (out / "scale_fit.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
