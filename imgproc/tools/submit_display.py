"""What ``imgproc submit`` shows: a live bar per group on a terminal, else a line per record; the summary."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from .submit_records import Record, shown

#: Seconds without a plain line after which the groups still waiting are shown (a job queued
#: behind others, or on a queue no worker listens to, is otherwise silent).
QUIET = 30


class RateColumn(ProgressColumn):
    """Records ended per second since the bar started."""

    def render(self, task) -> Text:
        elapsed = task.elapsed or 0
        ended = task.fields.get("finished", 0) + task.fields.get("failed", 0)
        if elapsed < 0.5 or not ended:
            return Text("-/s")
        rate = ended / elapsed
        return Text(f"{rate:.1f}/s" if rate >= 1 else f"{rate:.2f}/s")


@dataclass
class _Group:
    total: int
    started: float
    finished: int = 0
    failed: int = 0
    task: Any = None
    running: dict[str, float] = field(default_factory=dict)  # record id -> its job's progress, 0-1


class Display:
    """Progress of each group (the uploads, each bulk): live bars on a terminal, else a line per record."""

    def __init__(self, console: Console):
        self.console = console
        self.lock = threading.Lock()
        self.groups: dict[str, _Group] = {}
        self.closed = False
        self.printed = time.monotonic()  # when the last plain line was printed
        self.progress = None
        if console.is_terminal:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("[green]{task.fields[finished]} done"),
                TextColumn("[red]{task.fields[failed]} failed"),
                RateColumn(),
                TimeElapsedColumn(),
                console=console,
            )
            self.progress.start()

    def add(self, name: str, total: int) -> None:
        with self.lock:
            group = self.groups[name] = _Group(total, time.monotonic())
            if self.progress:
                group.task = self.progress.add_task(name, total=total, finished=0, failed=0)

    def note(self, text: str) -> None:
        with self.lock:
            if self.closed:
                return
            if self.progress:
                self.progress.console.print(Text(text))
            else:
                self.printed = time.monotonic()
                print(text, flush=True)

    def moved(self, name: str, record_id: str, progress: int) -> None:
        """A job's progress (0-100) on the way: the bar moves by its share before the job ends."""
        with self.lock:
            if self.progress and not self.closed:
                group = self.groups[name]
                group.running[record_id] = progress / 100
                done = group.finished + group.failed
                self.progress.update(group.task, completed=done + sum(group.running.values()))

    def ended(self, name: str, record: Record) -> None:
        with self.lock:
            if self.closed:
                return
            group = self.groups[name]
            group.running.pop(record.record_id, None)
            if record.state == "finished":
                group.finished += 1
            else:
                group.failed += 1
            done = group.finished + group.failed
            if self.progress:
                self.progress.update(
                    group.task,
                    completed=done + sum(group.running.values()),
                    finished=group.finished,
                    failed=group.failed,
                )
                if record.state != "finished":
                    self.progress.console.print(Text(f"{shown(record.record_id)} {_outcome(record)}", "red"))
                return
            rate = done / max(time.monotonic() - group.started, 1e-3)
            self.printed = time.monotonic()
            print(
                f"[{name}: {done}/{group.total}] {shown(record.record_id)}  {_outcome(record)}  "
                f"({group.finished} done, {group.failed} failed, {rate:.1f}/s)",
                flush=True,
            )

    def tick(self) -> None:
        """In plain lines, a line per group still waiting when nothing was printed for ``QUIET`` seconds."""
        with self.lock:
            if self.progress or self.closed or time.monotonic() - self.printed < QUIET:
                return
            for name, group in self.groups.items():
                done = group.finished + group.failed
                if done < group.total:
                    waited = time.monotonic() - group.started
                    print(f"[{name}: {done}/{group.total}] waiting ({waited:.0f} s)", flush=True)
            self.printed = time.monotonic()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            if self.progress:
                self.progress.stop()


def _outcome(record: Record) -> str:
    seconds = f"{record.seconds:.1f} s  " if record.seconds is not None else ""
    return f"{record.state}  {seconds}{record.saved or shown(record.error)}"


def print_summary(records: list[Record], console: Console, out: Path, seconds: float) -> None:
    """One row per record (record, state, seconds, job id, file or error), then the counts."""
    header = ("record", "state", "seconds", "job", "file or error")
    rows = [
        (
            shown(r.record_id),
            r.state,
            f"{r.seconds:.1f}" if r.seconds is not None else "",
            r.job_id or "",
            str(r.saved) if r.saved else shown(r.error),
        )
        for r in records
    ]
    if console.is_terminal:
        table = Table(box=None, pad_edge=False)
        for name in header:
            table.add_column(name, overflow="fold")  # a path or an error in full, over several lines
        for row in rows:
            table.add_row(
                *(Text(cell, "red" if row[1] not in ("finished", "skipped") else "") for cell in row)
            )
        console.print(table)
    else:
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
        for row in [header, *rows]:
            print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    counts: dict[str, int] = {}
    for record in records:
        counts[record.state] = counts.get(record.state, 0) + 1
    parts = ", ".join(f"{n} {state}" for state, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    print(f"{parts} in {seconds:.1f} s; results in {out}/", flush=True)
