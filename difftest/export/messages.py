"""The one line of an exporter's message that matters.

torch.onnx's dynamo exporter wraps every failure in the same boilerplate ("Failed to export the model with
torch.export. This is step 1/3 of exporting the model to ONNX. Next steps: …"), with the real exception under
"## Exception summary"; a traceback quoted in a message ends with the exception. :func:`headline` finds that
line, and the user's own source line where the message quotes one (a frame outside torch and site-packages).
The whole message stays recorded (the case row's ``export_error``, the tensors row's ``message``).
"""

from __future__ import annotations

import re

_SUMMARY = "## Exception summary"
_CLASS = re.compile(r"^<class '(?:[\w.]+\.)?(\w+)'>:\s*")
_FRAME = re.compile(r'File "([^"]+)", line (\d+)')
_BOILERPLATE = (
    "Failed to export the model with torch.export",
    "Failed to convert the exported program",
    "Failed to decompose the FX graph",
    "This is step",
    "Next steps",
    "- ",
    "(Refer to",
    "Traceback (most recent call last)",
)
LIMIT = 400


def headline(message: str | None, limit: int = LIMIT) -> str:
    """``Type: message`` of the exception that matters, on one line, and ``(at file:line)`` when the message quotes a
    frame of the user's code; the message itself when nothing better is found."""
    if not message:
        return ""
    lines = [line.rstrip() for line in message.splitlines()]
    found = None
    if _SUMMARY in message:
        after = lines[next(i for i, line in enumerate(lines) if line.strip() == _SUMMARY) + 1 :]
        found = next((line.strip() for line in after if line.strip()), None)
    if found is None:
        meaningful = [
            line.strip()
            for line in lines
            if line.strip() and not line.startswith(" ") and not line.strip().startswith(_BOILERPLATE)
        ]
        quoted = "Traceback (most recent call last)" in message
        # A quoted traceback ends with the exception; a plain message starts with it.
        found = (meaningful[-1] if quoted else meaningful[0]) if meaningful else lines[0].strip()
    found = _CLASS.sub(lambda m: f"{m.group(1)}: ", found)
    user = [
        f"{path}:{line}"
        for path, line in _FRAME.findall(message)
        if "site-packages" not in path
        and "/torch/" not in path
        and "/difftest/" not in path
        and not path.startswith("<")
    ]
    if user and user[-1] not in found:
        found += f" (at {user[-1]})"
    return found if len(found) <= limit else found[: limit - 2] + " …"
