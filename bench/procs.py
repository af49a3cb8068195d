"""Child processes of a benchmark run: start, wait until listening, CPU time, stop."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Proc:
    """A process we started (in its own session), stopped by its own id."""

    def __init__(self, name: str, argv: Sequence[str], *, cwd: Optional[Path] = None,
                 log: Optional[Path] = None) -> None:
        self.name = name
        self.log = log
        out = open(log, "wb") if log else subprocess.DEVNULL
        self.popen = subprocess.Popen(list(argv), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        if log:
            out.close()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_listening(self, ports: Sequence[int], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for port in ports:
            while True:
                if self.popen.poll() is not None:
                    raise RuntimeError(f"{self.name} exited ({self.popen.returncode})"
                                       + self._tail())
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{self.name} not listening on {port} after "
                                           f"{timeout}s" + self._tail())
                    time.sleep(0.05)

    def _tail(self) -> str:
        if self.log and Path(self.log).exists():
            return ":\n" + Path(self.log).read_text(errors="replace")[-2000:]
        return ""

    def cpu_times(self) -> tuple[float, float]:
        """(user, system) seconds of this process and its descendants (alive now)."""
        return tree_cpu_times(self.pid)

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                # the group is the session this process leads: only what we started
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(5)


def _stat(pid: int) -> Optional[tuple[int, float, float]]:
    """(ppid, utime seconds, stime seconds) from /proc/<pid>/stat."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is state (field 3): ppid is field 4, utime 14, stime 15
    return int(fields[1]), int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def tree_cpu_times(root: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``root`` and all its descendants alive now.

    Split because the message log's fsyncs show up as system time."""
    stats: dict[int, tuple[int, float, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            s = _stat(int(entry))
            if s is not None:
                stats[int(entry)] = s
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    user = system = 0.0
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            user += stats[pid][1]
            system += stats[pid][2]
        todo.extend(children.get(pid, ()))
    return user, system


def python_argv(*args: str) -> list[str]:
    return [sys.executable, *args]


def free_port() -> int:
    from tunduk.server.devfed import free_port as fp
    return fp()
