"""What every fault is, and the heal order a dying run leaves for the healer."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from queuebench.engine.results import write_atomically


class Fault(Protocol):
    kind: str  # "broker-stop", "broker-kill", "network-cut", ..., as a workload names it

    def inject(self) -> None: ...

    def heal(self) -> None: ...

    def heal_order(self) -> HealOrder:
        """What the healer must undo should the run die while this fault is in force."""
        ...


@dataclass
class HealOrder:
    """Everything in force that a healer undoes: services to start again, a Toxiproxy to reset,
    processes to continue, brokers to put back in their own durability mode."""

    services: list[str] = field(default_factory=list)
    toxiproxy: str | None = None  # its API address: POST /reset enables every proxy, drops toxics
    paused: list[int] = field(default_factory=list)
    durability: list[str] = field(default_factory=list)  # services/durability.py: reset

    def __bool__(self) -> bool:
        return bool(self.services or self.toxiproxy or self.paused or self.durability)

    def save(self, path: Path) -> None:
        write_atomically(path, json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> HealOrder:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return cls()
