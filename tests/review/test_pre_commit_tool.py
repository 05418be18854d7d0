"""The real pre-commit, with examples/pre-commit-config.yaml, on a scratch repository: `pre-commit
install`, then `git commit` as a user commits. Both ways the example offers: the `repo: local`
hooks as written (the `cnnspec` of the environment), and the hook repository's
.pre-commit-hooks.yaml with its two FILL-IN values filled in (a clone of this checkout, at a
commit), for which pre-commit installs cnnspec's core into an environment of its own: no torch.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.review.install_helpers import UNREACHABLE, copy_checkout
from tests.review.review_helpers import ROOT, SPECS, cli_env, git, git_repo

EXAMPLE = ROOT / "examples" / "pre-commit-config.yaml"
# The commented-out hook-repository entry, and the two values a user fills in there.
REPO_ENTRY = re.compile(r"^  # (- repo: .*\n(?:  #   .*\n)+)", re.M)
REPO_PLACEHOLDER = "https://github.com/OWNER/cnnspec"
REV_PLACEHOLDER = "COMMIT"


def pre_commit(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def commit(repo: Path, env: dict[str, str], message: str) -> subprocess.CompletedProcess[str]:
    git("add", "-A", cwd=repo)
    return subprocess.run(
        ["git", "commit", "-qm", message], cwd=repo, env=env, capture_output=True, text=True, timeout=900
    )


def user_repo(path: Path, config: str, env: dict[str, str]) -> Path:
    """A repository with two specs and `config` as .pre-commit-config.yaml, hooks installed."""
    repo = git_repo(path)
    (repo / "specs").mkdir()
    for name in ("small_cnn.yaml", "digits.yaml"):
        shutil.copy(SPECS / name, repo / "specs" / name)
    (repo / ".pre-commit-config.yaml").write_text(config, encoding="utf-8")
    installed = pre_commit("install", cwd=repo, env=env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return repo


def commit_good_then_broken(repo: Path, env: dict[str, str]) -> str:
    """Commit the specs (taken), then a broken one (refused, located); returns the good text of the spec."""
    first = commit(repo, env, "specs")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "cnnspec validate" in first.stdout + first.stderr  # the hook ran on the specs

    small = repo / "specs" / "small_cnn.yaml"
    good = small.read_text(encoding="utf-8")
    small.write_text(good.replace("kernel_size: 3, padding: 1}", "kernel_size: 99, padding: 1}", 1))
    broken = commit(repo, env, "broken")
    assert broken.returncode == 1
    assert re.search(r"specs/small_cnn\.yaml:\d+:\d+: error: conv2d output would be", broken.stdout + broken.stderr)
    return good


def review_a_change(repo: Path, env: dict[str, str]) -> None:
    """The specs, a broken one (refused, located), a misformatted one (rewritten, refused, then taken)."""
    small = repo / "specs" / "small_cnn.yaml"
    good = commit_good_then_broken(repo, env)

    wider = good.replace("{id: conv2, out_channels: 64,", "{id: conv2, out_channels: 96,")
    assert wider != good
    small.write_text(wider.replace("{id: head, out_features: 10}", "{out_features: 10, id: head}"))
    reordered = commit(repo, env, "wider conv2, keys out of order")
    assert reordered.returncode == 1 and "files were modified by this hook" in reordered.stdout + reordered.stderr
    assert small.read_text(encoding="utf-8") == wider  # fmt put the keys back in order
    again = commit(repo, env, "wider conv2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert git("status", "--porcelain", cwd=repo) == ""


@pytest.mark.slow  # two commits, each running two cnnspec hooks
def test_the_example_local_hooks_work_as_written_under_git_commit(tmp_path: Path) -> None:
    env = cli_env() | {"PRE_COMMIT_HOME": str(tmp_path / "cache")}  # `cnnspec` of this environment on PATH
    repo = user_repo(tmp_path / "repo", EXAMPLE.read_text(encoding="utf-8"), env)
    commit_good_then_broken(repo, env)


def hook_repository(path: Path) -> tuple[Path, str]:
    """A clone of this checkout as a user's pre-commit would fetch it: the distribution and its
    .pre-commit-hooks.yaml, committed; returns the repository and the commit."""
    repo = git_repo(copy_checkout(path, ".pre-commit-hooks.yaml"))
    git("add", ".", cwd=repo)
    git("commit", "-qm", "cnnspec", cwd=repo)
    return repo, git("rev-parse", "HEAD", cwd=repo).strip()


def filled_in_config(repository: Path, commit_sha: str) -> str:
    text = EXAMPLE.read_text(encoding="utf-8")
    (entry,) = REPO_ENTRY.findall(text)
    entry = re.sub(r"^  #   ", "    ", entry, flags=re.M)
    assert entry.count(REPO_PLACEHOLDER) == 1 and entry.count(REV_PLACEHOLDER) == 1, entry
    entry = entry.replace(REPO_PLACEHOLDER, str(repository)).replace(REV_PLACEHOLDER, commit_sha)
    return f"repos:\n  {entry}"


@pytest.mark.slow  # pre-commit makes a virtualenv and pip-installs the core into it
def test_the_example_hook_repository_filled_in_installs_the_core_without_torch(tmp_path: Path) -> None:
    hooks, sha = hook_repository(tmp_path / "cnnspec")
    cache = tmp_path / "cache"
    # No PYTHONPATH: the hooks must run the cnnspec pre-commit installed, not this checkout.
    env = {k: v for k, v in cli_env().items() if k != "PYTHONPATH"} | {"PRE_COMMIT_HOME": str(cache)}
    env |= {"PIP_RETRIES": "1", "PIP_TIMEOUT": "30"}
    repo = user_repo(tmp_path / "repo", filled_in_config(hooks, sha), env)

    installed = pre_commit("install-hooks", cwd=repo, env=env)
    if installed.returncode != 0:
        log = cache / "pre-commit.log"
        text = installed.stdout + installed.stderr + (log.read_text(encoding="utf-8") if log.exists() else "")
        if UNREACHABLE.search(text):
            pytest.skip(f"the package registry is unreachable, and pip's local indexes lack a dependency:\n{text}")
        pytest.fail(f"pre-commit could not install the hooks:\n{text}")
    site = [p for p in cache.rglob("site-packages") if p.is_dir()]
    assert [p for p in site if (p / "cnnspec").is_dir()], "pre-commit did not install cnnspec"
    assert [p / m for p in site for m in ("torch", "onnx", "onnxruntime", "numpy") if (p / m).exists()] == []
    review_a_change(repo, env)
