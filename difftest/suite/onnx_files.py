"""Bare ONNX files as cases (``difftest run model.onnx``, or a folder of them): no PyTorch model, so each file
runs runtime against runtime (see ``worker.bare_onnx``). ``light_*.onnx`` files belong to the ONNX test format
(``onnx_tests``) and are left to it."""

from __future__ import annotations

from pathlib import Path


def is_bare(path: Path) -> bool:
    return path.is_file() and path.suffix == ".onnx" and not path.name.startswith("light_")


def find(folder: Path) -> list[Path]:
    """The bare ONNX files directly in ``folder``, by name."""
    return sorted(p for p in folder.glob("*.onnx") if is_bare(p))


def case_defs(location: Path) -> list:
    """One case per bare ONNX file: ``location`` itself, or each one in the folder."""
    from .cases import Case, case

    files = [location] if location.is_file() else find(location)
    definitions = []
    for path in files:

        def factory(path: Path = path) -> Case:
            return Case(None, (), onnx=str(path))

        factory.__doc__ = f"ONNX file: {path} (runtime against runtime; no PyTorch model)"
        definitions.append(case(factory, name=path.stem, tags=["onnx-file"]))
    return definitions
