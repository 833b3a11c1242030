"""Find suite files and the cases they declare.

A target is a suite file, a folder of them (``*.py`` not starting with ``_``),
or ``file.py::case``; an ONNX file, or a folder of ONNX files or ONNX test folders. Importing a suite file collects
the factories its
:func:`difftest.case` decorators registered.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Callable

from ..errors import UsageError
from . import cases as case_module
from .cases import CaseDef, CaseRef

_loaded: dict[tuple[str, float], list[CaseDef]] = {}
# Folders of imported suite files, put on sys.path so a suite can import the modules beside it (helpers,
# configs, other suites), as pytest does for test files. Not a change a case made (see ``process_state``).
SUITE_FOLDERS: list[str] = []


class SuiteLoadError(UsageError):
    """A suite file could not be imported."""


def suite_files(target: str) -> tuple[list[Path], str | None]:
    """Resolve one target into suite files (or ONNX test folders) and an optional case name."""
    from . import onnx_files, onnx_tests

    path_text, _, name = target.partition("::")
    path = Path(path_text)
    if not path.exists():
        raise UsageError(f"target {target!r}: no such file or folder {path_text!r}")
    if onnx_tests.is_test_dir(path):
        return [path.parent], path.name
    if path.is_dir():
        files = sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
        if not files and (onnx_tests.find(path) or onnx_files.find(path)):
            return [path], name or None
        if name:
            raise UsageError(f"target {target!r}: '::case' needs a suite file, not a folder")
        if not files:
            raise UsageError(
                f"target {target!r}: the folder holds no suite files (*.py), no ONNX files (*.onnx) "
                "and no ONNX test folders (model.onnx + test_data_set_*/)"
            )
        return files, None
    if path.suffix == ".onnx":
        return [path], name or None
    if path.suffix != ".py":
        raise UsageError(
            f"target {target!r}: a target is a suite file (.py), an ONNX file (.onnx), a folder of "
            "either, or an ONNX test folder"
        )
    return [path], name or None


def _shadowed_module(path: Path) -> str | None:
    """Where the module that a suite file named like it would hide lives (None when no other module has its
    name): ``transformers.py`` in a suite folder hides the transformers package."""
    import importlib.machinery

    if path.stem in sys.builtin_module_names:
        return "built into Python"
    # Other suite folders are not "installed": two suites of one name in two folders is the duplicate-name check's
    others = [
        entry for entry in sys.path if entry and entry not in SUITE_FOLDERS and Path(entry).resolve() != path.parent
    ]
    try:
        spec = importlib.machinery.PathFinder.find_spec(path.stem, others)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin in (None, str(path)):
        return None
    return spec.origin


def load_suite(path: Path) -> list[CaseDef]:
    """Import a suite file and return its case definitions (cached per mtime)."""
    path = path.resolve()
    key = (str(path), path.stat().st_mtime)
    if key in _loaded:
        return _loaded[key]
    if path.is_dir() or path.suffix == ".onnx":  # a folder of ONNX test data or ONNX files, or one ONNX file
        from . import onnx_files, onnx_tests

        with case_module.collecting(None):
            _loaded[key] = (onnx_tests.case_defs(path) if path.is_dir() else []) + onnx_files.case_defs(path)
        return _loaded[key]
    folder = str(path.parent)
    shadowed = _shadowed_module(path)
    if shadowed:
        raise SuiteLoadError(
            f"{path}: this suite has the name of the installed module {path.stem!r} ({shadowed}). difftest puts a "
            f"suite's folder first on sys.path (so suites can import their neighbours), so `import {path.stem}` "
            f"would find this file instead, in every case of the run. Rename the file (e.g. "
            f"{path.with_name('zoo_' + path.name).name})."
        )
    if folder not in SUITE_FOLDERS:
        SUITE_FOLDERS.append(folder)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    module_name = "difftest_suite_" + path.stem + "_" + hashlib.sha1(str(path).encode()).hexdigest()[:8]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SuiteLoadError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    collected: list[CaseDef] = []
    sys.modules[module_name] = module
    try:
        with case_module.collecting(collected):
            spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        raise SuiteLoadError(
            f"{path}:{exc.lineno}: syntax error in suite file: {exc.msg}. Fix the file or leave it out of the targets."
        ) from None
    except Exception as exc:  # a suite's own import failure is a user error
        sys.modules.pop(module_name, None)
        where = _innermost_frame_in(path, exc)
        raise SuiteLoadError(
            f"{path}{where}: suite file failed to import: {type(exc).__name__}: {exc}. "
            "Fix the file (or install what it imports) or leave it out of the targets."
        ) from None
    # A suite that imports another suite file runs that file's decorators too: those cases belong to that file.
    collected = [d for d in collected if _declared_here(d, module_name, path)]
    names = [d.name for d in collected]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SuiteLoadError(f"{path}: case name(s) declared twice: {', '.join(duplicates)}")
    _loaded[key] = collected
    return collected


def collect(
    targets: list[str], keyword: str | None = None, progress: Callable[[int], None] | None = None
) -> list[tuple[CaseRef, CaseDef]]:
    """All cases the targets name, in file then declaration order, filtered by ``-k``. ``progress`` is told the
    count found so far after each file (a run starts its other workers once there is work for them)."""
    found: list[tuple[CaseRef, CaseDef]] = []
    seen: set[str] = set()
    stems: dict[str, Path] = {}
    for target in targets:
        files, only = suite_files(target)
        for path in files:
            resolved = path.resolve()
            other = stems.setdefault(resolved.stem, resolved)
            if other != resolved:
                raise UsageError(
                    f"two suite files share the name {resolved.stem!r}: {other} and {resolved}. Case ids are "
                    f"'<file name>::<case>', so their cases would collide and one would replace the other; rename "
                    "one of the files or run them separately"
                )
            definitions = load_suite(path)
            if only is not None and only not in {d.name for d in definitions}:
                raise UsageError(
                    f"target {target!r}: {path} declares no case named {only!r} "
                    f"(run `difftest list {path}` to see its cases)"
                )
            for definition in definitions:
                if only is not None and definition.name != only:
                    continue
                ref = CaseRef(str(path.resolve()), definition.name)
                if keyword and not matches_keyword(ref, keyword):
                    continue
                if ref.id in seen:
                    continue
                seen.add(ref.id)
                found.append((ref, definition))
            if progress is not None:
                progress(len(found))
    return found


def _declared_here(definition: CaseDef, module_name: str, path: Path) -> bool:
    """Was the case declared by this suite file (or by a library helper it called, like ``onnx_tests``), rather
    than by another suite file it imported?"""
    if definition.module in (None, module_name):
        return True
    module = sys.modules.get(definition.module)
    origin = getattr(module, "__file__", None)
    if not origin:
        return True
    origin_path = Path(origin).resolve()
    library = Path(__file__).resolve().parent
    if library in origin_path.parents or "site-packages" in origin_path.parts or "dist-packages" in origin_path.parts:
        return True
    return origin_path == path


def matches_keyword(ref: CaseRef, keyword: str) -> bool:
    """``-k``: a substring of the case's name (case-insensitive); with ``::`` in it, of the whole id
    (``-k models::vit``). The file's name alone never selects: ``-k dyn`` in dyn.py means cases named *dyn*."""
    target = ref.id if "::" in keyword else ref.name
    return keyword.lower() in target.lower()


def find_definition(ref: CaseRef) -> CaseDef:
    """Load the suite file behind ``ref`` and return its definition (worker side)."""
    for definition in load_suite(Path(ref.path)):
        if definition.name == ref.name:
            return definition
    raise SuiteLoadError(f"{ref.path}: no case named {ref.name!r} (was the file changed during the run?)")


def _innermost_frame_in(path: Path, exc: BaseException) -> str:
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path:
            line = frame.lineno
    return f":{line}" if line else ""
