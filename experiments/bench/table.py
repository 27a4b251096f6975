"""Result tables of the benches, printed row by row as aligned text or as GitHub markdown.

Every bench builds its tables with :class:`Table` and prints them with ``--markdown`` or
without; the rows stream as they are measured (a long bench shows its progress), so the columns
of the plain form are as wide as their headers (or ``width``) and a longer cell widens its row only.
With ``--markdown`` a bench first prints :func:`provenance`, the line a results page quotes
under its table: the command, commit, torch, threads and machine.

    t = Table(["n", "χ", "ms / token"], markdown=args.markdown)
    t.row(16, 32, f"{ms:.2f}")      # prints the header first, then the row
"""
from __future__ import annotations

import os
import platform
import sys
import time
from typing import List, Optional, Sequence, Union

import torch


class Table:
    """One table: ``columns`` headers, rows of cells (anything ``str`` formats), printed as they come.

    ``markdown``: ``| a | b |`` rows under a ``|---|`` rule; otherwise columns padded to
    ``max(len(header), width)`` (``width``: one for all columns, or one per column) and separated
    by two spaces. ``title``: a line printed before the
    header (a blank line before it when something was printed already). ``out``: a file-like
    object (default ``sys.stdout``). ``rows`` keeps every row's cells as strings.
    """

    def __init__(self, columns: Sequence[str], markdown: bool = False, title: Optional[str] = None,
                 width: Union[int, Sequence[int]] = 0, out=None):
        if not columns:
            raise ValueError("a table needs at least one column")
        self.columns = [str(c) for c in columns]
        widths = [width] * len(self.columns) if isinstance(width, int) else list(width)
        if len(widths) != len(self.columns):
            raise ValueError(f"{len(self.columns)} columns but {len(widths)} widths")
        self.markdown = markdown
        self.title = title
        self.widths = [max(len(c), w) for c, w in zip(self.columns, widths)]
        self.out = out
        self.rows: List[List[str]] = []
        self._printed_header = False

    def _print(self, line: str) -> None:
        print(line, file=self.out or sys.stdout, flush=True)

    def _line(self, cells: Sequence[str]) -> str:
        if self.markdown:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
        return "  ".join(c.ljust(w) for c, w in zip(cells, self.widths)).rstrip()

    def header(self) -> None:
        """Print the title and header (``row`` does it before the first row)."""
        if self._printed_header:
            return
        self._printed_header = True
        if self.title:
            self._print("")
            self._print(self.title)
        if self.markdown:
            self._print("")  # a markdown table must not continue a paragraph
        self._print(self._line(self.columns))
        self._print("|" + "---|" * len(self.columns) if self.markdown
                    else "  ".join("-" * w for w in self.widths))

    def row(self, *cells) -> List[str]:
        """Print one row (its cells formatted by ``str``); returns them."""
        if len(cells) != len(self.columns):
            raise ValueError(f"a row of {len(self.columns)} columns ({', '.join(self.columns)}) "
                             f"got {len(cells)} cells")
        self.header()
        text = [str(c) for c in cells]
        self.rows.append(text)
        self._print(self._line(text))
        return text


def provenance(command: Optional[str] = None) -> str:
    """``command · commit · torch · threads · machine · date``: where a table's numbers come from.

    ``command`` defaults to this process's command line, as ``qlam ...`` when run by the CLI.
    """
    from qlam_tn.experiments import runfolder

    env = runfolder.environment(torch.device("cpu"))
    if command is None:
        command = " ".join([_program(), *sys.argv[1:]])
    commit = env.get("git_commit")
    commit = "commit ?" if not commit else f"commit {commit[:7]}" + (" (modified)" if env.get("git_dirty") else "")
    threads = env["torch_threads"]
    return (f"`{command}` · {commit} · torch {env['torch']} · {threads} thread{'s' * (threads != 1)} · "
            f"{env['cpu_count']} × {_cpu_model()} · {time.strftime('%Y-%m-%d')}")


def _program() -> str:
    """How this process was started: ``qlam``, ``python -m module`` or ``python script``."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "python"
    if os.path.basename(argv0) == "qlam":
        return "qlam"
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return f"python -m {spec.name}" if spec is not None else f"python {argv0}"


def _cpu_model() -> str:
    """The CPU's model name (Linux's ``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
