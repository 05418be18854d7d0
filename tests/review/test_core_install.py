"""The core distribution in a fresh virtual environment, as CI and pre-commit install it: no torch.

One module-scoped install: `python -m venv VENV`, then the GitHub Actions example's install step
(`pip install "$CNNSPEC"`) with the venv first on PATH and CNNSPEC a copy of this checkout, which
is `pip install /path/to/cnnspec`, a user's core install. pip uses this machine's configuration
(its local index and wheel folders, and the registry); when the registry cannot be reached and
the local ones do not hold everything, the tests skip and say so.

Then, in that venv: torch and the other modules of the `train` extra are absent; validate,
summary, fmt, diff, schema and init give what the full install gives; the train extra's commands
name the extra; and the workflow's other steps run in a scratch pull-request repository.
Run with -s to see the install's figures (docs/benchmarks.md quotes them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from cnnspec.spec.source import parse_yaml
from tests.review.install_helpers import UNREACHABLE, copy_checkout
from tests.review.review_helpers import ROOT, SPECS, git, git_repo

pytestmark = pytest.mark.slow  # one venv and a pip install: a minute on a busy 2-core machine

WORKFLOW = ROOT / "examples" / "github-actions" / "cnnspec.yml"
# The distributions of the `train` extra (and what they bring): none may be in the core install.
TRAIN_DISTRIBUTIONS = {
    "torch",
    "torchvision",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "onnxruntime-gpu",
    "safetensors",
    "matplotlib",
    "numpy",
    "pillow",
    "scikit-learn",
}
TRAIN_COMMANDS = {
    "train": ["train", "specs/digits.yaml", "--out", "runs/digits"],
    "evaluate": ["evaluate", "runs/digits"],
    "export": ["export", "runs/digits"],
    "predict": ["predict", "model.onnx", "specs"],
    "bench": ["bench", "runs/digits"],
}


@dataclass(frozen=True)
class CoreInstall:
    venv: Path
    bin: Path
    seconds: float
    megabytes: float

    def env(self) -> dict[str, str]:
        """The environment of a shell in this venv: its scripts first on PATH; no PYTHONPATH, so
        `cnnspec` is the installed copy, not this checkout."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COLUMNS")}
        env["PATH"] = os.pathsep.join([str(self.bin), env.get("PATH", "")])
        env["VIRTUAL_ENV"] = str(self.venv)
        return env

    def cnnspec(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "cnnspec"), *args], cwd=cwd, env=self.env(), capture_output=True, text=True, timeout=300
        )


def workflow() -> dict[str, object]:
    loaded = parse_yaml(WORKFLOW.read_text(encoding="utf-8"), str(WORKFLOW))[0]
    assert isinstance(loaded, dict)
    return loaded


def steps() -> dict[str, dict[str, object]]:
    jobs = workflow()["jobs"]
    assert isinstance(jobs, dict)
    return {s["id"]: s for s in jobs["specs"]["steps"] if "id" in s}


def bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # GitHub runs `run:` steps with `bash -e {0}`.
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def disk_usage_mb(folder: Path) -> float:
    """What `du -s` counts: the blocks the files and folders take (each hard link once)."""
    seen: set[tuple[int, int]] = set()
    blocks = 0
    for path in [folder, *folder.rglob("*")]:
        st = path.lstat()
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            blocks += st.st_blocks
    return blocks * 512 / 2**20


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> CoreInstall:
    root = tmp_path_factory.mktemp("core-install")
    source = copy_checkout(root / "cnnspec")
    venv = root / "venv"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    install = CoreInstall(venv, venv / "bin", 0.0, 0.0)
    step = steps()["install"]
    env = install.env() | {"CNNSPEC": str(source), "PIP_RETRIES": "1", "PIP_TIMEOUT": "30"}
    proc = bash(str(step["run"]), root, env)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        if UNREACHABLE.search(output):
            pytest.skip(
                f"the package registry is unreachable, and pip's local indexes lack a core dependency:\n{output}"
            )
        pytest.fail(f"the core install failed:\n{output}")
    install = CoreInstall(venv, venv / "bin", seconds, disk_usage_mb(venv))
    load = os.getloadavg()[0]
    print(
        f"\nCORE INSTALL: venv + `pip install` {seconds:.1f} s (load {load:.1f}), {install.megabytes:.1f} MiB on disk"
    )
    return install


def test_the_core_install_holds_no_torch_and_fits_in_150_mb(core: CoreInstall) -> None:
    proc = subprocess.run(
        [str(core.bin / "python"), "-m", "pip", "list", "--format", "json"],
        env=core.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    installed = {d["name"].lower().replace("_", "-") for d in json.loads(proc.stdout)}
    assert "cnnspec" in installed and {"pydantic", "ruamel.yaml", "pyyaml", "typer", "rich"} <= installed
    assert installed & TRAIN_DISTRIBUTIONS == set()
    probe = (
        "import importlib.util as u; print([m for m in ('torch', 'onnx', 'onnxruntime', 'numpy') if u.find_spec(m)])"
    )
    found = subprocess.run([str(core.bin / "python"), "-c", probe], env=core.env(), capture_output=True, text=True)
    assert found.stdout.strip() == "[]", found.stderr
    assert core.megabytes < 150


def test_core_commands_in_the_core_install_answer_as_the_full_install_does(core: CoreInstall, tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(SPECS, work / "specs")
    names = sorted(p.name for p in (work / "specs").glob("*.yaml"))
    files = [f"specs/{n}" for n in names]

    validate = core.cnnspec("validate", *files, cwd=work)
    assert validate.returncode == 0, validate.stderr
    assert f"{len(names)} of {len(names)} specs valid" in validate.stdout
    assert core.cnnspec("fmt", "--check", *files, cwd=work).returncode == 0
    assert core.cnnspec("diff", "specs/small_cnn.yaml", "specs/small_cnn.yaml", cwd=work).returncode == 0

    # The same answers as this checkout's full install (torch there) gives, byte for byte.
    full_env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    for args in (
        ["validate", "--format", "json", *files],
        ["summary", "--format", "json", "specs/resnet18_transfer.yaml"],  # a torchvision backbone, statically
        ["summary", "--format", "markdown", "specs/resnet18.yaml"],
        ["diff", "--format", "json", "specs/small_cnn.yaml", "specs/deeper_cnn.yaml"],
        ["diff", "--format", "html", "specs/small_cnn.yaml", "specs/deeper_cnn.yaml"],
        ["graph", "specs/resnet18.yaml"],  # SVG
        ["schema"],
    ):
        here = core.cnnspec(*args, cwd=work)
        full = subprocess.run(
            [sys.executable, "-m", "cnnspec", *args], cwd=work, env=full_env, capture_output=True, text=True
        )
        assert here.returncode == full.returncode and here.returncode in (0, 1), here.stderr
        assert here.stdout == full.stdout, f"cnnspec {' '.join(args)} differs in the core install"

    # graph's HTML page, written to a file by each install: the same bytes.
    page = ["graph", "specs/resnet18.yaml", "--depth", "1", "-o"]
    in_core = core.cnnspec(*page, "core.html", cwd=work)
    in_full = subprocess.run(
        [sys.executable, "-m", "cnnspec", *page, "full.html"], cwd=work, env=full_env, capture_output=True, text=True
    )
    assert in_core.returncode == 0 and in_full.returncode == 0, in_core.stderr + in_full.stderr
    assert (work / "core.html").read_bytes() == (work / "full.html").read_bytes()

    # PNG needs Pillow (the png extra), which the core lacks: one line naming it, and no file.
    png = core.cnnspec("graph", "specs/resnet18.yaml", "-o", "model.png", cwd=work)
    assert png.returncode == 1 and not (work / "model.png").exists()
    assert (
        png.stderr.splitlines()[0] == "error: cnnspec graph -o FILE.png needs the PNG extra: pip install 'cnnspec[png]'"
    )
    assert "Traceback" not in png.stderr

    init = core.cnnspec("init", "digits", "new/", cwd=work)
    assert init.returncode == 0, init.stderr
    assert core.cnnspec("validate", "new/digits.yaml", cwd=work).returncode == 0


@pytest.mark.parametrize("command", list(TRAIN_COMMANDS))
def test_a_command_of_the_train_extra_names_the_extra_in_the_core_install(
    core: CoreInstall, tmp_path: Path, command: str
) -> None:
    shutil.copytree(SPECS, tmp_path / "specs")
    proc = core.cnnspec(*TRAIN_COMMANDS[command], cwd=tmp_path)
    assert proc.returncode == 1
    first = proc.stderr.splitlines()[0]
    assert first == f"error: cnnspec {command} needs the training extra: pip install 'cnnspec[train]'"
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "runs").exists()


def test_the_workflow_steps_run_in_the_core_install(core: CoreInstall, tmp_path: Path) -> None:
    by_id = steps()
    assert set(by_id) == {"install", "validate", "fmt", "diff", "upload", "comment"}
    assert by_id["upload"]["uses"] == "actions/upload-artifact@v4"
    assert by_id["upload"]["with"] == {
        "name": "cnnspec-diff",
        "path": "cnnspec-diff-html/",
        "if-no-files-found": "ignore",
    }
    repo = git_repo(tmp_path / "repo")
    (repo / "specs").mkdir()
    for name in ("small_cnn.yaml", "digits.yaml"):
        shutil.copy(SPECS / name, repo / "specs" / name)
    git("add", ".", cwd=repo)
    git("commit", "-qm", "base", cwd=repo)
    base = git("rev-parse", "HEAD", cwd=repo).strip()
    small = repo / "specs" / "small_cnn.yaml"
    small.write_text(small.read_text().replace("{id: conv2, out_channels: 64,", "{id: conv2, out_channels: 96,"))
    git("commit", "-qam", "wider conv2", cwd=repo)

    # `gh` posts the comment on GitHub; here a stand-in on PATH records what it was asked to post.
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "gh").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$GH_ARGS"\ncp "$5" "$GH_BODY"\n')
    (tools / "gh").chmod(0o755)
    summary = tmp_path / "step_summary.md"
    top_env = workflow()["env"]
    assert isinstance(top_env, dict)
    env = core.env() | {k: str(v) for k, v in top_env.items()}
    env |= {
        "GITHUB_STEP_SUMMARY": str(summary),
        "GH_ARGS": str(tmp_path / "gh-args"),
        "GH_BODY": str(tmp_path / "body"),
    }
    env["PATH"] = os.pathsep.join([str(tools), env["PATH"]])
    expressions = {
        "github.event.pull_request.base.sha": base,
        "github.token": "token",
        "github.event.pull_request.number": "7",
    }
    for step_id in ("validate", "fmt", "diff", "comment"):
        step = by_id[step_id]
        step_env = dict(env)
        step_vars = step.get("env", {})
        assert isinstance(step_vars, dict)
        for key, value in step_vars.items():
            step_env[key] = re.sub(r"\$\{\{\s*(.+?)\s*\}\}", lambda m: expressions[m.group(1)], str(value))
        proc = bash(str(step["run"]), repo, step_env)
        assert proc.returncode == 0, f"{step_id}: {proc.stdout}\n{proc.stderr}"

    # The HTML diff the upload step takes: the changed conv2, marked on both sides.
    page = (repo / "cnnspec-diff-html" / "specs_small_cnn.yaml.html").read_text(encoding="utf-8")
    assert page.count('data-id="conv2" data-kind="conv2d"') == 2 and 'data-status="changed"' in page
    comment = (repo / "cnnspec-diff.md").read_text(encoding="utf-8")
    assert "`conv2` (conv2d): `out_channels` 64 → 96" in comment
    assert summary.read_text(encoding="utf-8") == comment
    assert (tmp_path / "gh-args").read_text().split() == [
        "pr",
        "comment",
        "7",
        "--body-file",
        "cnnspec-diff.md",
        "--edit-last",
    ]
    assert (tmp_path / "body").read_text(encoding="utf-8") == comment
