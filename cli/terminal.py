"""Job output made safe for a terminal, and the stream labels of ``logs``.

A job's output is written by the job: escape sequences in it (``ESC]0;title BEL``, ``ESC[31m``, a
cursor move over the line above) would otherwise act on the terminal of whoever reads it, an admin
included. So every C0 and C1 control character but newline and tab is shown as ``\\xNN`` unless the
reader asks for ``--raw``. A carriage return becomes a newline: progress bars (tqdm) stay readable,
and nothing can overwrite a line already shown.
"""

from __future__ import annotations

import re

CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
LINES = re.compile(r"[^\n]*\n|[^\n]+")
STDERR_LABEL = "stderr| "


def escape_controls(text: str) -> str:
    """``text`` with every control character but newline and tab made visible (``\\x1b``)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def shown(text: str, *, raw: bool = False) -> str:
    return text if raw else escape_controls(text)


class Labeller:
    """Puts ``label`` at the start of every line of a stream that arrives in arbitrary chunks."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.at_line_start = True

    def __call__(self, text: str) -> str:
        out = []
        for piece in LINES.findall(text):
            if self.at_line_start:
                out.append(self.label)
            out.append(piece)
            self.at_line_start = piece.endswith("\n")
        return "".join(out)
