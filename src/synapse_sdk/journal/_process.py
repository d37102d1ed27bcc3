"""Who owns a run: enough to tell later whether that process is still alive."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Owner:
    host: str
    pid: int
    started: str | None  # the process's start time, so a reused pid is not taken for it

    @classmethod
    def current(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), _start_time(os.getpid()))

    def is_alive(self) -> bool:
        """False only when this host can tell the process is gone (another host's: alive)."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        started = _start_time(self.pid)
        if started is not None and self.started is not None and started != self.started:
            return False  # the pid now belongs to another process
        return not _is_zombie(self.pid)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f'/proc/{pid}/stat', encoding='ascii', errors='replace') as stat:
            text = stat.read()
    except OSError:
        return None
    return text.rpartition(')')[2].split()  # fields after the command name


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None


def _is_zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] == 'Z'  # type: ignore[index]
