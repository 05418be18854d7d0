"""Ctrl-C in the first second of a command: exit 130 and one line on stderr, never a traceback.

A real `python -m cnnspec train` gets a real SIGINT at several moments of its start-up: while
typer, rich, pydantic and torch are imported, while the arguments are parsed and the command
is made, while the spec is read. Python's own start-up (site and the .pth files, ~50 ms on
a busy machine) runs before any cnnspec code and is Python's to handle, so the delays count
from the moment the entry module `cnnspec.cli` has been imported, which `-X importtime`
writes on stderr. The delays are moments to interrupt at, not timings: nothing here asserts
how long anything takes.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["train", "specs/digits.yaml", "--quiet"]
DELAYS = [0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0]
ENTRY_IMPORTED = re.compile(r"^import time:.*\|\s*cnnspec\.cli$", re.MULTILINE)
# What a Ctrl-C may end with: this one line, or train's own words when it reached its loop.
MESSAGES = re.compile(r"interrupted|stopped; continue with: cnnspec train --resume \S+")


def _wait_for_entry(proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120  # a guard against hanging, not a measurement
    while not ENTRY_IMPORTED.search(log.read_text(encoding="utf-8", errors="replace")):
        assert proc.poll() is None, f"cnnspec exited before it was interrupted:\n{log.read_text()}"
        assert time.monotonic() < deadline, "cnnspec.cli was never imported"
        time.sleep(0.002)


def _interrupted(args: list[str], log: Path, delay: float) -> int:
    """Run `python -X importtime ARGS` (stderr into `log`), Ctrl-C it `delay` s after cnnspec.cli was
    imported, and return its exit status."""
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            # -X faulthandler: should the process die by a signal (a native abort), every thread's Python
            # stack is on stderr, and so in the failure's message.
            [sys.executable, "-X", "importtime", "-X", "faulthandler", *args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            _wait_for_entry(proc, log)
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            return proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("delay", DELAYS)
def test_ctrl_c_during_start_up_exits_130_with_one_line(tmp_path: Path, delay: float) -> None:
    log = tmp_path / "stderr.txt"
    code = _interrupted(["-m", "cnnspec", *TRAIN, "--out", str(tmp_path / "run")], log, delay)
    text = log.read_text(encoding="utf-8", errors="replace")
    said = [line for line in text.splitlines() if not line.startswith("import time:")]
    assert "Traceback" not in text, "\n".join(said)
    assert code == 130, "\n".join(said)
    assert len(said) == 1 and MESSAGES.fullmatch(said[0]), said


# A module that presses Ctrl-C on itself while it is being imported, then finishes its import.
SIGNALS_ITSELF = """
import signal, time
signal.raise_signal(signal.SIGINT)
for _ in range(20):
    time.sleep(0.005)  # runs with the Ctrl-C held
finished = True
"""

HELD_PROBE = """
import sys, time
sys.path.insert(0, sys.argv[1])
from cnnspec.interrupts import Interrupted, catch_ctrl_c
catch_ctrl_c()
try:
    import signals_itself
except Interrupted:
    sys.exit("raised inside the import")
try:
    if sys.argv[2] == "finish":
        from cnnspec.interrupts import ctrl_c
        ctrl_c.finish()
        sys.exit("finish() returned with a Ctrl-C held")
    if sys.argv[2] == "handover":
        from cnnspec.training.signals import StopFlag, stop_on_signals
        with stop_on_signals(StopFlag()):
            sys.exit("train's handler took SIGINT over without the held Ctrl-C")
    time.sleep(30)
    sys.exit("the held Ctrl-C was never delivered")
except Interrupted:
    print("delivered after the import:", signals_itself.finished)
"""


@pytest.mark.parametrize("how", ["retry", "handover", "finish"])
def test_a_ctrl_c_inside_an_import_is_held_until_the_import_is_done(tmp_path: Path, how: str) -> None:
    """Delivered by the 50 ms retry once no import runs, at once when train's handler takes over, or
    when the command is over before the retry (a short command ends interrupted, not by SIGALRM)."""
    (tmp_path / "signals_itself.py").write_text(SIGNALS_ITSELF, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-c", HELD_PROBE, str(tmp_path), how], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == "delivered after the import: True\n"


AFTER_FINISH = """
import signal, sys
from cnnspec.interrupts import catch_ctrl_c, ctrl_c
catch_ctrl_c()
ctrl_c.finish()
print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN, signal.getsignal(signal.SIGALRM) == signal.SIG_IGN)
signal.raise_signal(signal.SIGINT)  # pressed while Python shuts down: nothing is left to stop
"""


def test_after_the_command_a_ctrl_c_no_longer_ends_the_process_by_a_signal() -> None:
    proc = subprocess.run([sys.executable, "-c", AFTER_FINISH], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout) == (0, "True True\n"), proc.stderr


@pytest.fixture(scope="module")
def exported_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model for `predict` to read: trained and exported by the library in this process (two
    `python -m cnnspec` processes cost two more imports of torch and onnx); only predict is interrupted."""
    import cnnspec

    run = tmp_path_factory.mktemp("run") / "run"
    overrides = [
        "data.dataset.name=synthetic",
        "data.dataset.num_samples=32",
        "data.val_split=0",
        "train.epochs=1",
        "train.device=cpu",
    ]
    cnnspec.train(ROOT / "specs/small_cnn.yaml", out=run, overrides=overrides, progress=False)
    return cnnspec.export(run)


SHORT_DELAYS = [0.0, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.2, 0.3, 0.45]


@pytest.mark.parametrize("command", ["validate", "fmt", "predict"])
def test_ctrl_c_at_any_moment_of_a_short_command_exits_130_or_lets_it_finish(
    tmp_path: Path, exported_model: Path, command: str
) -> None:
    """validate, fmt and predict end within a second: a Ctrl-C during their start-up, work or
    shut-down ends them with `interrupted` and 130, or comes after their work (exit 0, their
    output); never a traceback, never death by a signal (negative status), never another error."""
    spec = tmp_path / "spec.yaml"
    spec.write_text((ROOT / "specs/small_cnn.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    image = tmp_path / "image.png"
    from PIL import Image

    Image.new("RGB", (32, 32), (120, 30, 200)).save(image)
    args = {"validate": [str(spec)], "fmt": [str(spec)], "predict": [str(exported_model), str(image)]}[command]
    for delay in SHORT_DELAYS:
        log = tmp_path / f"stderr-{delay}.txt"
        code = _interrupted(["-m", "cnnspec", command, *args], log, delay)
        said = [line for line in log.read_text(errors="replace").splitlines() if not line.startswith("import time:")]
        assert "Traceback" not in "\n".join(said), (delay, said)
        assert code in (0, 130), (delay, code, said)
        if code == 130:  # predict may have said which provider it runs on before
            assert said[-1:] == ["interrupted"] and not any("error" in line for line in said), (delay, said)
