"""UCF101's official train/test split lists (``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt``).

Errors are :class:`~gaf.errors.AnnotationError` naming the file and the line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from gaf.data.annotation_core import parse_int, read_text
from gaf.errors import AnnotationError

__all__ = ["read_ucf101_split"]


def read_ucf101_split(folder: str | os.PathLike[str], split: int = 1
                      ) -> tuple[list[str], list[tuple[str, int]], list[tuple[str, int]]]:
    """UCF101's official split lists: ``(classes, train, test)``.

    ``classInd.txt`` (``<1-based id> <Class>``), ``trainlist0N.txt`` (``path
    id``), ``testlist0N.txt`` (``path``; label from the class folder). Returns
    0-based label ids; every path's folder must name its class.
    """
    root = Path(folder)

    def lines(name: str) -> Iterable[tuple[str, int, list[str]]]:
        f = root / name
        for n, line in enumerate(read_text(f).splitlines(), 1):
            if line.strip():
                yield f"{f}: line {n}", n, line.split()

    classes: list[str] = []
    for where, _, parts in lines("classInd.txt"):
        if len(parts) != 2 or parts[0] != str(len(classes) + 1):
            raise AnnotationError(f"{where}: expected '{len(classes) + 1} <ClassName>', got {' '.join(parts)!r}")
        classes.append(parts[1])
    index = {name: i for i, name in enumerate(classes)}

    def clip(where: str, parts: list[str], with_label: bool) -> tuple[str, int]:
        if len(parts) != (2 if with_label else 1):
            raise AnnotationError(f"{where}: expected '<Class>/<clip>.avi{' <id>' if with_label else ''}', "
                                  f"got {' '.join(parts)!r}")
        path = parts[0]
        folder_name = path.split("/")[0]
        if path.startswith("/") or ".." in path.split("/") or folder_name not in index or "/" not in path:
            raise AnnotationError(f"{where}: path: {path!r} is not '<Class>/<clip>' with a class of classInd.txt")
        label = index[folder_name]
        if with_label and parse_int(parts[1]) != label + 1:
            raise AnnotationError(f"{where}: label: {parts[1]} but the folder {folder_name!r} is class {label + 1}")
        return path, label

    train = [clip(w, parts, True) for w, _, parts in lines(f"trainlist0{split}.txt")]
    test = [clip(w, parts, False) for w, _, parts in lines(f"testlist0{split}.txt")]
    return classes, train, test

