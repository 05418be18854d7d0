"""The CI workflow's commands, the pre-commit hooks and the git textconv, run for real."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from cnnspec.spec.source import parse_yaml
from tests.review.review_helpers import ROOT, SPECS, cli_env, git, git_repo

WORKFLOW = ROOT / "examples" / "github-actions" / "cnnspec.yml"
HOOKS = ROOT / ".pre-commit-hooks.yaml"
EXAMPLE_CONFIG = ROOT / "examples" / "pre-commit-config.yaml"


def load_yaml(path: Path) -> object:
    return parse_yaml(path.read_text(encoding="utf-8"), str(path))[0]


def bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # GitHub runs `run:` steps with `bash -e {0}`.
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def spec_repo(tmp_path: Path) -> tuple[Path, str]:
    """A repository whose PR changes one conv's width and adds a spec; returns it and the base commit."""
    repo = git_repo(tmp_path / "repo")
    (repo / "specs").mkdir()
    for name in ("small_cnn.yaml", "digits.yaml"):
        shutil.copy(SPECS / name, repo / "specs" / name)
    git("add", ".", cwd=repo)
    git("commit", "-qm", "base", cwd=repo)
    base = git("rev-parse", "HEAD", cwd=repo).strip()
    small = repo / "specs" / "small_cnn.yaml"
    small.write_text(small.read_text().replace("{id: conv2, out_channels: 64,", "{id: conv2, out_channels: 96,"))
    shutil.copy(SPECS / "deeper_cnn.yaml", repo / "specs" / "deeper_cnn.yaml")
    git("add", ".", cwd=repo)
    git("commit", "-qm", "wider conv2, new deeper spec", cwd=repo)
    return repo, base


def test_workflow_runs_locally(tmp_path: Path) -> None:
    workflow = load_yaml(WORKFLOW)
    assert isinstance(workflow, dict)
    steps = workflow["jobs"]["specs"]["steps"]
    by_id = {s["id"]: s for s in steps if "id" in s}
    assert set(by_id) == {"install", "validate", "fmt", "diff", "upload", "comment"}
    assert "--format github" in by_id["validate"]["run"] and "fmt --check" in by_id["fmt"]["run"]
    assert "diff --format markdown" in by_id["diff"]["run"] and "diff --format html" in by_id["diff"]["run"]

    repo, base = spec_repo(tmp_path)
    summary = tmp_path / "step_summary.md"
    expressions = {"github.event.pull_request.base.sha": base}
    env = cli_env() | {k: str(v) for k, v in workflow["env"].items()} | {"GITHUB_STEP_SUMMARY": str(summary)}
    # `install` needs the network and `comment` a pull request: the others run as on GitHub.
    for step_id in ("validate", "fmt", "diff"):
        step = by_id[step_id]
        step_env = dict(env)
        for key, value in step.get("env", {}).items():
            step_env[key] = re.sub(r"\$\{\{\s*(.+?)\s*\}\}", lambda m: expressions[m.group(1)], str(value))
        proc = bash(step["run"], repo, step_env)
        assert proc.returncode == 0, f"{step_id}: {proc.stdout}\n{proc.stderr}"

    comment = (repo / "cnnspec-diff.md").read_text(encoding="utf-8")
    assert "### Architecture diff: `specs/small_cnn.yaml`" in comment
    assert "`conv2` (conv2d): `out_channels` 64 → 96" in comment
    # the name as Markdown text (rendered: deeper-cnn)
    assert "### New spec: `specs/deeper_cnn.yaml`" in comment and "**deeper\\-cnn**" in comment
    assert "digits" not in comment  # unchanged specs are not diffed
    assert summary.read_text(encoding="utf-8") == comment
    # The HTML diffs the upload step takes: one per spec that existed at the base.
    assert sorted(p.name for p in (repo / "cnnspec-diff-html").iterdir()) == ["specs_small_cnn.yaml.html"]


def test_workflow_validate_step_annotates_errors(tmp_path: Path) -> None:
    workflow = load_yaml(WORKFLOW)
    assert isinstance(workflow, dict)
    step = next(s for s in workflow["jobs"]["specs"]["steps"] if s.get("id") == "validate")
    repo, _ = spec_repo(tmp_path)
    bad = repo / "specs" / "small_cnn.yaml"
    bad.write_text(bad.read_text().replace("{out_features: 128}", "{out_features: 128, in_features: 5}"))
    proc = bash(step["run"], repo, cli_env() | {"SPECS": "specs"})
    assert proc.returncode == 1
    annotation = r"^::error file=specs/small_cnn\.yaml,line=\d+,col=\d+::linear expects in_features=5"
    assert re.search(annotation, proc.stdout, re.M)


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300)


def hook_files(hook: dict[str, object], root: Path) -> list[str]:
    pattern = re.compile(str(hook["files"]))
    files = [str(p.relative_to(root)) for p in sorted(root.rglob("*")) if p.is_file()]
    return [f for f in files if pattern.search(f)]


@pytest.mark.slow  # five cnnspec processes
def test_pre_commit_hooks_run_on_the_specs(tmp_path: Path) -> None:
    hooks = load_yaml(HOOKS)
    assert isinstance(hooks, list)
    assert [h["id"] for h in hooks] == ["cnnspec-validate", "cnnspec-fmt"]
    repo = tmp_path / "repo"
    shutil.copytree(SPECS, repo / "specs")
    (repo / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(WORKFLOW, repo / ".github" / "workflows" / "cnnspec.yml")
    before = {str(p.relative_to(repo / "specs")): p.read_text() for p in (repo / "specs").rglob("*.yaml")}
    for hook in hooks:
        files = hook_files(hook, repo)
        assert sorted(files) == sorted(f"specs/{name}" for name in before)  # not the workflow's YAML
        proc = run([*shlex.split(str(hook["entry"])), *files], repo)
        assert proc.returncode == 0, f"{hook['id']}: {proc.stdout}\n{proc.stderr}"
    after = {str(p.relative_to(repo / "specs")): p.read_text() for p in (repo / "specs").rglob("*.yaml")}
    assert after == before  # already formatted

    # The fmt hook rewrites a file (pre-commit then reports the change); validate fails on a broken one.
    fmt_hook, validate_hook = hooks[1], hooks[0]
    small = repo / "specs" / "small_cnn.yaml"
    small.write_text(small.read_text().replace("{id: head, out_features: 10}", "{out_features: 10, id: head}"))
    assert run([*shlex.split(str(fmt_hook["entry"])), "specs/small_cnn.yaml"], repo).returncode == 0
    assert small.read_text() == before["small_cnn.yaml"]
    small.write_text(small.read_text().replace("kernel_size: 3, padding: 1}", "kernel_size: 99, padding: 1}", 1))
    proc = run([*shlex.split(str(validate_hook["entry"])), "specs/small_cnn.yaml"], repo)
    assert proc.returncode == 1 and "specs/small_cnn.yaml:" in proc.stderr


def test_example_pre_commit_config_uses_the_same_hooks() -> None:
    hooks = load_yaml(HOOKS)
    config = load_yaml(EXAMPLE_CONFIG)
    assert isinstance(hooks, list) and isinstance(config, dict)
    local = next(r for r in config["repos"] if r["repo"] == "local")
    shipped = {h["id"]: h for h in hooks}
    for hook in local["hooks"]:
        assert hook["entry"] == shipped[hook["id"]]["entry"] and hook["files"] == shipped[hook["id"]]["files"]
    assert [h["id"] for h in local["hooks"]] == list(shipped)


REVIEW_DOC = ROOT / "docs" / "review.md"


def recommended_textconv() -> str:
    """The textconv docs/review.md tells users to configure (and examples/gitattributes repeats)."""
    doc = re.search(r'^git config diff\.cnnspec\.textconv "(.+?)"$', REVIEW_DOC.read_text(encoding="utf-8"), re.M)
    attributes = (ROOT / "examples" / "gitattributes").read_text(encoding="utf-8")
    example = re.search(r'git config diff\.cnnspec\.textconv "(.+?)"', attributes)
    assert doc is not None and example is not None and doc.group(1) == example.group(1)
    return doc.group(1)


def textconv_repo(tmp_path: Path) -> tuple[Path, str]:
    """spec_repo with examples/gitattributes and the recommended textconv configured."""
    repo, base = spec_repo(tmp_path)
    (repo / ".gitattributes").write_text((ROOT / "examples" / "gitattributes").read_text(encoding="utf-8"))
    git("config", "diff.cnnspec.textconv", recommended_textconv(), cwd=repo)
    return repo, base


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    """The removed and added lines of a unified diff (without the ---/+++ headers)."""
    body = [line for line in diff.splitlines() if not line.startswith(("---", "+++"))]
    return [line[1:] for line in body if line.startswith("-")], [line[1:] for line in body if line.startswith("+")]


def test_git_textconv_shows_the_architecture_change(tmp_path: Path) -> None:
    repo, base = textconv_repo(tmp_path)
    proc = run(["git", "diff", base, "HEAD", "--", "specs/small_cnn.yaml"], repo)
    assert proc.returncode == 0, proc.stderr
    removed, added = changed_lines(proc.stdout)
    assert "layer conv2: conv2d 64×16×16 params=18496 macs=4718592 rf=8 stride=2" in removed
    assert "layer conv2: conv2d 96×16×16 params=27744 macs=7077888 rf=8 stride=2" in added
    assert "total params: 545290" in removed and "total params: 816746" in added
    assert "out_channels" not in proc.stdout  # the summary, not the YAML
    raw = git("diff", "--no-textconv", base, "HEAD", "--", "specs/small_cnn.yaml", cwd=repo)
    assert "+    - conv2d: {id: conv2, out_channels: 96," in raw


# Each git textconv test starts cnnspec twice (git runs the textconv per side): about 2 s each.
def test_git_textconv_a_longer_id_changes_only_its_line(tmp_path: Path) -> None:
    repo, _ = textconv_repo(tmp_path)
    small = repo / "specs" / "small_cnn.yaml"
    small.write_text(small.read_text().replace("{id: conv1,", "{id: first_convolution_of_the_stem,"))
    proc = run(["git", "diff", "--", "specs/small_cnn.yaml"], repo)
    assert proc.returncode == 0, proc.stderr
    removed, added = changed_lines(proc.stdout)
    assert removed == ["layer conv1: conv2d 32×32×32 params=896 macs=884736 rf=3 stride=1"]
    assert added == ["layer first_convolution_of_the_stem: conv2d 32×32×32 params=896 macs=884736 rf=3 stride=1"]


def test_git_textconv_shows_a_broken_specs_error_and_git_diff_goes_on(tmp_path: Path) -> None:
    repo, _ = textconv_repo(tmp_path)
    small = repo / "specs" / "small_cnn.yaml"
    small.write_text(small.read_text().replace("{id: conv2, out_channels: 96,", "{id: conv2, out_channels: wide,"))
    git("add", ".", cwd=repo)
    git("commit", "-qm", "broken", cwd=repo)
    proc = run(["git", "diff", "HEAD~1", "HEAD", "--", "specs/small_cnn.yaml"], repo)
    assert proc.returncode == 0, proc.stderr
    removed, added = changed_lines(proc.stdout)
    assert "total params: 816746" in removed
    error = [line for line in added if ": error: " in line]
    assert len(error) == 1 and re.search(r"small_cnn\.yaml:\d+:\d+: error: .*out_channels", error[0]), added
    assert not any(line.startswith("layer ") for line in added)
    # The textconv itself, run on the broken file: the error on stdout, exit 0.
    direct = run([*shlex.split(recommended_textconv()), "specs/small_cnn.yaml"], repo)
    assert direct.returncode == 0 and direct.stdout.startswith("specs/small_cnn.yaml:") and direct.stderr == ""
