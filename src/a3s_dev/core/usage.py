"""CPU and memory per service (SPEC §10): sampled from /proc once per interval for every
service at once, never per request. The arithmetic is pure (`Usage.update`); the sampling is
`system.procfs.group_usage`."""

from __future__ import annotations

from dataclasses import dataclass, field

SAMPLE_EVERY = 2.0  # seconds between two passes over /proc


@dataclass(frozen=True)
class ServiceUsage:
    cpu: float  # percent of one core over the last interval
    rss: int  # resident bytes, the whole process group
    cpu_seconds: float  # CPU time used since the process started (its group, children included)


@dataclass
class Usage:
    """The last sample of each process group, and each service's figures from it."""

    ticks_per_second: int
    last: dict[int, tuple[float, int]] = field(default_factory=dict)  # pgid -> (when, ticks)
    figures: dict[str, ServiceUsage] = field(default_factory=dict)

    def update(self, now: float, groups: dict[str, int], sample: dict[int, tuple[int, int]]) -> None:
        """Take a sample (`group_usage` of `groups`: service -> pgid) taken at `now`."""
        figures: dict[str, ServiceUsage] = {}
        seen: dict[int, tuple[float, int]] = {}
        for name, pgid in groups.items():
            if pgid not in sample:
                continue
            ticks, rss = sample[pgid]
            then = self.last.get(pgid)
            cpu = 0.0
            if then is not None and now > then[0]:
                cpu = max(0.0, (ticks - then[1]) / self.ticks_per_second / (now - then[0]) * 100)
            figures[name] = ServiceUsage(round(cpu, 1), rss, ticks / self.ticks_per_second)
            seen[pgid] = (now, ticks)
        self.last, self.figures = seen, figures
