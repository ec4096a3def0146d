"""The console sink: notifications as readable text on a stream (stdout by default) — the demo's default."""

from __future__ import annotations

import sys
from typing import TextIO

from monitor.alerts.outbox import Outgoing


class ConsoleSink:
    """Writes ``payload["text"]`` (rendered by `render.console_text`) followed by a blank line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def send(self, message: Outgoing) -> str | None:
        stream = self._stream or sys.stdout
        stream.write(f"{message.payload['text']}\n\n")
        stream.flush()
        return None
