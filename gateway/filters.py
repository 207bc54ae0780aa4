"""Fix filter chain (定位点过滤): small named steps, each free to drop a fix and say why.

Modelled on Traccar's ``FilterHandler`` but as an ordered list of functions with explicit
reasons, per-terminal state and per-terminal config overrides. Order (cheap and stateless
first)::

    invalid → zero → future → outdated → max_speed → accuracy → duplicate → jump → min_period

Late (out-of-order) fixes — older than the newest fix accepted for the terminal — are still
checked by the stateless steps and by ``duplicate``, but **skip ``jump`` and ``min_period``**:
comparing them with a newer fix would reject good data, and finding their true time
neighbours would need the history the database holds. They are accepted (and so stored), but
never move the terminal's "latest" state. Traccar does the same for events.

The duplicate step remembers a bounded set of recent accepted times per terminal (not only the
last fix), so a replayed batch or a blind-area resend (盲区补报) interleaved with live fixes is
still recognised.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from fleet.fix import Fix
from geo.geodesy import haversine_m


@dataclass(frozen=True, slots=True)
class FilterConfig:
    """Filter settings; ``None`` (or 0 for ``min_period_s``) switches a step off."""

    invalid: bool = True
    zero: bool = True
    duplicate: bool = True
    duplicate_window: int = 512  # recent accepted times remembered per terminal
    future_s: float | None = 300.0  # reject fixes more than 5 min ahead of now
    max_age_s: float | None = None  # reject fixes older than this ("outdated"); off
    max_speed_kmh: float | None = None  # reported speed limit; off
    jump_speed_kmh: float | None = 300.0  # implied speed from the previous accepted fix
    jump_min_distance_m: float = 100.0  # smaller moves never count as jumps (GNSS noise)
    jump_reset_after: int = 3  # after this many jump rejections in a row, accept and re-anchor
    max_hdop: float | None = None  # accuracy; off
    min_period_s: float = 0.0  # minimum seconds between accepted fixes; off


@dataclass(slots=True)
class _TerminalState:
    latest: Fix | None = None
    recent: OrderedDict[datetime, None] = field(default_factory=OrderedDict)
    jump_rejections: int = 0


@dataclass(frozen=True, slots=True)
class _Context:
    fix: Fix
    config: FilterConfig
    state: _TerminalState
    now: datetime

    @property
    def is_late(self) -> bool:
        latest = self.state.latest
        return latest is not None and self.fix.time < latest.time


Step = Callable[[_Context], bool]  # True = drop


def _invalid(c: _Context) -> bool:
    """Not positioned (未定位) or coordinates outside WGS-84 ranges."""
    f = c.fix
    return c.config.invalid and (not f.valid or not (-90 <= f.lat <= 90 and -180 <= f.lon <= 180))


def _zero(c: _Context) -> bool:
    """Exactly (0, 0): a receiver without fix that still reports."""
    return c.config.zero and c.fix.lat == 0 and c.fix.lon == 0


def _future(c: _Context) -> bool:
    limit = c.config.future_s
    return limit is not None and (c.fix.time - c.now).total_seconds() > limit


def _outdated(c: _Context) -> bool:
    limit = c.config.max_age_s
    return limit is not None and (c.now - c.fix.time).total_seconds() > limit


def _max_speed(c: _Context) -> bool:
    limit = c.config.max_speed_kmh
    return limit is not None and c.fix.speed_kmh > limit


def _accuracy(c: _Context) -> bool:
    limit = c.config.max_hdop
    return limit is not None and c.fix.hdop is not None and c.fix.hdop > limit


def _duplicate(c: _Context) -> bool:
    return c.config.duplicate and c.fix.time in c.state.recent


def _jump(c: _Context) -> bool:
    """Implied speed from the previous accepted fix too high (漂移点)."""
    limit, prev = c.config.jump_speed_kmh, c.state.latest
    if limit is None or prev is None or c.is_late:
        return False
    dt = (c.fix.time - prev.time).total_seconds()
    dist = haversine_m(prev.lat, prev.lon, c.fix.lat, c.fix.lon)
    if dt <= 0 or dist < c.config.jump_min_distance_m:
        return False
    if dist / dt * 3.6 <= limit:
        return False
    # After jump_reset_after rejections in a row the anchor itself was probably the bad point:
    # accept this one and re-anchor on it.
    return c.state.jump_rejections < c.config.jump_reset_after


def _min_period(c: _Context) -> bool:
    prev = c.state.latest
    if c.config.min_period_s <= 0 or prev is None or c.is_late:
        return False
    return (c.fix.time - prev.time).total_seconds() < c.config.min_period_s


STEPS: tuple[tuple[str, Step], ...] = (
    ("invalid", _invalid),
    ("zero", _zero),
    ("future", _future),
    ("outdated", _outdated),
    ("max_speed", _max_speed),
    ("accuracy", _accuracy),
    ("duplicate", _duplicate),
    ("jump", _jump),
    ("min_period", _min_period),
)
REASONS: tuple[str, ...] = tuple(name for name, _ in STEPS)


def _first_reason(fix: Fix, config: FilterConfig, state: _TerminalState,
                  now: datetime) -> str | None:
    """The name of the first step of ``STEPS`` that drops ``fix``, or ``None``.

    The steps above, inlined in the same order with the same tests: building a ``_Context``
    and calling nine functions per fix was most of the chain's cost on the ingest hot path.
    Keep the two in step (tests/gateway/test_gateway_filters.py covers every reason).
    """
    t, lat, lon = fix.time, fix.lat, fix.lon
    if config.invalid and (not fix.valid or not (-90 <= lat <= 90 and -180 <= lon <= 180)):
        return "invalid"
    if config.zero and lat == 0 and lon == 0:
        return "zero"
    limit = config.future_s
    if limit is not None and (t - now).total_seconds() > limit:
        return "future"
    limit = config.max_age_s
    if limit is not None and (now - t).total_seconds() > limit:
        return "outdated"
    limit = config.max_speed_kmh
    if limit is not None and fix.speed_kmh > limit:
        return "max_speed"
    limit = config.max_hdop
    if limit is not None and fix.hdop is not None and fix.hdop > limit:
        return "accuracy"
    if config.duplicate and t in state.recent:
        return "duplicate"
    prev = state.latest
    if prev is None or t < prev.time:  # no anchor, or late: neither jump nor min_period
        return None
    limit = config.jump_speed_kmh
    if limit is not None:
        dt = (t - prev.time).total_seconds()
        dist = haversine_m(prev.lat, prev.lon, lat, lon)
        # written as negations of _jump's early returns so NaN behaves identically
        if (not (dt <= 0 or dist < config.jump_min_distance_m)
                and not (dist / dt * 3.6 <= limit)
                and state.jump_rejections < config.jump_reset_after):
            return "jump"
    if config.min_period_s > 0 and (t - prev.time).total_seconds() < config.min_period_s:
        return "min_period"
    return None


class FilterChain:
    """Apply the steps in order; keep per-terminal state and counters.

    ``overrides`` maps a terminal id to a config used instead of ``config`` for it
    (per-terminal overrides, as Traccar's device-scoped keys).
    """

    def __init__(
        self,
        config: FilterConfig | None = None,
        overrides: dict[str, FilterConfig] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config or FilterConfig()
        self.overrides = dict(overrides or {})
        self.clock = clock or (lambda: datetime.now(UTC))
        self.accepted = 0
        self.counts: Counter[str] = Counter()
        self.counts_by_terminal: dict[str, Counter[str]] = {}
        self._state: dict[str, _TerminalState] = {}

    def config_for(self, terminal_id: str) -> FilterConfig:
        return self.overrides.get(terminal_id, self.config)

    def apply(self, fix: Fix, now: datetime | None = None) -> tuple[bool, str | None]:
        """Return ``(True, None)`` if the fix passes, else ``(False, reason)``."""
        tid = fix.terminal_id
        state = self._state.get(tid)
        if state is None:
            state = self._state[tid] = _TerminalState()
        config = self.config_for(tid)
        reason = _first_reason(fix, config, state, now or self.clock())
        if reason is not None:
            self._count(tid, reason)
            if reason == "jump":
                state.jump_rejections += 1
            return False, reason
        # _remember, inlined
        recent = state.recent
        recent[fix.time] = None
        window = max(config.duplicate_window, 1)
        while len(recent) > window:
            recent.popitem(last=False)
        latest = state.latest
        if latest is None or not fix.time < latest.time:
            state.latest = fix
            state.jump_rejections = 0
        self.accepted += 1
        return True, None

    def filter(self, fixes: list[Fix], now: datetime | None = None) -> list[Fix]:
        """The accepted subset of ``fixes``, in order."""
        return [f for f in fixes if self.apply(f, now)[0]]

    def latest(self, terminal_id: str) -> Fix | None:
        """The newest accepted fix of a terminal (late fixes never replace it)."""
        state = self._state.get(terminal_id)
        return state.latest if state else None

    def reset(self, terminal_id: str | None = None) -> None:
        """Forget per-terminal state (all terminals when ``None``)."""
        if terminal_id is None:
            self._state.clear()
        else:
            self._state.pop(terminal_id, None)

    def _count(self, terminal_id: str, reason: str) -> None:
        self.counts[reason] += 1
        self.counts_by_terminal.setdefault(terminal_id, Counter())[reason] += 1

    def forget(self, fixes: Iterable[Fix]) -> None:
        """Un-remember accepted fixes that could not be handed on (the sink failed), so the
        terminal's resend is accepted again instead of being dropped as a duplicate."""
        for fix in fixes:
            state = self._state.get(fix.terminal_id)
            if state is not None:
                state.recent.pop(fix.time, None)

    def _remember(self, ctx: _Context) -> None:
        state, fix = ctx.state, ctx.fix
        state.recent[fix.time] = None
        while len(state.recent) > max(ctx.config.duplicate_window, 1):
            state.recent.popitem(last=False)
        if not ctx.is_late:
            state.latest = fix
            state.jump_rejections = 0


def with_overrides(base: FilterConfig, **changes: object) -> FilterConfig:
    """A copy of ``base`` with some fields changed (helper for per-terminal overrides)."""
    return replace(base, **changes)  # type: ignore[arg-type]
