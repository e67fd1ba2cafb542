"""Which published figures still hold: each figure of ``bench/published.json`` against
the latest result a bench wrote for it under ``bench/results/``.

Usage::

    python bench/stale.py [--published bench/published.json] [--results bench/results]
                          [--strict]

Verdicts, one per figure:

- ``holds``: the latest value is within the published figure's noise (a relative
  tolerance, or an absolute one for counts and rounded shares);
- ``MOVED beyond noise``: it is not; the published figure no longer describes the
  code on this machine, and ``--strict`` exits 1. A figure registered with ``beside``
  (the id of its ratio to a reference measured in the same run: another system, the
  bare interpreter) says what that ratio did in the run that moved it: where the ratio
  holds, the machine's pace moved the figure and its reference alike, not this code
  against the reference;
- ``not measured since``: no result for it under the results directory;
- ``not comparable``: measured on a different core count or Python minor version than
  published, which the verdict names; no figure is judged across them. A figure of time
  or rate (µs, ms, s, runs/s) is not judged across processors either (the register's
  ``cpu``, the results' ``machine.cpu``): the same code on another processor runs at
  another pace. Its same-run ratio to a reference (``x``) is judged: the pace moves a
  figure and its reference alike.

Exit codes: 0 done, 1 a figure moved (under ``--strict`` only), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
HOLDS = "holds"
MOVED = "MOVED beyond noise"
NOT_MEASURED = "not measured since"
NOT_COMPARABLE = "not comparable"
EXIT_MOVED = 1
# the units of figures the processor's pace sets: not judged across processors
PACED_UNITS = frozenset({"µs", "ms", "s", "runs/s"})
EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """A register or result file that cannot be read; the message names it."""


@dataclass(frozen=True)
class Published:
    id: str
    value: float
    unit: str
    noise: dict[str, Any]
    commit: str
    nproc: str
    python: str
    sqlite: str
    load: str | None = None  # the load average the text gives, if it gives one
    beside: str | None = None  # the figure's same-run ratio to a reference
    cpu: str = "unknown"  # the processor's model name, as /proc/cpuinfo gives it


@dataclass(frozen=True)
class Verdict:
    figure: Published
    latest: dict[str, Any] | None
    verdict: str
    reason: str = ""

    @property
    def ratio(self) -> float | None:
        if self.latest is None or self.figure.value == 0:
            return None
        return float(self.latest["value"]) / self.figure.value


def load_published(path: Path) -> list[Published]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        entries = doc["figures"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInput(f"{path}: not a register of figures ({e!r})") from e
    out = []
    for i, entry in enumerate(entries):
        where = f"{path}: figure {entry.get('id', i)!r}" if isinstance(entry, dict) else path
        try:
            noise = entry["noise"]
            if not isinstance(noise, dict) or not {"relative", "absolute"} & noise.keys():
                raise BadInput(f"{where}: noise needs 'relative' or 'absolute'")
            out.append(
                Published(
                    id=str(entry["id"]),
                    value=float(entry["value"]),
                    unit=str(entry["unit"]),
                    noise=noise,
                    commit=str(entry["commit"]),
                    nproc=str(entry["nproc"]),
                    python=str(entry["python"]),
                    sqlite=str(entry["sqlite"]),
                    load=entry.get("load"),
                    beside=entry.get("beside"),
                    cpu=str(entry.get("cpu", "unknown")),
                )
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BadInput(f"{where}: missing or malformed field {e}") from e
    ids = {f.id for f in out}
    for f in out:
        if f.beside is not None and f.beside not in ids:
            raise BadInput(f"{path}: figure {f.id!r}: beside names {f.beside!r}, not a figure")
    return out


def latest_results(results_dir: Path) -> dict[str, dict[str, Any]]:
    """The newest result of each figure, by its ``measured_at``."""
    latest: dict[str, dict[str, Any]] = {}
    for path in sorted(results_dir.glob("figure-*.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
            figure, when = str(result["figure"]), str(result["measured_at"])
            float(result["value"])
            if "nproc" not in result["machine"]:
                raise KeyError("machine.nproc")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BadInput(f"{path}: not a figure result ({e!r})") from e
        if figure not in latest or when > latest[figure]["measured_at"]:
            latest[figure] = result
    return latest


def judge(figure: Published, latest: dict[str, Any] | None) -> Verdict:
    if latest is None:
        return Verdict(figure, None, NOT_MEASURED)
    machine = latest["machine"]
    differs = []
    if figure.nproc != "unknown" and str(machine["nproc"]) != figure.nproc:
        differs.append(f"{figure.nproc} cores published, {machine['nproc']} now")
    if figure.python != "unknown" and _minor(str(machine.get("python"))) != _minor(figure.python):
        differs.append(f"{figure.python} published, {machine.get('python')} now")
    cpu = str(machine.get("cpu", "unknown"))
    if figure.unit in PACED_UNITS and "unknown" not in (figure.cpu, cpu) and cpu != figure.cpu:
        differs.append(f"a time on {figure.cpu!r} published, on {cpu!r} now")
    if differs:
        return Verdict(figure, latest, NOT_COMPARABLE, "; ".join(differs))
    value = float(latest["value"])
    if "absolute" in figure.noise:
        bound = float(figure.noise["absolute"])
    else:
        bound = float(figure.noise["relative"]) * abs(figure.value)
    off = abs(value - figure.value)
    tolerance = _tolerance(figure)
    if off > bound:
        return Verdict(
            figure, latest, MOVED, f"off by {_number(off)} {figure.unit}, noise {tolerance}"
        )
    return Verdict(figure, latest, HOLDS, f"noise {tolerance}")


def with_ratios(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """``verdicts``, each moved figure's reason saying what its same-run ratio to a
    reference (its ``beside``) did: a machine slower or faster on the day moves a figure
    and its reference alike, and leaves their ratio where it was."""
    by_id = {v.figure.id: v for v in verdicts}
    out = []
    for v in verdicts:
        ratio = by_id.get(v.figure.beside or "")
        if v.verdict != MOVED or ratio is None or v.latest is None:
            out.append(v)
            continue
        run = v.latest.get("run")
        if ratio.latest is None or run is None or ratio.latest.get("run") != run:
            said = f"no `{ratio.figure.id}` from the same run to tell the machine from the code"
        else:
            f = ratio.figure
            now = f"{_number(float(ratio.latest['value']))} {f.unit}"
            published = f"{_number(f.value)} {f.unit} published"
            if ratio.verdict == HOLDS:
                said = (
                    f"`{f.id}` of the same run holds ({now}, {published}): the machine's "
                    "pace moved it and its reference alike, not this code against it"
                )
            else:
                said = f"`{f.id}` of the same run moved too ({now}, {published})"
        out.append(replace(v, reason=f"{v.reason}; {said}"))
    return out


def _tolerance(figure: Published) -> str:
    if "absolute" in figure.noise:
        return f"±{figure.noise['absolute']} {figure.unit}"
    return f"±{float(figure.noise['relative']):.0%}"


def _number(x: float) -> str:
    """Three significant figures, whole numbers from 100 up: 1,091; 6.26; 0.211."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _minor(python: str) -> str:
    """ "CPython 3.11.7" -> "CPython 3.11"."""
    name, _, version = python.rpartition(" ")
    return f"{name} {'.'.join(version.split('.')[:2])}"


def _machine(
    nproc: str, python: str, sqlite: str, load: str | None = None, cpu: str = "unknown"
) -> str:
    cores = f"{nproc} cores" if cpu == "unknown" else f"{nproc} cores of {cpu}"
    said = f"{cores}, {python}, SQLite {sqlite}"
    return f"{said}, load {load}" if load else said


def render(verdicts: Sequence[Verdict]) -> str:
    lines = [
        "| figure | published (commit; machine) | now (commit; machine) | ratio | verdict |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for v in verdicts:
        f = v.figure
        machine_then = _machine(f.nproc, f.python, f.sqlite, f.load, f.cpu)
        published = f"{_number(f.value)} {f.unit} (`{f.commit}`; {machine_then})"
        if v.latest is None:
            now, ratio = "-", "-"
        else:
            m = v.latest["machine"]
            load = m.get("load_average_before", m.get("load_average_at_record"))
            spread = v.latest.get("spread")
            value = f"{_number(float(v.latest['value']))} {f.unit}"
            if spread:
                value += f" ({_number(spread[0])} to {_number(spread[1])})"
            python, sqlite, cpu = (str(m.get(k, "unknown")) for k in ("python", "sqlite", "cpu"))
            machine = _machine(str(m["nproc"]), python, sqlite, load, cpu)
            now = f"{value} (`{m.get('trestle_commit', 'unknown')}`; {machine})"
            ratio = f"{v.ratio:.2f}x" if v.ratio is not None else "-"
        verdict = f"**{v.verdict}**" if v.verdict == MOVED else v.verdict
        if v.reason:
            verdict += f": {v.reason}"
        lines.append(f"| `{f.id}` | {published} | {now} | {ratio} | {verdict} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--published", type=Path, default=BENCH_DIR / "published.json")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a figure moved")
    args = parser.parse_args(argv)
    try:
        figures = load_published(args.published)
        latest = latest_results(args.results) if args.results.is_dir() else {}
    except BadInput as e:
        print(f"stale.py: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    verdicts = with_ratios([judge(f, latest.get(f.id)) for f in figures])
    print(render(verdicts))
    moved = [v.figure.id for v in verdicts if v.verdict == MOVED]
    if moved:
        print(f"\nmoved beyond their noise: {', '.join(moved)}")
    return EXIT_MOVED if moved and args.strict else 0


if __name__ == "__main__":
    raise SystemExit(main())
