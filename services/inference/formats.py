"""Which model format a version directory holds, and a fingerprint of its files (no TF here).

Two formats, as TensorFlow Serving and Triton lay them out: ``model.keras`` (Keras 3's file) and
a SavedModel (``saved_model.pb`` beside ``variables/``, what ``tf.saved_model.save`` and Keras'
``model.export()`` write). A directory holds exactly one; both or neither is the version's
error, recorded in its status like any other load failure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class FormatError(Exception):
    """The directory holds no model, or two: the version cannot be served as it is."""


@dataclass(frozen=True)
class Format:
    model_file: str  # the file that says which format this is (Triton's default_model_filename)
    platform: str  # what V2 metadata and Triton's model configuration call it


KERAS = Format("model.keras", "tensorflow_keras")
SAVEDMODEL = Format("saved_model.pb", "tensorflow_savedmodel")
FORMATS = (KERAS, SAVEDMODEL)
VARIABLES_DIR = "variables"


def detect(directory: Path) -> Format:
    try:
        present = set(os.listdir(directory))
    except OSError as error:
        raise FormatError(f"cannot read {directory}: {error.strerror or error}") from None
    found = [f for f in FORMATS if f.model_file in present and (directory / f.model_file).is_file()]
    if len(found) == 1:
        return found[0]
    names = " and ".join(f.model_file for f in FORMATS)
    if found:
        raise FormatError(f"{directory} holds both {names}; a version directory holds one model")
    raise FormatError(f"{directory} holds no model: expected {' or '.join(f.model_file for f in FORMATS)}")


def fingerprint(directory: Path) -> tuple[int, int] | None:
    """(total size, newest mtime) of the directory and the files a model reads: changes while a
    copy is under way, so the store waits until two scans agree. None: the directory is gone."""
    paths = [directory, *(directory / f.model_file for f in FORMATS)]
    variables = directory / VARIABLES_DIR
    try:
        if variables.is_dir():
            paths += [variables, *variables.iterdir()]
        stats = [directory.stat()]
    except OSError:
        return None
    for path in paths[1:]:
        try:
            stats.append(path.stat())
        except OSError:
            continue  # absent: a format the directory does not use
    return (sum(s.st_size for s in stats), max(s.st_mtime_ns for s in stats))
