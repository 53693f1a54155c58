"""The error of a data stage left with no usable image: one line, naming the file that says why.

The folder source takes files by their extension; the align stage is the first to open them. When it, or
the prepare stage after it, keeps no image at all, going on would only fail later, further from the
cause: the stage stops (a :class:`~pipeline.stage.StageError`, printed without a traceback) and names
its reasons file, where each input's reason is listed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.stage import StageError


class NoUsableImagesError(StageError, ValueError):
    """No input of a stage gave a usable image; `reasons_file` lists why, input by input."""

    def __init__(
        self, listed: int, reasons_file: str | Path, reasons: Mapping[str, int] | None = None
    ) -> None:
        self.listed = listed
        self.reasons_file = Path(reasons_file)
        self.reasons = dict(reasons or {})
        counts = ", ".join(f"{count} {reason}" for reason, count in self.reasons.items())
        super().__init__(
            f"no usable image among the {listed} listed" + (f" ({counts})" if counts else "")
            + f"; reasons in {self.reasons_file}"
        )


def count_reasons(rows: Sequence[Mapping[str, str]], most: int = 3) -> dict[str, int]:
    """The `most` commonest ``reason`` values of skipped-file rows, with their counts."""
    return dict(Counter(row["reason"] for row in rows).most_common(most))
