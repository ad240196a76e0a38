"""The text progress bar of the CLI's `status --watch`, the demo and the bench."""

from typing import TextIO


def bar(done: int, total: int | None, width: int = 30) -> str:
    """`[####......] done/total`; question marks while the total is not known yet (targeting is
    still counting), a full bar when there is nothing to do."""
    if total is None:
        return f"[{'?' * width}] {done}/?"
    filled = min(width, width * done // total) if total > 0 else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def redraw(line: str, stream: TextIO) -> None:
    """Overwrite the terminal's current line with `line`."""
    # \033[K clears what a longer previous line left behind.
    print(f"\r{line}\033[K", end="", file=stream, flush=True)
