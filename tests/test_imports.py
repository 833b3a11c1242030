import subprocess
import sys

HEAVY = ("torch", "onnxruntime", "onnx", "polars")


def _imported_after(code: str) -> list[str]:
    script = f"{code}\nimport sys\nprint('LOADED:' + ' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return out.stdout.rsplit("LOADED:", 1)[1].split()


def test_import_difftest_is_light():
    assert _imported_after("import difftest") == []


def test_help_is_light():
    code = "from difftest.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert _imported_after(code) == []
    assert _imported_after("from difftest.cli import main\nmain(['run', '--help'])") == []
