"""`cnnspec init`: starting specs from the templates shipped in `cnnspec/templates/`.

The templates are copies of the shipped `specs/` (a test keeps them equal, apart from the
`$schema` line). `init` points that line at the JSON Schema: a relative path to a
`schemas/cnnspec.schema.json` found in the target's folder or above it, else the schema's URL.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

from cnnspec.errors import Diagnostic, Location, SpecError, suggested_name

DEFAULT = "small-cnn"
SCHEMA_FILE = Path("schemas") / "cnnspec.schema.json"
SCHEMA_LINE = re.compile(r"^# yaml-language-server: \$schema=.*$", re.MULTILINE)


def _folder() -> resources.abc.Traversable:
    return resources.files("cnnspec").joinpath("templates")


def template_names() -> list[str]:
    """The template names, e.g. `small-cnn` for `templates/small_cnn.yaml`."""
    return sorted(p.name[: -len(".yaml")].replace("_", "-") for p in _folder().iterdir() if p.name.endswith(".yaml"))


def file_name(name: str) -> str:
    return name.replace("-", "_") + ".yaml"


def template_text(name: str) -> str:
    """A template's text as shipped; raises SpecError naming the templates for an unknown name."""
    names = template_names()
    canonical = name.replace("_", "-").removesuffix(".yaml")
    if canonical not in names:
        close = suggested_name(canonical, names)
        listing = f"choose one of: {', '.join(names)}"
        raise SpecError(Diagnostic(f"no template '{name}'", hint=None if close else listing, suggestion=close))
    return _folder().joinpath(file_name(canonical)).read_text(encoding="utf-8")


def schema_ref(target: Path) -> str:
    """What the `$schema=` of a spec written to `target` points at."""
    from cnnspec.spec.schema import SCHEMA_ID

    folder = target.resolve().parent
    for parent in (folder, *folder.parents):
        if (parent / SCHEMA_FILE).is_file():
            return Path(os.path.relpath(parent / SCHEMA_FILE, folder)).as_posix()
    return SCHEMA_ID


def local_schema_note(target: Path) -> str | None:
    """For a spec written to `target` with no `schemas/cnnspec.schema.json` at or above its folder:
    how to give its editor line a local schema, which works offline and stays true to the installed
    cnnspec (the URL is only as good as the network and the version published there)."""
    from cnnspec.spec.schema import SCHEMA_ID

    if schema_ref(target) != SCHEMA_ID:
        return None
    here = Path.cwd() / SCHEMA_FILE
    relative = Path(os.path.relpath(here, target.resolve().parent)).as_posix()
    return (
        f"note: no {SCHEMA_FILE.as_posix()} in the spec's folder or above it, so its editor line points at "
        f"{SCHEMA_ID}; for a local copy, run `mkdir -p {SCHEMA_FILE.parent.as_posix()} && "
        f"cnnspec schema -o {SCHEMA_FILE.as_posix()}` here and make the "
        f"first line `# yaml-language-server: $schema={relative}` (cnnspec init writes that line itself "
        "once the file exists)"
    )


def render(name: str, target: Path) -> str:
    """The template's text with its `$schema` line pointing at the schema from `target`."""
    line = f"# yaml-language-server: $schema={schema_ref(target)}"
    text = template_text(name)
    if SCHEMA_LINE.search(text):
        return SCHEMA_LINE.sub(lambda _: line, text, count=1)
    return f"{line}\n{text}"


def target_path(name: str, path: str | Path | None) -> Path:
    """Where `init` writes: PATH/FILE when PATH is an existing folder or ends with a slash (a folder
    to create), else PATH itself; ./FILE without a PATH. FILE is the template's file name.

    The slash is read from the text the user gave (a `Path` drops it), so `init digits specs/`
    makes the folder `specs` where `init digits specs` would write a file named `specs`.
    """
    canonical = name.replace("_", "-").removesuffix(".yaml")
    if path is None:
        return Path(file_name(canonical))
    text = os.fspath(path)
    folder = Path(text)
    slashes = tuple(s for s in (os.sep, os.altsep, "/") if s)
    if folder.is_dir():
        return folder / file_name(canonical)
    if text.endswith(slashes):
        if folder.exists():
            raise SpecError(
                Diagnostic(f"{text} is not a folder: a file of that name exists", Location(str(folder))),
                hint=f"give a file path to write (without the trailing slash), or another folder than {text}",
            )
        return folder / file_name(canonical)
    return folder


def init(name: str = DEFAULT, path: str | Path | None = None) -> Path:
    """Write a starting spec from a template (into PATH when it names a folder, see target_path);
    refuses to overwrite an existing file."""
    target = target_path(name, path)
    text = render(name, target)
    if target.exists():
        raise _exists(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(target, "x", encoding="utf-8") as f:  # "x": fail rather than overwrite a file made meanwhile
            f.write(text)
    except FileExistsError:
        raise _exists(target) from None
    return target


def _exists(target: Path) -> SpecError:
    return SpecError(
        Diagnostic(
            f"{target} already exists; cnnspec init does not overwrite files",
            Location(str(target)),
            hint="choose another path, or delete the file first",
        )
    )
