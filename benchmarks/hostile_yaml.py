"""How long does the loader take to refuse hostile YAML, against reading a real spec?

    python benchmarks/hostile_yaml.py [--runs 7]

For each hostile input of tests/spec/test_hostile_yaml.py (three alias bombs, four
10,000-deep nestings, a 50 MB file) prints the median time to refuse it, the loader's own
work counts (`cnnspec.spec.source.ReadCounts`), and the ratio against the baseline measured
in the same run: reading and parsing specs/resnet18.yaml. The tests bound the work (counts
checked by hand arithmetic); this script is where the time is, since a clock on a shared
CI machine measures the machine as much as the code.

The loader's default parser is timed: libyaml when installed, else the pure-Python one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnnspec.errors import SpecError  # noqa: E402
from cnnspec.spec import source  # noqa: E402
from tests.spec.test_hostile_yaml import NESTINGS, billion_laughs, mapping_bomb, wide_alias_fan  # noqa: E402


def median_seconds(call: Callable[[], object], runs: int) -> float:
    """Median wall time of `call` over `runs` calls, after one untimed call."""
    call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def refuse_text(text: str, counts: source.ReadCounts | None = None) -> None:
    try:
        source.parse_yaml(text, "hostile.yaml", counts)
    except SpecError:
        return
    raise SystemExit("a hostile input was accepted")


def refuse_file(path: Path, counts: source.ReadCounts | None = None) -> None:
    try:
        source.read_spec_text(path, counts)
    except SpecError:
        return
    raise SystemExit(f"{path} was accepted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="timed calls per input (median)")
    args = parser.parse_args()

    spec = ROOT / "specs" / "resnet18.yaml"
    baseline = median_seconds(lambda: source.parse_yaml(source.read_spec_text(spec), str(spec)), args.runs)
    print(f"parser: {'libyaml' if source._c_parser() else 'pure Python'}; medians of {args.runs} runs")
    print(f"baseline: read + parse specs/resnet18.yaml  {baseline * 1e3:8.2f} ms")
    print()
    print(f"{'input':<28} {'refused in':>11} {'× baseline':>11}  work")
    texts = {
        "billion laughs (9^9)": billion_laughs(),
        "mapping bomb (2^30)": mapping_bomb(),
        "200,000 aliases": wide_alias_fan(),
        **{f"10,000 deep: {shape}": text + "\n" for shape, text in NESTINGS.items()},
    }
    inputs: dict[str, Callable[[source.ReadCounts | None], None]] = {
        name: partial(refuse_text, text) for name, text in texts.items()
    }
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.yaml"
        big.write_bytes(b"# padding\n" * 5_000_000)  # 50 MB
        inputs["50 MB file"] = partial(refuse_file, big)
        for name, refuse in inputs.items():
            counts = source.ReadCounts()
            refuse(counts)
            seconds = median_seconds(partial(refuse, None), args.runs)
            work = (
                f"{counts.bytes_read:,} bytes read, {counts.chars_parsed:,} chars parsed, "
                f"{counts.events:,} events, {counts.nodes_sized:,} nodes sized"
            )
            print(f"{name:<28} {seconds * 1e3:8.2f} ms {seconds / baseline:10.1f}×  {work}")


if __name__ == "__main__":
    main()
