"""The source a case comes from, as digests: its suite file and the user modules that file imports (found by reading
the imports, transitively, never by running them), or the files of an ONNX test folder.

``--resume`` keeps a finished case only while these digests are the ones it ran with: a case whose suite file or
helper module changed since is run again. Imports are resolved the way a suite's imports are (its own folder first,
then ``sys.path``); the standard library, site-packages and difftest itself are not user code and are left out.
Dynamic imports (``importlib.import_module(name)``) and data files read at import are not seen.
"""

from __future__ import annotations

import ast
import hashlib
import sys
import sysconfig
from pathlib import Path


def source_digests(path: str | Path) -> dict[str, str | None]:
    """{file: sha256 (None: unreadable)} of the suite file (or ONNX test folder) and every user module it imports."""
    root = Path(path).resolve()
    if root.is_dir():
        return {str(p): _digest(p) for p in sorted(root.rglob("*")) if p.is_file()}
    seen: dict[str, str | None] = {}
    stack = [root]
    while stack:
        file = stack.pop()
        if str(file) in seen:
            continue
        try:
            data = file.read_bytes()
        except OSError:
            seen[str(file)] = None
            continue
        seen[str(file)] = hashlib.sha256(data).hexdigest()
        for found in _imported_files(data, file, root.parent):
            if str(found) not in seen and _is_user_file(found):
                stack.append(found)
    return dict(sorted(seen.items()))


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _imported_files(data: bytes, file: Path, suite_folder: Path) -> list[Path]:
    try:
        tree = ast.parse(data)
    except (SyntaxError, ValueError):
        return []
    found: list[Path] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found += _module_files(alias.name, 0, file, suite_folder)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            found += _module_files(base, node.level, file, suite_folder)
            for alias in node.names:  # ``from pkg import module`` imports a module too
                if alias.name != "*":
                    found += _module_files(
                        f"{base}.{alias.name}" if base else alias.name, node.level, file, suite_folder
                    )
    return found


def _module_files(name: str, level: int, file: Path, suite_folder: Path) -> list[Path]:
    """The files ``import name`` (``level`` dots before it) would execute: each package's ``__init__.py`` on the
    way and the module itself, from the first place on the search path that has it."""
    parts = [p for p in name.split(".") if p]
    if level:
        base = file.parent
        for _ in range(level - 1):
            base = base.parent
        roots = [base]
    else:
        roots = [suite_folder, *(Path(p or ".").resolve() for p in sys.path if isinstance(p, str))]
    for root in roots:
        files: list[Path] = []
        here = root
        for index, part in enumerate(parts):
            package, module = here / part / "__init__.py", here / f"{part}.py"
            if package.is_file():
                files.append(package.resolve())
                here = here / part
            elif module.is_file() and index == len(parts) - 1:
                files.append(module.resolve())
            else:
                break
        else:
            if files:
                return files
        if level:
            return files
    return []


def _library_roots() -> tuple[str, ...]:
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.add(str(Path(__file__).resolve().parent.parent))  # difftest itself
    return tuple(str(Path(r).resolve()) for r in roots)


def _is_user_file(path: Path) -> bool:
    text = str(path)
    if "site-packages" in text or "dist-packages" in text:
        return False
    return not any(text.startswith(root + "/") for root in _library_roots())
