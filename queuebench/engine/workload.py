"""Workloads: what an experiment file in `experiments/` declares, checked and expanded into cases.

A file is YAML, validated here (an unknown key, a wrong type or a bad value is one UsageError
naming the file and the key). Where a key takes a list of values (`consumers: [1, 4]`,
`payload.format: [json, protobuf]`, `rate: [100, 200]`), the file is a sweep: one cell per
combination, like `pytest.mark.parametrize`. `--set KEY=VALUE` overrides any key with a YAML
value before validation, so a command line can sweep too.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from queuebench.engine.results import STOP_MODES
from queuebench.errors import UsageError

# Where `queuebench run NAME` finds NAME.yaml: the working folder's experiments/, then the one
# shipped beside the package in this checkout.
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "experiments"

PositiveInt = Annotated[int, Field(ge=1)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Format = Literal["json", "protobuf", "pickle"]
RAW = "raw"  # the format of a payload of `bytes:` raw bytes: no stock records, no codec
StopMode = Literal[STOP_MODES]  # type: ignore[valid-type]
ProducerMode = Literal["sync", "async", "processes"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MixKind(Strict):
    records: PositiveInt  # stock records a message of this kind holds
    weight: PositiveInt  # its share of the messages, against the other kinds' weights


class Payload(Strict):
    format: Format | list[Format] = "json"
    # One of: stock records a message (default 100); raw bytes of this size, no records and no
    # codec (`format` does not apply); a weighted mix of record counts, each message's kind
    # chosen by its sequence number (payloads/builder.py: mix_kinds).
    records: PositiveInt | list[PositiveInt] | None = None
    bytes: PositiveInt | list[PositiveInt] | None = None
    mix: list[MixKind] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> Payload:
        given = [key for key in ("records", "bytes", "mix") if getattr(self, key) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of records, bytes and mix, not {' and '.join(given)}")
        return self


class Placement(Strict):
    """Which node each process of a fleet goes on (nodes numbered from 1): spread evenly over
    the first `nodes` (absent: every node), `per_node` processes on node 1, 2, ..., or spread
    evenly over the nodes that carry the custom Ray resource `label`."""

    nodes: PositiveInt | None = None
    per_node: list[Annotated[int, Field(ge=0)]] | None = Field(default=None, min_length=1)
    label: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.-]*$")] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Placement:
        if sum(value is not None for value in (self.nodes, self.per_node, self.label)) > 1:
            raise ValueError("give one of nodes, per_node or label")
        return self

    def spread(self) -> Spread:
        return Spread(self.nodes, tuple(self.per_node) if self.per_node is not None else None,
                      self.label)


class Producers(Strict):
    count: PositiveInt | list[PositiveInt] = 1  # producer processes (mode: processes)
    # sync: one send at a time, each returning once the client took it; async: up to
    # in_flight sends awaiting the broker's acknowledgement; processes: `count` processes
    mode: ProducerMode | list[ProducerMode] = "sync"
    in_flight: PositiveInt | list[PositiveInt] = 100
    # mode processes with --cluster: the nodes they run on (default: spread over every node)
    placement: Placement = Placement()


class Consumers(Strict):
    processes: PositiveInt | list[PositiveInt] = 1
    # per process, the pair's own unit: Celery's pool children, Dramatiq's or Huey's workers,
    # a plain client's threads
    concurrency: PositiveInt | list[PositiveInt] = 1
    # before: running and warm when producing starts; after: started once every message is sent
    start: Literal["before", "after"] = "before"
    wait_sec: NonNegative = 0.0  # with start: after, how long the queue sits with no consumer


class Stages(Strict):
    # The seed's bursts: [messages, delay_ms] per stage, each message delay_ms after the last.
    stages: list[tuple[PositiveInt, NonNegative]] = Field(min_length=1)


class OfMax(Strict):
    # A fraction of the drain rate the pair reached in a calibration run of the same case, as
    # fast as it goes, run first (latency below saturation).
    of_max: Fraction | list[Fraction]


class Search(Strict):
    """The highest constant rate a pair sustains: p99 latency within `p99_ms` and no growing
    backlog. Probes step the rate up from `start` msg/s (absent: `start_of_max` of the drain
    rate of a calibration run) by `step` until a rate fails, then bisect between the last pass and
    the first fail (when `start` itself fails, one rate above it is tried before stepping down:
    a batch window's latency fails low rates and passes higher ones). `probes` rates at most,
    each probe a row of its own, each sending for `probe_sec` (rate x probe_sec messages: a
    fixed count would be over in a blink at a high rate; absent: the file's `messages`). A rate
    passes as soon as more of its probes passed than failed, and fails once `fails` of them
    failed: a failed probe is tried again (at most 2 x fails - 1 probes a rate), because a busy
    machine only ever adds latency, so one failing probe may be the machine's and one passing
    probe is the pair's. A search runs once, whatever `repeats` says: its probes are its
    repeats."""

    p99_ms: Positive = 200.0
    probe_sec: Positive | None = 10.0
    start: Positive | None = None
    start_of_max: Fraction = 0.5
    step: Annotated[float, Field(gt=1, allow_inf_nan=False)] = 1.5
    probes: Annotated[int, Field(ge=2, le=20)] = 8
    fails: Annotated[int, Field(ge=1, le=5)] = 2


class SearchRate(Strict):
    search: Search


class Targets(Strict):
    """Latency bounds a result passes or fails (the seed's p50 < 50, p95 < 100, p99 < 200 ms)."""

    p50_ms: Positive | None = None
    p95_ms: Positive | None = None
    p99_ms: Positive | None = None


class ConsumerFault(Strict):
    consumer: StopMode | list[StopMode]
    at_received: Fraction = 0.5  # when this fraction of the messages has been received
    mid_task: bool = True  # aimed halfway through the task in hand (needs work_ms > 0)
    node: PositiveInt | None = None  # only the consumers placed on this node; None: every one


class BrokerFault(Strict):
    broker: Literal["stop", "kill"] | list[Literal["stop", "kill"]]  # its shutdown, or SIGKILL
    at_received: Fraction = 0.5
    down_sec: NonNegative = 5.0  # how long it stays down before it is started again


class NetworkFault(Strict):
    # cut: connections closed, new ones refused; blackhole: open, data dropped; latency: slowed
    network: Literal["cut", "blackhole", "latency"] | list[Literal["cut", "blackhole", "latency"]]
    at_received: Fraction = 0.5
    for_sec: Positive = 10.0
    latency_ms: NonNegative = 0.0  # latency: added each way
    jitter_ms: NonNegative = 0.0
    bandwidth_kb_s: PositiveInt | None = None  # latency: also this bandwidth limit


class PauseFault(Strict):
    # The first consumer process frozen (SIGSTOP) this long; with `node`, every one on that node
    pause_sec: Positive | list[Positive]
    at_received: Fraction = 0.5
    node: PositiveInt | None = None


FAULT_KEYS = {"consumer": "ConsumerFault", "broker": "BrokerFault", "network": "NetworkFault",
              "pause_sec": "PauseFault"}


def _fault_model(value: Any) -> str | None:
    """Which fault a `faults:` entry is, by the key that names it (a model: its class)."""
    if isinstance(value, dict):
        return next((model for key, model in FAULT_KEYS.items() if key in value), None)
    return type(value).__name__


AnyFault = Annotated[
    Annotated[ConsumerFault, Tag("ConsumerFault")] | Annotated[BrokerFault, Tag("BrokerFault")]
    | Annotated[NetworkFault, Tag("NetworkFault")] | Annotated[PauseFault, Tag("PauseFault")],
    Discriminator(_fault_model, custom_error_type="fault_kind",
                  custom_error_message=f"a fault names one of {', '.join(FAULT_KEYS)}")]


@dataclass(frozen=True)
class FaultCase:
    """One fault beyond the consumer a cell injects: "broker-kill", "network-cut", ..."""

    kind: str
    at_received: float
    for_sec: float  # how long it is in force
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    bandwidth_kb_s: int | None = None
    node: int | None = None  # consumer-pause: every consumer on this node, not the first one

    @property
    def label(self) -> str:
        return f"{self.kind} {self.for_sec:g}s"

    @property
    def through_proxy(self) -> bool:
        """A network fault: producers and consumers then reach the broker through Toxiproxy."""
        return self.kind.startswith("network-")


def fault_cases(fault: BrokerFault | NetworkFault | PauseFault) -> list[FaultCase]:
    if isinstance(fault, BrokerFault):
        return [FaultCase(f"broker-{mode}", fault.at_received, fault.down_sec)
                for mode in _listed(fault.broker)]
    if isinstance(fault, NetworkFault):
        return [FaultCase(f"network-{kind}", fault.at_received, fault.for_sec, fault.latency_ms,
                          fault.jitter_ms, fault.bandwidth_kb_s) for kind in _listed(fault.network)]
    return [FaultCase("consumer-pause", fault.at_received, seconds, node=fault.node)
            for seconds in _listed(fault.pause_sec)]


class Workload(Strict):
    description: str = ""
    messages: PositiveInt | list[PositiveInt] | None = None  # None: the stages' sum
    payload: Payload = Payload()
    producers: Producers = Producers()
    consumers: Consumers = Consumers()
    # msg/s; None: as fast as it goes
    rate: Positive | list[Positive] | Stages | OfMax | SearchRate | None = None
    # Kafka topics only: partitions of the topic (a group member beyond them idles), or
    # "consumers": one per consumer (processes x concurrency), which other pairs ignore
    partitions: PositiveInt | list[PositiveInt] | Literal["consumers"] = 1
    targets: Targets | None = None
    work_ms: NonNegative | list[NonNegative] = 0.0  # per message, in the handler
    # of the messages whose handler raises, chosen by sequence number so the engine knows which
    fail_fraction: Annotated[float, Field(ge=0, le=1)] | list[
        Annotated[float, Field(ge=0, le=1)]] = 0.0
    # The consumer stopped or killed; or the broker, the network or a frozen worker (faults/)
    faults: list[AnyFault] = Field(default_factory=list, max_length=1)
    placement: Placement = Placement()  # the consumer processes over a cluster's nodes
    repeats: PositiveInt = 1
    deadline_sec: Positive | None = None  # None: scaled to the messages and the work
    # At most the messages the pair's consumer drains in this many seconds, by a calibration
    # of up to 1,000 messages sent one at a time (a row like any other) but never fewer than
    # it: RQ's forking worker would take 10 minutes a case to drain the producer modes' 10,000.
    drain_sec: Positive | None = None
    # The broker's durability (services/durability.py): as the service runs, or a row for each
    # mode it offers (Redis: none, rdb, aof-everysec, aof-always; PostgreSQL: sync, async)
    durability: Literal["default", "each"] = "default"

    @field_validator("producers", "consumers", mode="before")
    @classmethod
    def _count_alone(cls, value: Any, info: Any) -> Any:
        """`consumers: 4` (or `[1, 4]`) is short for `consumers: {processes: 4}`, and
        `producers: 2` for `producers: {count: 2}`."""
        if isinstance(value, int | list):
            return {"processes" if info.field_name == "consumers" else "count": value}
        return value

    @field_validator("messages", "work_ms", "rate", "fail_fraction", "partitions", mode="after")
    @classmethod
    def _no_empty_sweep(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("an empty list sweeps over nothing")
        return value

    @model_validator(mode="after")
    def _messages_known(self) -> Workload:
        if isinstance(self.rate, Stages):
            staged = sum(count for count, _ in self.rate.stages)
            if self.messages not in (None, staged):
                raise ValueError(f"messages is {self.messages} but the rate stages send {staged}")
        elif self.messages is None:
            raise ValueError("messages is required unless rate has stages")
        return self


@dataclass(frozen=True)
class OfMaxRate:
    """A rate still to be resolved: this fraction of the drain rate a calibration run reaches."""

    fraction: float


@dataclass(frozen=True)
class Spread:
    """A Placement as a cell holds it (see Placement)."""

    nodes: int | None = None
    per_node: tuple[int, ...] | None = None
    label: str | None = None

    def nodes_of(self, count: int, labels: Sequence[Collection[str]] | None, key: str,
                 what: str) -> list[int]:
        """The node of each of `count` processes over a cluster whose nodes carry `labels`
        (None: one machine, node 1 for a label); a UsageError naming `key` if it cannot be."""
        if self.per_node is not None:
            if sum(self.per_node) != count:
                raise UsageError(f"{key}.per_node places {sum(self.per_node)} {what} but the "
                                 f"workload runs {count}")
            return self._within([node for node, n in enumerate(self.per_node, 1)
                                 for _ in range(n)], len(self.per_node), labels, key)
        if self.label is not None and labels is not None:
            carrying = [node for node, has in enumerate(labels, 1) if self.label in has]
            if not carrying:
                raise UsageError(f"{key}.label: no node of the cluster carries the resource "
                                 f"{self.label!r}")
            return [carrying[index % len(carrying)] for index in range(count)]
        spread_over = self.nodes or (len(labels) if labels else 1)
        return self._within([index % spread_over + 1 for index in range(count)],
                            self.nodes or 1, labels, key)

    @staticmethod
    def _within(nodes: list[int], named: int, labels: Sequence[Collection[str]] | None,
                key: str) -> list[int]:
        if labels is not None and named > len(labels):
            raise UsageError(f"{key} names node {named} but the cluster has {len(labels)} nodes")
        return nodes


@dataclass(frozen=True)
class Cell:
    """One combination of a workload's swept values: every field a single value."""

    workload: str  # the file's name, e.g. "throughput"
    messages: int
    format: str  # json | protobuf | pickle, or "raw" for a payload of raw bytes
    records: int  # stock records a message; 0 for raw bytes or a mix
    processes: int
    concurrency: int
    producers: int
    producer_mode: str
    in_flight: int
    fail_fraction: float
    start: str
    wait_sec: float
    rate: float | tuple[tuple[int, float], ...] | OfMaxRate | Search | None
    work_ms: float
    stop: str | None  # the consumer fault: "graceful", "kill" or None
    at_received: float
    mid_task: bool
    repeats: int
    deadline_sec: float | None
    description: str = ""
    drain_sec: float | None = None  # messages cut to what the pair drains in this long
    payload_bytes: int | None = None  # a raw payload of this many bytes
    mix: tuple[tuple[int, int], ...] | None = None  # (records, weight) per kind of message
    partitions: int | str = 1  # or "consumers": one per consumer
    targets: tuple[tuple[str, float], ...] = ()  # ("p50", 50.0): latency bounds in ms
    fault: FaultCase | None = None  # a fault beyond the consumer
    # "each": a row per durability mode of the pair's broker, resolved per pair by the runner
    # into the mode's name; None: the broker as it runs
    durability: str | None = None
    stop_node: int | None = None  # the consumer fault reaches only this node's consumers
    placement: Spread = Spread()  # of the consumer processes
    producer_placement: Spread = Spread()  # of the producer processes (mode: processes)

    def nodes_of_processes(self, labels: Sequence[Collection[str]] | None) -> list[int]:
        """The node (from 1) of each consumer process, by `placement` over a cluster whose
        nodes carry `labels` (None: one machine, where the nodes a workload names are groups of
        processes on it, so that the same file means the same on both)."""
        nodes = self.placement.nodes_of(self.processes, labels, "placement",
                                        "consumer processes")
        for target in (self.stop_node, self.fault and self.fault.node):
            if target and target not in nodes:
                raise UsageError(f"the fault targets node {target}, which the placement leaves "
                                 f"without consumers (nodes used: {sorted(set(nodes))})")
        return nodes

    def nodes_of_producers(self, labels: Sequence[Collection[str]] | None) -> list[int]:
        """The node of each producer process, by `producers.placement` (see above)."""
        return self.producer_placement.nodes_of(self.producers, labels, "producers.placement",
                                                "producer processes")

    @property
    def kind(self) -> str:
        """"reliability" when the consumer is stopped halfway, "faults" when the broker, the
        network or a worker is broken halfway, else "throughput": the table a report puts its
        rows in."""
        return "reliability" if self.stop else "faults" if self.fault else "throughput"

    @property
    def topic_partitions(self) -> int:
        """The partitions a Kafka pair's topic gets."""
        return self.processes * self.concurrency if self.partitions == "consumers" \
            else int(self.partitions)

    @property
    def record_counts(self) -> tuple[int, ...]:
        """The stock-record counts its messages hold (none for raw bytes)."""
        if self.mix:
            return tuple(records for records, _ in self.mix)
        return (self.records,) if self.records else ()

    def intended_offsets_ns(self) -> list[int] | None:
        """When each message is meant to be sent, from the first; None: as fast as it goes."""
        if self.rate is None:
            return None
        if isinstance(self.rate, OfMaxRate | Search):
            raise ValueError("a rate of the maximum or a search is resolved by runs first")
        if isinstance(self.rate, tuple):
            gaps = [delay_ms * 1e6 for count, delay_ms in self.rate for _ in range(count)]
            gaps[0] = 0.0
        else:
            gaps = [0.0] + [1e9 / self.rate] * (self.messages - 1)
        return [round(offset) for offset in itertools.accumulate(gaps)]


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _payloads(payload: Payload) -> list[dict[str, Any]]:
    """The payload fields of each cell: a raw size, a mix per format, or records per format."""
    if payload.bytes is not None:
        return [{"format": RAW, "records": 0, "payload_bytes": size}
                for size in _listed(payload.bytes)]
    if payload.mix is not None:
        mix = tuple((kind.records, kind.weight) for kind in payload.mix)
        return [{"format": fmt, "records": 0, "mix": mix} for fmt in _listed(payload.format)]
    return [{"format": fmt, "records": records} for fmt in _listed(payload.format)
            for records in _listed(payload.records or 100)]


def cells(name: str, workload: Workload) -> list[Cell]:
    """Every combination of the swept values, in file order."""
    fault = workload.faults[0] if workload.faults else None
    consumer_fault = fault if isinstance(fault, ConsumerFault) else None
    others = fault_cases(fault) if fault and not consumer_fault else [None]
    if isinstance(workload.rate, Stages):
        rates: list[Any] = [tuple(workload.rate.stages)]
    elif isinstance(workload.rate, OfMax):
        rates = [OfMaxRate(f) for f in _listed(workload.rate.of_max)]
    elif isinstance(workload.rate, SearchRate):
        rates = [workload.rate.search]
    else:
        rates = _listed(workload.rate)
    staged = sum(c for c, _ in workload.rate.stages) if isinstance(workload.rate, Stages) else 0
    targets = tuple((name.removesuffix("_ms"), bound)
                    for name, bound in (workload.targets or Targets()) if bound is not None)
    combos = itertools.product(
        _payloads(workload.payload), _listed(workload.messages),
        _listed(workload.consumers.processes), _listed(workload.consumers.concurrency),
        _listed(workload.producers.mode), _listed(workload.producers.in_flight),
        _listed(workload.producers.count), rates, _listed(workload.work_ms),
        _listed(workload.fail_fraction), _listed(workload.partitions),
        _listed(consumer_fault.consumer) if consumer_fault else [None], others)
    return [Cell(workload=name, messages=messages or staged, **payload,
                 processes=processes, concurrency=concurrency, producers=producers,
                 producer_mode=mode, in_flight=in_flight,
                 fail_fraction=fail_fraction, start=workload.consumers.start,
                 wait_sec=workload.consumers.wait_sec, rate=rate, work_ms=work_ms, stop=stop,
                 at_received=fault.at_received if fault else 0.0,
                 mid_task=consumer_fault.mid_task if consumer_fault else False,
                 repeats=1 if isinstance(rate, Search) else workload.repeats,
                 deadline_sec=workload.deadline_sec, description=workload.description,
                 drain_sec=workload.drain_sec,
                 partitions=partitions, targets=targets, fault=other,
                 durability="each" if workload.durability == "each" else None,
                 stop_node=consumer_fault.node if consumer_fault else None,
                 placement=workload.placement.spread(),
                 producer_placement=workload.producers.placement.spread())
            for payload, messages, processes, concurrency, mode, in_flight, producers, rate,
            work_ms, fail_fraction, partitions, stop, other in combos]


def find(name_or_path: str) -> Path:
    """The experiment file a user named: a path, or the name of a shipped file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.parent != Path("."):
        if not path.is_file():
            raise UsageError(f"experiment file {path} does not exist")
        return path
    for folder in (Path("experiments"), SHIPPED_DIR):
        if (candidate := folder / f"{name_or_path}.yaml").is_file():
            return candidate
    shipped = sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))
    raise UsageError(f"no experiment {name_or_path!r}; shipped: {', '.join(shipped)}, or give "
                     "the path of a YAML file")


def parse_setting(text: str) -> tuple[list[str], Any]:
    """`--set consumers.processes=[1,4]` -> (["consumers", "processes"], [1, 4])."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set {text!r}: expected KEY=VALUE, e.g. --set rate=200")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        raise UsageError(f"--set {text!r}: the value is not valid YAML") from None
    return key.strip().split("."), parsed


def _apply(data: dict[str, Any], path: list[str], value: Any, origin: str) -> None:
    node = data
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UsageError(f"--set {'.'.join(path)}: {part} in {origin} is not a mapping")
        node = child
    node[path[-1]] = value


def _where(error: dict[str, Any]) -> str:
    # pydantic names the branches of a union in the path ("list[...]", "constrained-int",
    # "Stages"): keep only the keys and list positions a user wrote
    parts = [str(p) for p in error["loc"]
             if isinstance(p, int) or (p.isidentifier() and not p[0].isupper()
                                       and p not in ("int", "float", "str", "bool"))]
    return ".".join(parts) or "(top)"


def _most_telling(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """Of the errors of a value's union branches, the one that went deepest says most."""
    return max(errors, key=lambda e: (e["type"] == "extra_forbidden", len(e["loc"])))


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read experiment file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UsageError(f"{path} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a mapping of keys (messages, payload, ...)")
    return data


def _merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = (_merged(out[key], value) if isinstance(value, dict)
                    and isinstance(out.get(key), dict) else value)
    return out


def _validated(data: dict[str, Any], settings: list[str], origin: str,
               stops: list[str] | None) -> Workload:
    data = dict(data)
    for setting in settings:
        _apply(data, *parse_setting(setting), origin=origin)
    if stops and isinstance(data.get("faults"), list) and data["faults"]:
        data["faults"] = [{**data["faults"][0], "consumer": stops}, *data["faults"][1:]]
    try:
        return Workload.model_validate(data)
    except ValidationError as exc:
        error = _most_telling(exc.errors())
        if error["type"] == "extra_forbidden":
            raise UsageError(f"{origin}: {_where(error)}: unknown key; see the README's "
                             "workload format") from None
        got = "" if isinstance(error.get("input"), dict) else f" (got {error['input']!r})"
        message = error["msg"].removeprefix("Value error, ")
        raise UsageError(f"{origin}: {_where(error)}: {message}{got}") from None


def _expanded(data: dict[str, Any], settings: list[str], origin: str,
              stops: list[str] | None) -> list[Workload]:
    """The workloads of one file's keys, `settings` applied. `cases:` pairs values instead of
    crossing them (100 consumers with 1,000 messages, 500 with 2,000): each case, a mapping of
    the keys it changes, is merged over the rest of the file into a workload of its own, whose
    lists still sweep. A setting applies to every case, over the case's own value."""
    data = dict(data)
    for setting in settings:
        _apply(data, *parse_setting(setting), origin=origin)
    if "cases" not in data:
        return [_validated(data, [], origin, stops)]
    cases = data.pop("cases")
    if not isinstance(cases, list) or not cases or not all(isinstance(c, dict) for c in cases):
        raise UsageError(f"{origin}: cases: expected a list of mappings, each the keys one case "
                         "changes, e.g. [{messages: 1000, consumers: {concurrency: 100}}]")
    others = [s for s in settings if parse_setting(s)[0][0] != "cases"]
    return [_validated(_merged(data, case), others, f"{origin}: cases[{i}]", stops)
            for i, case in enumerate(cases)]


def load(name_or_path: str, settings: list[str] = (), stops: list[str] | None = None
         ) -> list[tuple[str, Workload]]:
    """The workloads of an experiment file, `settings` (KEY=VALUE) applied: [(name, workload)].
    `stops` replaces the consumer fault's modes where a workload has one (`--stop`).

    A file is one workload (or one per `cases:` entry), or `experiments:` a list of parts,
    each `use: NAME` (a shipped or local experiment) with the keys it changes (reference.yaml).
    """
    path = find(name_or_path)
    data = _read(path)
    if "experiments" not in data:
        return [(path.stem, workload) for workload in _expanded(data, settings, str(path), stops)]
    if unknown := set(data) - {"description", "experiments"}:
        raise UsageError(f"{path}: {sorted(unknown)[0]}: unknown key beside experiments")
    parts = data["experiments"]
    if not isinstance(parts, list) or not parts:
        raise UsageError(f"{path}: experiments: expected a list of parts, each with use: NAME")
    workloads = []
    for i, part in enumerate(parts):
        origin = f"{path}: experiments[{i}]"
        if not isinstance(part, dict) or not isinstance(part.get("use"), str):
            raise UsageError(f"{origin}: expected a mapping with use: NAME")
        base_path = find(part["use"])
        if base_path.resolve() == path.resolve():
            raise UsageError(f"{origin}: a file cannot use itself")
        changes = {key: value for key, value in part.items() if key != "use"}
        workloads += [(base_path.stem, workload) for workload in
                      _expanded(_merged(_read(base_path), changes), settings, origin, stops)]
    return workloads


def default_deadline(cell: Cell, redelivery_sec: float = 0.0) -> float:
    """Seconds a repeat may take, besides the wait with the consumers off: a minute for
    start-ups, the variant's redelivery wait, the paced sending, three times the work, and 50 ms
    a message for the queue itself (RQ's forking worker manages ~25 a second)."""
    if cell.deadline_sec is not None:
        return cell.deadline_sec
    offsets = cell.intended_offsets_ns()
    pacing = offsets[-1] / 1e9 if offsets else 0.0
    per_message = 3 * cell.work_ms / 1000 + 0.05
    # A fault in force, then a broker's restart or a client's reconnect backoff.
    fault = cell.fault.for_sec + 60 if cell.fault else 0.0
    return math.ceil(60 + redelivery_sec + pacing + cell.messages * per_message + fault)
