"""The cascades of the cascade-tracing suite (``bench/cascades.py``), generated from a
seed: pure data, no IO. Each case knows its culprit, the step that first wrote a
plausible but wrong value; the steps after it build on the value and only the end
fails.

A plan case is a plan file whose steps run ``python calc.py ...`` (:data:`CALC`, put in
the workspace) on one-number files: a chain from the culprit through ``depth - 1``
steps to the final step, which also reads ``fan_in - 1`` correct branches and fails
(its check, or its command). Around it, by the case's decoy kind: correct steps that
nothing downstream reads, the culprit's correct but unchecked source, a correct
upstream step that passed on its second attempt. The culprit is silent (no checks,
exit 0) or noisy (a warning on stderr, a retry, a check that passed but proved
little).

An agent case is the coding agent's run with a scripted model whose plan has a chain
of steps: the culprit's ``write_file`` puts a wrong rate in a file, the later steps
read what the one before wrote and write their own, and the acceptance test fails at
``validate``. Its culprit is the plan step whose call wrote the wrong content: blame
ranks steps, not tool calls.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any, Literal

DEPTHS = (1, 2, 3, 4, 5)
FAN_INS = (1, 2, 3)
DECOYS = ("none", "offpath", "above", "retried", "branches")
STYLES = ("silent", "warning", "retried", "exists_check", "content_check")
SOURCES = ("csv", "factor", "literal", "config")
ENDINGS = ("check", "command_fails", "command_check")
AGENT_STYLES = ("exists_check", "content_check", "retried")

CALC = '''\
"""One-number files: python calc.py MODE ARGS... [--warn MSG] [--flaky MARKER]"""
import json, os, sys

args = sys.argv[1:]
if "--warn" in args:
    i = args.index("--warn")
    print("warning:", args[i + 1], file=sys.stderr)
    del args[i : i + 2]
if "--flaky" in args:
    i = args.index("--flaky")
    marker = args[i + 1]
    del args[i : i + 2]
    if not os.path.exists(marker):
        open(marker, "w").close()
        sys.exit("error: resource busy, try again")
mode, rest = args[0], args[1:]


def num(path):
    return int(open(path).read().split()[0])


if mode == "csv":  # csv FILE FIRST_ROW: the sum of the second column from that row on
    rows = open(rest[0]).read().split()[int(rest[1]) - 1 :]
    print(sum(int(r.split(",")[1]) for r in rows))
elif mode in ("add", "mul"):  # add|mul K IN...
    total = sum(num(p) for p in rest[1:])
    print(total + int(rest[0]) if mode == "add" else total * int(rest[0]))
elif mode == "config":  # config KEY VALUE
    print(json.dumps({rest[0]: int(rest[1])}))
elif mode == "fromconfig":  # fromconfig KEY FILE (0 when the key is not there)
    print(json.load(open(rest[1])).get(rest[0], 0))
elif mode == "report":  # report IN...
    print(f"total={sum(num(p) for p in rest)}.")
elif mode == "expect":  # expect N IN...: fails unless the inputs sum to N
    total = sum(num(p) for p in rest[1:])
    print(f"total={total}.")
    if total != int(rest[0]):
        sys.exit(f"expected a total of {rest[0]}, got {total}")
elif mode == "isint":  # a check: the file holds a number
    sys.exit(not open(rest[0]).read().strip().lstrip("-").isdigit())
elif mode == "isjson":  # a check: the file is a JSON object
    sys.exit(not isinstance(json.load(open(rest[0])), dict))
elif mode == "checkmul":  # a check: OUT holds K * (the sum of IN...)
    sys.exit(num(rest[1]) != int(rest[0]) * sum(num(p) for p in rest[2:]))
elif mode == "checkadd":  # a check: OUT holds K + (the sum of IN...)
    sys.exit(num(rest[1]) != int(rest[0]) + sum(num(p) for p in rest[2:]))
elif mode == "checkfile":  # a check: FILE says total=N.
    sys.exit(open(rest[1]).read().strip() != f"total={rest[0]}.")
else:
    sys.exit(f"unknown mode {mode!r}")
'''

NAMES = (
    "fetch",
    "parse",
    "total",
    "convert",
    "scale",
    "merge",
    "price",
    "tax",
    "discount",
    "summarize",
    "rollup",
    "shard",
    "normalise",
    "enrich",
    "count",
    "weigh",
    "rank",
    "bucket",
    "adjust",
    "tally",
)


@dataclass(frozen=True)
class Case:
    """One cascade: what to run and which step is to blame.

    Attributes:
        name: unique within a suite, e.g. ``plan-07``.
        kind: ``plan`` (a plan file) or ``agent`` (a scripted agent run).
        culprit: the step that first wrote the wrong value.
        tags: the categories it counts under (depth, fan_in, decoy, style, ...).
        fails: the step that must fail at the end (blame's target).
        plan: the plan file's text (plan cases).
        files: workspace files to write before the run.
        agent: the agent run's script (agent cases): goal, plan steps, replies per step.
    """

    name: str
    kind: Literal["plan", "agent"]
    culprit: str
    tags: dict[str, str]
    fails: str
    plan: str = ""
    files: dict[str, str] = field(default_factory=dict)
    agent: dict[str, Any] = field(default_factory=dict)


def generate(seed: int, plans: int, agents: int) -> list[Case]:
    """``plans`` plan cases then ``agents`` agent cases; the same seed, the same cases.
    Depth, fan-in, decoy and style cycle (with different periods) so that every
    category is covered; the rest is drawn from a ``Random`` per case."""
    cases = [plan_case(i, random.Random(f"{seed}/plan/{i}")) for i in range(plans)]
    cases += [agent_case(i, random.Random(f"{seed}/agent/{i}")) for i in range(agents)]
    return cases


# --- plan cases -------------------------------------------------------------------------


class _Plan:
    """A plan being built: its steps (YAML dicts) and the value each file holds."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.steps: list[dict[str, Any]] = []
        self.value: dict[str, int] = {}  # file: its right value
        self.names = list(NAMES)
        rng.shuffle(self.names)
        self.used: set[str] = set()
        self.ops: dict[str, tuple[str, int]] = {}

    def apply(self, sid: str, value: int) -> int:
        """What step ``sid`` makes of ``value`` (its one input) when it is right."""
        op, k = self.ops[sid]
        return value + k if op == "add" else value * k

    def name(self) -> str:
        base = self.names[len(self.used) % len(self.names)]
        sid = base if base not in self.used else f"{base}{len(self.used)}"
        self.used.add(sid)
        return sid

    def step(self, sid: str, run: str, needs: list[str], **extra: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {"id": sid, "run": run}
        if needs:
            spec["needs"] = needs
        spec.update(extra)
        self.steps.append(spec)
        return spec

    def source(self, checks: str) -> tuple[str, str]:
        """A correct step that writes a number from nothing: (its id, its file)."""
        sid = self.name()
        out = f"{sid}.txt"
        n = self.rng.randint(2, 40)
        self.value[out] = n
        spec: dict[str, Any] = {"id": sid, "write": {"path": out, "content": f"{n}\n"}}
        if checks == "strong":
            spec["verify"] = [{"file_contains": out, "text": str(n)}]
        elif checks == "exists":
            spec["verify"] = [{"file_exists": out}]
        self.steps.append(spec)
        return sid, out

    def transform(
        self, inputs: list[tuple[str, str]], checks: str, *, flaky: bool = False
    ) -> tuple[str, str]:
        """A correct step: ``add`` or ``mul`` a constant to the sum of its inputs."""
        sid = self.name()
        out = f"{sid}.txt"
        op, k = self.rng.choice((("add", self.rng.randint(1, 9)), ("mul", self.rng.randint(2, 5))))
        total = sum(self.value[f] for _, f in inputs)
        self.value[out] = total + k if op == "add" else total * k
        self.ops[sid] = (op, k)
        files = " ".join(f for _, f in inputs)
        run = f"python calc.py {op} {k} {files}"
        extra: dict[str, Any] = {}
        if flaky:
            # its first attempt fails before the shell opens `> OUT`: one that failed
            # after would leave an empty OUT, which a `file_exists` check passes, and
            # the engine's probe before the retry would take the step as done with
            # that empty output: a wrong step, not the correct decoy it is meant to be
            run = f"python calc.py add 0 --flaky .{sid}.lock > /dev/null && {run}"
            extra["retries"] = 1
        verify = _checks(checks, op, k, out, files)
        if verify:
            extra["verify"] = verify
        self.step(sid, f"{run} > {out}", [s for s, _ in inputs], **extra)
        return sid, out

    def branch(self, length: int, checks: list[str]) -> tuple[str, str]:
        """A correct chain of ``length`` steps from a source."""
        last = self.source(checks[0])
        for i in range(1, length):
            last = self.transform([last], checks[i % len(checks)])
        return last


def _checks(kind: str, op: str, k: int, out: str, files: str) -> list[dict[str, Any]]:
    if kind == "strong":
        return [{"command": f"python calc.py check{op} {k} {out} {files}"}]
    if kind == "exists":
        return [{"file_exists": out}]
    if kind == "content":
        return [{"command": f"python calc.py isint {out}"}]
    return []


def plan_case(i: int, rng: random.Random) -> Case:
    depth = DEPTHS[i % len(DEPTHS)]
    fan_in = FAN_INS[(i // len(DEPTHS)) % len(FAN_INS)]
    decoy = DECOYS[(i + i // len(DEPTHS)) % len(DECOYS)]
    style = STYLES[(i + 2 * (i // len(DEPTHS))) % len(STYLES)]
    ending = ENDINGS[(i // 2) % len(ENDINGS)]
    source = rng.choice([s for s in SOURCES if s != "config" or depth >= 2])
    if decoy == "above" and source == "literal":
        source = "factor"  # "above" needs a step above the culprit
    p = _Plan(rng)

    # the decoy kind "offpath": steps that nothing downstream reads, run first
    if decoy == "offpath":
        for n in range(rng.randint(1, 3)):
            sid = p.name()
            noise = " && echo 'warning: deprecated option' >&2" if n == 0 else ""
            p.step(sid, f"echo ok > {sid}.log{noise}", [])
        lint = p.name()
        p.step(lint, f"python calc.py add 0 --flaky .{lint}.lock > {lint}.txt", [], retries=1)

    culprit, right, wrong_out = _culprit(p, source, style, decoy)

    # the chain from the culprit to the step before the final one
    last = (culprit, wrong_out)
    for hop in range(depth - 1):
        if source == "config" and hop == 0:
            sid = p.name()
            nxt = f"{sid}.txt"
            p.value[nxt] = 0  # the key it was given is not the one read: the default
            p.step(sid, f"python calc.py fromconfig max_retries {wrong_out} > {nxt}", [culprit])
            last = (sid, nxt)
            continue
        flaky = decoy == "retried" and hop == 0
        last = p.transform([last], rng.choice(("none", "exists", "strong")), flaky=flaky)
        right = p.apply(last[0], right)
    # the correct branches into the final step
    inputs = [last]
    kinds = ("none", "exists") if decoy == "branches" else ("none", "exists", "strong")
    for n in range(fan_in - 1):
        length = rng.randint(1, 4)
        branch = p.branch(length, [rng.choice(kinds) for _ in range(length)])
        if decoy == "retried" and depth == 1 and n == 0:
            branch = p.transform([branch], "none", flaky=True)
        inputs.append(branch)
    if decoy == "retried" and depth == 1 and fan_in == 1:
        # nothing between the culprit and the end: a retried correct input beside it
        inputs.append(p.transform([p.source("none")], "exists", flaky=True))
    expected = right + sum(p.value[f] for _, f in inputs[1:])
    assert expected != sum(p.value[f] for _, f in inputs), "the culprit changed nothing"

    final = p.name()
    files = " ".join(f for _, f in inputs)
    deps = [s for s, _ in inputs]
    report = f"python calc.py report {files} > {final}.txt"
    if ending == "check":
        check = {"file_contains": f"{final}.txt", "text": f"total={expected}."}
        p.step(final, report, deps, verify=[check])
    elif ending == "command_check":
        check = {"command": f"python calc.py checkfile {expected} {final}.txt"}
        p.step(final, report, deps, verify=[check])
    else:
        p.step(final, f"python calc.py expect {expected} {files} > {final}.txt", deps)
    plan = {"workspace": "ws", "checkpoints": "every_step", "parallelism": 2, "steps": p.steps}
    tags = {
        "kind": "plan",
        "depth": str(depth),
        "fan_in": str(fan_in),
        "decoy": decoy,
        "style": style,
        "source": source,
        "ending": ending,
    }
    text = json.dumps(plan, indent=1)
    return Case(f"plan-{i:02d}", "plan", culprit, tags, final, text, {"calc.py": CALC})


def _culprit(p: _Plan, source: str, style: str, decoy: str) -> tuple[str, int, str]:
    """The culprit and what it reads: (its id, the value it should have made, its file)."""
    rng = p.rng
    culprit = p.name()
    out = f"{culprit}.json" if source == "config" else f"{culprit}.txt"
    above = "none" if decoy == "above" else rng.choice(("strong", "exists"))
    needs: list[str] = []
    if source == "csv":
        src = p.name()
        rows = [(chr(97 + j), rng.randint(1, 20)) for j in range(rng.randint(3, 6))]
        csv = "\\n".join(f"{a},{b}" for a, b in rows)
        spec = p.step(src, f"printf '{csv}\\n' > {src}.csv", [])
        if above == "strong":
            spec["verify"] = [{"file_contains": f"{src}.csv", "text": f"{rows[0][0]},{rows[0][1]}"}]
        elif above == "exists":
            spec["verify"] = [{"file_exists": f"{src}.csv"}]
        right, wrong = sum(b for _, b in rows), sum(b for _, b in rows[1:])
        run = f"python calc.py csv {src}.csv 2"  # there is no header: row 1 is data
        needs = [src]
    elif source == "factor":
        src, src_file = p.source(above)
        right, wrong = p.value[src_file] * 1000, p.value[src_file] * 100
        run = f"python calc.py mul 100 {src_file}"  # grams to milligrams
        needs = [src]
    elif source == "literal":
        right = rng.randint(11, 30)
        wrong = right - rng.randint(1, 5)
        run = f"python calc.py add {wrong}"
    else:  # the consumer reads max_retries
        right = wrong = rng.randint(3, 9)
        run = f"python calc.py config retries_max {right}"
    p.value[out] = wrong
    extra: dict[str, Any] = {}
    if style == "exists_check":
        extra["verify"] = [{"file_exists": out}]
    elif style == "content_check":
        mode = "isjson" if source == "config" else "isint"
        extra["verify"] = [{"command": f"python calc.py {mode} {out}"}]
    elif style == "warning":
        run += " --warn " + json.dumps("3 rows had no unit; assumed the default")
    elif style == "retried":
        run += f" --flaky .{culprit}.lock"
        extra["retries"] = 1
    if source == "literal" and style not in ("warning", "retried"):
        p.steps.append({"id": culprit, "write": {"path": out, "content": f"{wrong}\n"}, **extra})
    else:
        p.step(culprit, f"{run} > {out}", needs, **extra)
    return culprit, right, out


# --- agent cases ------------------------------------------------------------------------

SPEC = "# Pricing\n\nPrices include VAT. The VAT rate is {rate} percent.\n"
PRICE_TEST = "from price import gross\n\n\ndef test_gross():\n    assert gross(200) == {expect}\n"
AGENT_DECOYS = ("none", "offpath", "retried", "branches")
# the modules between the culprit's file and price.py, which the test imports
LAYERS = ("constants", "rates", "tax", "levies")


def agent_case(i: int, rng: random.Random) -> Case:
    """The model plans: the culprit reads spec.md and writes the rate (wrong) to
    rate.json; ``depth - 1`` steps each read the file before and write a module from
    it; the last writes price.py, which the acceptance test imports. ``fan_in - 1``
    correct steps write modules price.py also imports. Decoys: steps whose files
    nothing reads, a correct step that passed on its second attempt."""
    depth = (1, 2, 3, 4)[i % 4]
    fan_in = (1, 2)[(i // 4) % 2]
    decoy = AGENT_DECOYS[(i + i // 4) % len(AGENT_DECOYS)]
    style = AGENT_STYLES[i % len(AGENT_STYLES) if i < 6 else (i // 2) % len(AGENT_STYLES)]
    right = rng.choice((5, 10, 20, 25))
    wrong = rng.choice([r for r in (7, 12, 15, 19, 21) if r != right])
    steps: list[dict[str, Any]] = []
    replies: dict[str, list[Any]] = {}

    def plan_step(
        sid: str, objective: str, *, new: list[str], needs: list[str], verify: Any
    ) -> None:
        steps.append(
            {
                "id": sid,
                "objective": objective,
                "files": [],
                "new_files": new,
                "needs": needs,
                "verify": verify,
            }
        )

    def write(path: str, content: str) -> dict[str, Any]:
        return {"tool": "write_file", "path": path, "content": content}

    def read(path: str) -> dict[str, Any]:
        return {"tool": "read_file", "path": path}

    done = {"tool": "finish", "summary": "done", "claims": ["the file is written"]}

    if decoy == "offpath":
        plan_step(
            "notes",
            "write release notes",
            new=["NOTES.md"],
            needs=[],
            verify=[{"file_exists": "NOTES.md"}],
        )
        replies["notes"] = [
            read("spec.md"),
            read("spec.md"),
            write("NOTES.md", "VAT applies.\n"),
            done,
        ]

    # the culprit: the rate, read from the spec, written wrong
    culprit = "rate"
    verify: list[dict[str, Any]] = (
        [{"file_contains": "rate.json", "text": "vat_percent"}]
        if style == "content_check"
        else [{"file_exists": "rate.json"}]
    )
    plan_step(
        culprit, "record the VAT rate from spec.md", new=["rate.json"], needs=[], verify=verify
    )
    bad = write("rate.json", json.dumps({"vat_percent": wrong}) + "\n")
    if style == "retried":  # the first try writes the wrong path; the second, wrong content
        replies[culprit] = [read("spec.md"), write("rate.jsn", "{}\n"), done]
        replies[culprit + "#2"] = [read("spec.md"), bad, done]
    else:
        replies[culprit] = [read("spec.md"), bad, done]

    # the chain: each step reads the file before it and writes a module from it
    before, previous = "rate.json", culprit
    for n in range(depth - 1):
        mod = LAYERS[n]
        if n == 0:
            text = f"VAT_PERCENT = {wrong}\n"
        else:
            text = f"from {LAYERS[n - 1]} import VAT_PERCENT\n"
        check = rng.choice(
            (
                [{"file_exists": f"{mod}.py"}],
                [{"file_contains": f"{mod}.py", "text": "VAT_PERCENT"}],
            )
        )
        plan_step(
            mod,
            f"the {mod} module from {before}",
            new=[f"{mod}.py"],
            needs=[previous],
            verify=check,
        )
        replies[mod] = [read(before), write(f"{mod}.py", text), done]
        before, previous = f"{mod}.py", mod

    # the correct branches price.py also uses
    branches: list[str] = []
    for n in range(fan_in - 1):
        sid = ("rounding", "currency")[n]
        check = (
            [{"file_exists": f"{sid}.py"}]
            if decoy == "branches"
            else [{"file_contains": f"{sid}.py", "text": "def apply(x):"}]
        )
        plan_step(sid, f"the {sid} helpers", new=[f"{sid}.py"], needs=[], verify=check)
        body = "def ok():\n    return True\n\n\ndef apply(x):\n    return round(x, 2)\n"
        if decoy == "retried" and n == 0:
            replies[sid] = [read("spec.md"), write(f"{sid}.txt", body), done]
            replies[sid + "#2"] = [write(f"{sid}.py", body), done]
        else:
            replies[sid] = [read("spec.md"), write(f"{sid}.py", body), done]
        branches.append(sid)
    if decoy == "retried" and fan_in == 1:
        plan_step(
            "audit",
            "an audit log",
            new=["audit.log"],
            needs=[],
            verify=[{"file_exists": "audit.log"}],
        )
        replies["audit"] = [write("audit.txt", "ok\n"), done]
        replies["audit#2"] = [write("audit.log", "ok\n"), done]

    # price.py: reads what the chain made (or the culprit's file) and the branches
    if depth == 1:
        rate_line = f"VAT_PERCENT = {wrong}  # from rate.json\n"
    else:
        rate_line = f"from {LAYERS[depth - 2]} import VAT_PERCENT\n"
    imports = "".join(f"import {b}\n" for b in branches)
    apply = "".join(f"    value = {b}.apply(value)\n" for b in branches)
    price = (
        f"{rate_line}{imports}\n\ndef gross(net):\n"
        f"    value = net * (100 + VAT_PERCENT) / 100\n{apply}    return value\n"
    )
    plan_step(
        "price",
        "gross() from the VAT rate",
        new=["price.py"],
        needs=[previous, *branches],
        verify=[{"file_exists": "price.py"}],
    )
    replies["price"] = [
        read(before),
        *(read(f"{b}.py") for b in branches),
        write("price.py", price),
        done,
    ]
    tags = {
        "kind": "agent",
        "depth": str(depth + 1),  # to validate: the chain, then price
        "fan_in": str(fan_in),
        "decoy": decoy,
        "style": style,
        "source": "agent",
        "ending": "validate",
    }
    script = {
        "goal": "compute gross prices with VAT as spec.md says",
        "steps": steps,
        "replies": replies,
    }
    files = {
        "spec.md": SPEC.format(rate=right),
        "test_price.py": PRICE_TEST.format(expect=200 * (100 + right) // 100),
    }
    return Case(f"agent-{i:02d}", "agent", culprit, tags, "validate", files=files, agent=script)
