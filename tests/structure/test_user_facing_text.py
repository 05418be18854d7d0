"""User-facing text speaks of what a spec or feature does, never of a document the user does not have.

The shipped specs were first written after a CNN tutorial; phrases such as "the seed's §3",
"the source document" or "as in the tutorial" mean nothing to a user. Every file a user reads
is scanned: README, docs, the shipped specs and `init` templates, the JSON Schema (editor
hovers), examples, and the Python sources of cnnspec and benchmarks (CLI help, error messages,
docstrings). `train.seed`, the random seed, stays fine: a possessive "seed's" and "the seed"
are refused, "the random seed" and "with the same seed" are not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

USER_FACING = (
    "README.md",
    "pyproject.toml",
    "docs/**/*.md",
    "specs/**/*.yaml",
    "cnnspec/templates/**/*.yaml",
    "schemas/**/*.json",
    "examples/**/*",
    "cnnspec/**/*.py",
    "benchmarks/**/*.py",
)

# Case-insensitive. Each names a reference to the text the specs came from.
FORBIDDEN = re.compile(r"§|\bseed's\b|\bsource document\b|\btutorial|\bthe seed\b", re.IGNORECASE)


def user_facing_files(root: Path) -> Iterator[Path]:
    seen: set[Path] = set()
    for pattern in USER_FACING:
        for path in sorted(root.glob(pattern)):
            if path.is_file() and path not in seen and "__pycache__" not in path.parts:
                seen.add(path)
                yield path


def offending_phrases(root: Path) -> list[str]:
    """`path:line:col: phrase` for every forbidden phrase in the user-facing files under `root`."""
    found = []
    for path in user_facing_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # a binary example file has no prose
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for match in FORBIDDEN.finditer(line):
                around = line[max(0, match.start() - 40) : match.end() + 40].strip()
                found.append(f"{path.relative_to(root)}:{number}:{match.start() + 1}: {match.group()!r} in {around!r}")
    return found


def test_the_scan_covers_every_kind_of_user_facing_file() -> None:
    files = {path.relative_to(ROOT).as_posix() for path in user_facing_files(ROOT)}
    for expected in (
        "README.md",
        "docs/training.md",
        "specs/small_cnn.yaml",
        "specs/zoo/resnet50.yaml",
        "cnnspec/templates/small_cnn.yaml",
        "schemas/cnnspec.schema.json",
        "cnnspec/commands/run.py",
        "benchmarks/train_throughput.py",
    ):
        assert expected in files


def test_the_pattern_refuses_references_to_the_source_and_keeps_the_random_seed() -> None:
    for bad in (
        "Seed §3–4: the SmallCNN",
        "as in the seed",
        "the seed's recipe",
        "of the source document",
        "the tutorial",
    ):
        assert FORBIDDEN.search(bad), bad
    for fine in ("train.seed=3", "with the same seed", "the random seed is set", "seed 0", "seeds 0–7"):
        assert not FORBIDDEN.search(fine), fine


def test_no_user_facing_text_cites_the_document_the_specs_came_from() -> None:
    found = offending_phrases(ROOT)
    assert not found, "say what the spec or feature does instead:\n" + "\n".join(found)
