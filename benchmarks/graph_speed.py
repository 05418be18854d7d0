"""How fast is `cnnspec graph`? Against `cnnspec validate` of the same spec, for the biggest zoo specs.

    python benchmarks/graph_speed.py [--runs 5] [--specs specs/zoo/densenet121.yaml,...]

For each spec (default: densenet121, 427 layers; inception_v3, 310; googlenet, 197) prints the median
wall and CPU time of a fresh `cnnspec graph SPEC -o FILE` process for FILE.svg, FILE.html and
FILE.html with --depth 1 (the page with a view per group), then `cnnspec validate SPEC` and each
graph's CPU time as a ratio against validate's (the drawing's own cost: load and check are the same
work); and in this process, the time the drawing alone takes (view, layout, SVG) for the biggest
spec. Goal: `cnnspec graph` on a densenet121-sized spec under 2 s (CPU time: wall time on a shared
machine counts the other processes' time too).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validate_speed import ROOT, cnnspec_command, timed

DEFAULT = "specs/zoo/densenet121.yaml,specs/zoo/inception_v3.yaml,specs/zoo/googlenet.yaml"


def drawing_only(path: Path, runs: int) -> tuple[int, float]:
    """Layers and the median in-process time of view + layout + SVG (the spec loaded and checked once)."""
    from cnnspec.checker.checker import check
    from cnnspec.render.graph import to_svg
    from cnnspec.spec.load import load

    graph = check(load(path))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        to_svg(graph)
        times.append(time.perf_counter() - start)
    return len(graph.nodes), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement; the median is reported")
    parser.add_argument("--specs", default=DEFAULT, help="comma-separated spec paths")
    args = parser.parse_args()
    cli = cnnspec_command()
    specs = [ROOT / s for s in args.specs.split(",")]
    print(f"medians of {args.runs} fresh processes        wall        CPU   CPU ÷ validate")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for path in specs:
            rel = str(path.relative_to(ROOT))
            base, base_cpu = timed([*cli, "validate", rel], args.runs)
            print(f"{rel}")
            print(f"  {'validate':<36} {base:7.3f} s {base_cpu:7.3f} s {1:>10.2f}")
            for label, extra in (("graph -o x.svg", ["x.svg"]), ("graph -o x.html", ["x.html"])):
                wall, cpu = timed([*cli, "graph", rel, "-o", str(Path(tmp) / extra[0])], args.runs)
                worst = max(worst, cpu) if "densenet" in rel else worst
                print(f"  {label:<36} {wall:7.3f} s {cpu:7.3f} s {cpu / base_cpu:>10.2f}")
            wall, cpu = timed([*cli, "graph", rel, "--depth", "1", "-o", str(Path(tmp) / "d.html")], args.runs)
            print(f"  {'graph --depth 1 -o x.html':<36} {wall:7.3f} s {cpu:7.3f} s {cpu / base_cpu:>10.2f}")
    layers, alone = drawing_only(specs[0], args.runs)
    print(f"\nthe drawing alone (view, layout, SVG) of {specs[0].stem}, {layers} layers: {alone:.3f} s in-process")
    if worst:
        print(f"cnnspec graph on densenet121: {worst:.2f} s CPU (goal < 2 s: {'met' if worst < 2 else 'NOT met'})")


if __name__ == "__main__":
    main()
