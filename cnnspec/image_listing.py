"""Listing an image folder's classes and files, without reading an image: torch-free, so that
`validate --for train` checks what `train` will find (class folders, their counts, empty, odd or
linked ones) with the same rules as training's loader (`cnnspec/training/sources.py`)."""

from __future__ import annotations

import array
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cnnspec.errors import DataError, Diagnostic
from cnnspec.terminal import printable

# At most this many problems of one kind are listed in one error (a folder can hold millions of files).
MAX_LISTED = 20


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, words in (
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return words
    return "a special file"


# torchvision's image extensions (ImageFolder), matched without regard to case.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _shown(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 as \\xNN escapes, control characters escaped."""
    return printable(os.fsencode(name).decode("utf-8", "backslashreplace"))


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.listdir gives undecodable bytes as lone surrogates
        return False
    return True


FileId = tuple[int, int]  # (st_dev, st_ino): one file or folder, whatever links or hard links lead to it


@dataclass
class Identities:
    """What `image_files` listed, by identity: (st_dev, st_ino) of each image, in the order of its
    items (two numbers an image in a compact array: a folder can hold millions), and of each folder read."""

    files: array.array[int] = field(default_factory=lambda: array.array("Q"))
    folders: dict[FileId, str] = field(default_factory=dict)

    def file(self, index: int) -> FileId:
        return (self.files[2 * index], self.files[2 * index + 1])


def image_files(
    folder: Path, root: Path | None = None, identities: Identities | None = None
) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names (sub-folder names, sorted) and (file, class index) pairs of an image folder.

    Only regular files with an image extension are listed; symbolic links are followed when
    they lead to somewhere inside `root` (default: `folder`), and no folder is read twice.
    Refused (one DataError listing every case, up to MAX_LISTED): a class folder with no images
    (counted after the refusals below: a folder of broken links is empty), one whose name is
    not valid UTF-8 (class names are stored as UTF-8 text), a link out of `root`, a broken link,
    a link back to a folder already read (a loop, or a second path to a class), and a FIFO,
    socket or device with an image extension (reading one would block or never end).
    `identities`, when given, receives the identity of every image and folder listed (from the
    stat each one gets anyway), for `refuse_shared_images`.
    """
    real_root = os.path.realpath(root if root is not None else folder)
    problems: list[Diagnostic] = []

    def problem(path: str, message: str, hint: str) -> None:
        if len(problems) < MAX_LISTED:
            problems.append(Diagnostic(f"{_shown(path)}: {message}", hint=hint))

    def follow(path: str) -> os.stat_result | None:
        """stat() of `path`, following a link only into `root`; None (and a problem) otherwise."""
        if os.path.islink(path):
            target = os.path.realpath(path)
            if os.path.commonpath([real_root, target]) != real_root:
                problem(
                    path,
                    f"a symbolic link to {_shown(target)}, outside the dataset root {_shown(real_root)}",
                    "cnnspec follows links only inside the dataset root: copy the files in, or point"
                    " data.dataset.root at a folder that holds them",
                )
                return None
        try:
            return os.stat(path)
        except OSError as exc:
            problem(path, f"cannot be read ({exc.strerror or exc})", "remove the broken link or file")
            return None

    if not os.path.isdir(folder):
        raise DataError(f"{printable(folder)}: no such folder", hint="put each class's images in ROOT/train/CLASS/")
    seen: set[FileId] = set()
    top = os.stat(folder)
    seen.add((top.st_dev, top.st_ino))
    if identities is not None:
        identities.folders[(top.st_dev, top.st_ino)] = str(folder)
    classes: list[tuple[str, str]] = []  # (name, path)
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        info = follow(path)
        if info is None or not stat.S_ISDIR(info.st_mode):
            continue
        if not _utf8(name):
            problem(
                path,
                "a class folder whose name is not valid UTF-8",
                "rename the folder: class names are stored (run.json, the ONNX metadata) as UTF-8 text",
            )
            continue
        key = (info.st_dev, info.st_ino)
        if key in seen:
            problem(path, "a second path to a class folder already read", "remove the link")
            continue
        seen.add(key)
        if identities is not None:
            identities.folders[key] = path
        classes.append((name, path))
    items: list[tuple[str, int]] = []
    first_item: dict[FileId, int] = {}  # each image file's first place in items, whatever path led to it
    for index, (_, class_path) in enumerate(classes):
        stack = [class_path]
        while stack:
            current = stack.pop()
            try:
                names = sorted(os.listdir(current))
            except OSError as exc:
                problem(current, f"cannot be listed ({exc.strerror or exc})", "make it readable, or remove it")
                continue
            subfolders = []
            for name in names:
                path = os.path.join(current, name)
                image = name.lower().endswith(IMAGE_EXTENSIONS)
                if not image and not os.path.isdir(path):
                    continue  # not an image (a broken link ends here too): ignored, like torchvision does
                info = follow(path)
                if info is None:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    key = (info.st_dev, info.st_ino)
                    if key in seen:
                        problem(
                            path,
                            f"leads to {_shown(os.path.realpath(path))}, a folder already read"
                            " (a symbolic link loop, or a second path to the same images)",
                            "remove the link: every image must have one path and one class",
                        )
                        continue
                    seen.add(key)
                    if identities is not None:
                        identities.folders[key] = path
                    subfolders.append(path)
                elif not stat.S_ISREG(info.st_mode):
                    problem(path, f"{file_kind(info.st_mode)}, not a regular file", "remove it from the image folder")
                else:
                    key = (info.st_dev, info.st_ino)
                    earlier = first_item.setdefault(key, len(items))
                    if earlier != len(items) and items[earlier][1] != index:
                        # one file (a hard or symbolic link) with two labels: whichever it trains as is wrong
                        problem(
                            path,
                            f"the same file as {_shown(items[earlier][0])}, in the class "
                            f"{_shown(classes[items[earlier][1]][0])}: one image with two labels",
                            "remove one of the two: every image must have one class",
                        )
                        continue
                    items.append((path, index))
                    if identities is not None:
                        identities.files.extend((info.st_dev, info.st_ino))
            stack.extend(reversed(subfolders))  # depth first, in name order
        if not items or items[-1][1] != index:
            # A class the model would have an output for and never see an image of (torchvision's
            # ImageFolder refuses it too): refused rather than dropped, which would renumber the others.
            problem(
                class_path,
                "a class folder with no images",
                f"put its images in it ({' '.join(IMAGE_EXTENSIONS)}), or remove the folder",
            )
    if problems:
        raise DataError(problems)
    return [name for name, _ in classes], items
