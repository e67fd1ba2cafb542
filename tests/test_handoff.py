"""Handoff packets: the record's limits, its rendering, the builders from a real recorded
agent run, a run started with one (pins through compression), and fetch_artifact's
jail and reach. Real SQLite stores, real runs, real files and git; no mocks."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent_helpers import (
    agent_settings,
    call,
    drive,
    fix_replies,
    of_kind,
    recorded,
    sample_workspace,
    start_run,
)
from trestle.agent.context import check_pins, compress
from trestle.core.errors import ConfigError
from trestle.core.events import ContextCompressed, RoundOpened, StoredEvent
from trestle.core.handoff import (
    MAX_EXCERPT,
    MAX_ITEMS,
    MAX_TEXT,
    ArtifactRef,
    Decision,
    Evidence,
    Finding,
    HandoffPacket,
    clean_text,
    parse_packet,
    pinned,
    render,
)
from trestle.core.packets import (
    build_packet,
    last_message_packet,
    sender_packet,
    transcript_packet,
)
from trestle.core.policy import Policy, SandboxPolicy
from trestle.core.records.agent import ContextBudget, Pins, bootstrap_plan
from trestle.lifecycle.runs import create_run
from trestle.models import Message, ScriptedModel
from trestle.store import SqliteStore
from trestle.tools.base import GatedCall, GateVerdict, Observation, ToolContext
from trestle.tools.coding import coding_registry

PACKET = HandoffPacket(
    sender="run-1",
    goal="make export keep empty rows",
    acceptance=("pytest tests/test_export.py passes",),
    constraints=("do not change the CSV header",),
    findings=(
        Finding(
            claim="export drops rows whose cells are all empty",
            evidence=(Evidence(kind="file", ref="src/export.py:42", excerpt="if not any(row):"),),
        ),
    ),
    decisions=(Decision(what="fix it in export_rows", why="the writer is shared"),),
    open_questions=("should a blank line count as a row?",),
    artifacts=(ArtifactRef(kind="tool_output", ref="run-1:7", note="read_file src/export.py"),),
)


class AllowAll:
    async def review(self, call: GatedCall) -> GateVerdict:
        return GateVerdict.allow()


# --- the record ----------------------------------------------------------------------------


def test_a_packet_round_trips_as_json() -> None:
    assert parse_packet(PACKET.model_dump_json()) == PACKET


@pytest.mark.parametrize(
    ("update", "said"),
    [
        ({"goal": "x" * (MAX_TEXT + 1)}, "goal: String should have at most"),
        ({"constraints": ["c"] * (MAX_ITEMS + 1)}, "constraints: Tuple should have at most"),
        ({"goal": "stop\x1b[2J here"}, "control character U+001B at character 4"),
        ({"goal": "half \ud83d a pair"}, "goal: Input should be a valid string"),
        ({"goal": ""}, "goal: String should have at least 1"),
        ({"body": "a transcript"}, "'body' is for the last_message and transcript modes"),
        ({"artifacts": [{"kind": "file", "ref": "a\nb"}]}, "U+000A"),
        ({"artifacts": [{"kind": "file", "ref": "a"}] * 2}, "'a' is listed twice"),
        ({"findings": [{"claim": "c", "evidence": [{"kind": "file", "excerpt": "e" * 3000}]}]},
         "excerpt: String should have at most"),
        ({"mode": "gossip"}, "mode: Input should be"),
        ({"secret": 1}, "secret: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_hostile_packets_are_refused_naming_the_field(update: dict[str, Any], said: str) -> None:
    data = {**PACKET.model_dump(mode="json"), **update}
    with pytest.raises(ConfigError, match="handoff packet: ") as caught:
        parse_packet(json.dumps(data))
    assert said in str(caught.value)


def test_huge_and_deep_json_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(ConfigError, match="nested deeper than 64"):
        parse_packet("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="more than 4,000,000"):
        parse_packet(" " * 4_000_001)
    with pytest.raises(ConfigError, match="not readable as JSON"):
        parse_packet("{goal:")


def test_multi_line_text_keeps_newlines_and_tabs_but_a_reference_does_not() -> None:
    Finding(claim="two\n\tlines", evidence=(Evidence(kind="text", excerpt="a\nb\tc"),))
    with pytest.raises(ValidationError, match=re.escape("U+0009")):
        ArtifactRef(kind="file", ref="a\tb")


def test_clean_text_makes_outside_text_fit() -> None:
    dirty = "a\r\nb\x1b[31m\ud83d" + "z" * 5000
    clean = clean_text(dirty, MAX_EXCERPT)
    Evidence(kind="command", excerpt=clean)  # accepted
    assert clean.startswith("a\nb\ufffd[31m\ufffd")
    assert len(clean) <= MAX_EXCERPT and clean.endswith("more characters]")
    assert clean_text("a\nb", one_line=True) == "a b"
    with pytest.raises(ValidationError, match="goal\n  Input should be a valid string"):
        HandoffPacket(goal="half \ud83d a pair")


# --- what the receiver sees ----------------------------------------------------------------


def test_render_shows_everything_compactly_with_evidence_inline() -> None:
    assert render(PACKET) == "\n".join(
        [
            "[trestle: handoff] from run run-1",
            "Goal: make export keep empty rows",
            "Acceptance criteria:",
            "- pytest tests/test_export.py passes",
            "Constraints and rules:",
            "- do not change the CSV header",
            "Findings:",
            "- export drops rows whose cells are all empty",
            "  [file src/export.py:42]:",
            "    if not any(row):",
            "Decisions:",
            "- fix it in export_rows (why: the writer is shared)",
            "Open questions:",
            "- should a blank line count as a row?",
            "Artifacts (fetch any of them with fetch_artifact(ref=...)):",
            "- tool_output run-1:7 - read_file src/export.py",
        ]
    )
    assert pinned(PACKET) == (
        "Handed-over goal: make export keep empty rows",
        "Acceptance: pytest tests/test_export.py passes",
        "Constraint: do not change the CSV header",
    )


def test_the_plain_modes_show_their_body() -> None:
    last = HandoffPacket(mode="last_message", goal="g", body="all done")
    assert render(last).endswith("The sender's last message:\nall done")
    whole = HandoffPacket(mode="transcript", goal="g", body="[1 assistant] hi")
    assert render(whole).endswith("The sender's transcript:\n[1 assistant] hi")


# --- builders, from a real recorded run ----------------------------------------------------


@pytest.fixture
def sender(tmp_path: Path) -> tuple[SqliteStore, str, list[StoredEvent]]:
    """A real agent run that fixed the sample workspace, with a rule, recorded."""
    store = SqliteStore(tmp_path / "trestle.db")
    ws = sample_workspace(tmp_path)
    settings = agent_settings(rules=("keep calc.add's signature",))
    run_id = start_run(store, ws, settings=settings)
    replies = fix_replies()
    replies[1] = json.dumps(
        {
            "summary": "add() subtracts instead of adding",
            "relevant_files": [{"path": "calc.py", "why": "line 2 subtracts"}],
            "how_to_test": "run pytest: test_add fails",
            "constraints": ["no new dependencies"],
            "open_questions": ["should add() accept floats?"],
        }
    )
    drive(store, run_id, ScriptedModel(replies))
    return store, run_id, store.events(run_id)


def test_the_packet_holds_the_senders_findings_decisions_and_references(
    sender: tuple[SqliteStore, str, list[StoredEvent]],
) -> None:
    _store, run_id, events = sender
    packet = sender_packet(events, acceptance=["pytest passes"], constraints=["stay small"])
    assert packet.mode == "packet" and packet.sender == run_id
    assert packet.goal == "make add() return the sum"  # the sender's, none was stated
    assert packet.acceptance == ("pytest passes",)
    assert packet.constraints == ("stay small", "keep calc.add's signature", "no new dependencies")
    understood = packet.findings[0]
    assert understood.claim == "add() subtracts instead of adding"
    assert Evidence(kind="file", ref="calc.py", excerpt="line 2 subtracts") in understood.evidence
    assert any(f.claim.startswith("step fix done: add() adds") for f in packet.findings)
    assert Decision(what="approach: fix add") in packet.decisions
    assert any(d.what == "step fix: add() returns the sum" for d in packet.decisions)
    assert packet.open_questions == ("should add() accept floats?",)
    kinds = {a.kind: a for a in reversed(packet.artifacts)}
    assert kinds["transcript"].ref == f"{run_id}:1-{events[-1].seq}"
    assert kinds["file"].ref == "calc.py" and "edit_file" in kinds["file"].note
    assert "checkpoint" in kinds
    notes = [a.note for a in packet.artifacts if a.kind == "tool_output"]
    assert "read_file calc.py (3 lines)" in notes  # its header, then the file's two
    parse_packet(packet.model_dump_json())  # within every limit


def test_a_failed_command_is_a_finding_with_the_end_of_its_output(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "trestle.db")
    ws = sample_workspace(tmp_path)
    run_id = start_run(store, ws)
    replies = [call("run_tests"), *fix_replies()[1:]]
    drive(store, run_id, ScriptedModel(replies))
    packet = sender_packet(store.events(run_id))
    failed = [f for f in packet.findings if f.claim.startswith("run_tests the test command failed")]
    assert failed, [f.claim for f in packet.findings]
    (evidence,) = failed[0].evidence
    assert evidence.kind == "command" and evidence.ref.startswith(f"{run_id}:")
    assert "1 failed" in evidence.excerpt


def test_the_last_message_and_the_transcript(
    sender: tuple[SqliteStore, str, list[StoredEvent]],
) -> None:
    _, _run_id, events = sender
    last = last_message_packet(events, goal="carry on")
    assert last.goal == "carry on" and last.body == "add() adds\n- test_add passes"
    whole = transcript_packet(events)
    assert "read_file" in whole.body and "return a - b" in whole.body  # the file it read
    assert "Rule: keep calc.add's signature" in whole.body  # the conversation's pins
    assert build_packet("transcript", events) == whole
    with pytest.raises(ValueError, match="from its run_created on"):
        sender_packet(events[1:])


# --- a run started with a packet -----------------------------------------------------------


def test_pins_of_the_packet_survive_compression() -> None:
    pins = Pins(goal="g", handoff=pinned(PACKET))
    messages = [Message.system("s"), pins.message(), Message.user(render(PACKET))]
    for n in range(12):
        messages += [Message.user(f"turn {n}"), Message.assistant("x" * 400)]
    result = asyncio.run(compress(messages, pins, ContextBudget(limit=600, keep_turns=2)))
    assert result.record.summarised > 0
    assert not check_pins(result.messages, pins)
    assert "Constraint: do not change the CSV header" in result.messages[1].content
    assert check_pins(result.messages, Pins(goal="g", handoff=("Constraint: other",)))


def test_a_receiver_sees_the_packet_first_and_keeps_it_pinned(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "trestle.db")
    ws = sample_workspace(tmp_path)
    settings = agent_settings(handoff=PACKET, context=ContextBudget(limit=2_500, keep_turns=1))
    (ws / "big.txt").write_text("a long line of notes\n" * 150, encoding="utf-8")
    run_id = start_run(store, ws, settings=settings)
    replies = [call("read_file", path="big.txt", call_id=f"r{n}") for n in range(6)]
    model = ScriptedModel([*replies, *fix_replies()[1:]])
    drive(store, run_id, model)
    first = model.requests[0].messages
    assert first[2].role == "user" and first[2].content.startswith(render(PACKET) + "\n\n")
    events = recorded(store, run_id)
    opened = of_kind(events, RoundOpened)
    assert all(o.pins.handoff == pinned(PACKET) for o in opened)
    assert of_kind(events, ContextCompressed), "the budget was meant to force a compression"
    for request in model.requests:
        assert "Handed-over goal: make export keep empty rows" in request.messages[1].content


# --- fetch_artifact ------------------------------------------------------------------------


def receiver(store: SqliteStore, ws: Path, packet: HandoffPacket | None) -> ToolContext:
    settings = agent_settings(handoff=packet)
    run_id = create_run(store, bootstrap_plan("receive"), workspace=ws, agent=settings)
    return ToolContext(workspace=ws, run_id=run_id, step_id="understand")


def fetch(store: SqliteStore, ctx: ToolContext, **arguments: Any) -> Observation:
    registry = coding_registry(store)
    return asyncio.run(registry.call("fetch_artifact", json.dumps(arguments), ctx, AllowAll()))


def test_fetch_resolves_what_the_packet_references(
    sender: tuple[SqliteStore, str, list[StoredEvent]], tmp_path: Path
) -> None:
    store, _run_id, events = sender
    packet = sender_packet(events)
    ws = Path(str(events[0].event.workspace))  # type: ignore[union-attr]
    ctx = receiver(store, ws, packet)
    read = next(a for a in packet.artifacts if a.note.startswith("read_file calc.py"))
    got = fetch(store, ctx, ref=read.ref)
    assert got.ok and got.content.startswith('read_file({"path": "calc.py"}) [ok]\n')
    assert "return a - b" in got.content  # what the sender saw, not the file as it is now
    assert "return a + b" in fetch(store, ctx, ref="calc.py").content
    checkpoint = next(a for a in packet.artifacts if a.kind == "checkpoint")
    at = fetch(store, ctx, ref=checkpoint.ref, path="calc.py")
    assert at.ok and at.content.startswith(f"calc.py at checkpoint {checkpoint.ref}")
    transcript = next(a for a in packet.artifacts if a.kind == "transcript")
    whole = fetch(store, ctx, ref=transcript.ref)
    assert whole.ok and "[1 " not in whole.content and "tool result" in whole.content


def test_fetch_reaches_only_what_the_packet_lists(
    sender: tuple[SqliteStore, str, list[StoredEvent]],
) -> None:
    store, run_id, events = sender
    ws = Path(str(events[0].event.workspace))  # type: ignore[union-attr]
    packet = sender_packet(events)
    ctx = receiver(store, ws, packet)
    other = fetch(store, ctx, ref=f"{run_id}:3")  # a real event, but not listed
    assert not other.ok and "is not an artifact of a handoff packet this run was given" in (
        other.content
    )
    low, high = (
        next(a for a in packet.artifacts if a.kind == "transcript").ref.split(":")[1].split("-")
    )
    outside = fetch(store, ctx, ref=f"{run_id}:{low}-{high}", first=int(high) + 1)
    assert not outside.ok and "is outside it" in outside.content
    nothing = receiver(store, ws, None)
    assert "was handed no handoff packet" in fetch(store, nothing, ref="calc.py").content
    # a packet speaks only of its sender's record: another run's transcript is refused
    elsewhere = ArtifactRef(kind="transcript", ref=f"{nothing.run_id}:1-1")
    forged = receiver(store, ws, packet.model_copy(update={"artifacts": (elsewhere,)}))
    refused = fetch(store, forged, ref=elsewhere.ref)
    assert not refused.ok and f"not of the packet's sender {run_id}" in refused.content


def test_fetch_keeps_files_in_the_jail(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "trestle.db")
    ws = tmp_path / "ws"
    (ws / ".git").mkdir(parents=True)
    (ws / ".git" / "config").write_text("[core]\n")
    (tmp_path / "secret.txt").write_text("s3cret\n")
    (ws / "escape").symlink_to(tmp_path / "secret.txt")
    refs = [
        ArtifactRef(kind="file", ref="../secret.txt"),
        ArtifactRef(kind="file", ref=".git/config"),
        ArtifactRef(kind="file", ref="escape"),
        ArtifactRef(kind="file", ref=str(tmp_path / "secret.txt")),
        ArtifactRef(kind="commit", ref="abcdef1"),
    ]
    ctx = receiver(store, ws, HandoffPacket(goal="g", artifacts=tuple(refs)))
    for ref in refs[:4]:
        got = fetch(store, ctx, ref=ref.ref)
        assert not got.ok and "s3cret" not in got.content and "[core]" not in got.content
    for path in ("../secret.txt", "/etc/passwd", ".git/config"):
        got = fetch(store, ctx, ref="abcdef1", path=path)
        assert not got.ok
        assert "refused" in got.content or "no tool reads it" in got.content


def test_fetch_reads_a_file_at_a_commit_of_the_workspace(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    git = ["git", "-C", str(ws), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (ws / "v.txt").write_text("version one\n")
    subprocess.run([*git, "add", "v.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    sha = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    (ws / "v.txt").write_text("version two\n")
    store = SqliteStore(tmp_path / "trestle.db")
    ctx = receiver(
        store, ws, HandoffPacket(goal="g", artifacts=(ArtifactRef(kind="commit", ref=sha),))
    )
    got = fetch(store, ctx, ref=sha, path="v.txt")
    assert got.ok and got.content.endswith("version one\n")
    assert "give path" in fetch(store, ctx, ref=sha).content
    assert "has no file 'nope.txt'" in fetch(store, ctx, ref=sha, path="nope.txt").content


def test_a_long_transcript_is_cut_with_a_note_saying_how_to_read_on(
    sender: tuple[SqliteStore, str, list[StoredEvent]],
) -> None:
    store, _, events = sender
    ws = Path(str(events[0].event.workspace))  # type: ignore[union-attr]
    packet = sender_packet(events)
    ctx = receiver(store, ws, packet)
    ref = next(a for a in packet.artifacts if a.kind == "transcript").ref
    small = ToolContext(workspace=ws, run_id=ctx.run_id, step_id="x", output_cap=1_500)
    page = fetch(store, small, ref=ref)
    assert page.ok and "[cut at the output limit: seqs" in page.content
    first = page.data["last"]
    assert isinstance(first, int)
    assert f"read on with fetch_artifact(ref='{ref}', first={first + 1})" in page.content
    following = fetch(store, small, ref=ref, first=first + 1)
    assert following.ok and following.data["first"] == first + 1


# --- the context-loss suite, short ---------------------------------------------------------


def test_the_short_context_loss_suite_packet_matches_transcript_at_under_a_quarter(
    tmp_path: Path,
) -> None:
    from bench_modules import load_bench

    bench = load_bench("handoff")
    tasks = [bench.task(n) for n in ("config-timeout", "failing-test", "decision-port")]
    outcomes = bench.run_suite(tasks, tmp_path)
    rows = bench.summary(outcomes)
    assert rows["transcript"]["succeeded"] == len(tasks)
    assert rows["packet"]["succeeded"] >= rows["transcript"]["succeeded"]
    assert rows["packet"]["tokens"] < rows["transcript"]["tokens"] / 4
    assert rows["last_message"]["succeeded"] == 0  # the summaries leave the facts out


def test_a_commit_the_sender_made_is_referenced_and_can_be_read(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "trestle.db")
    ws = sample_workspace(tmp_path)
    git = ["git", "-C", str(ws), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "start"], check=True)
    # commits need no human here, and run_command may write .git's history without one
    policy = Policy(confirm_commands=(), sandbox=SandboxPolicy(git=("run_command",)))
    plan = bootstrap_plan("make add() return the sum", policy=policy)
    run_id = create_run(store, plan, workspace=ws, agent=agent_settings())
    commit = "git -c user.name=t -c user.email=t@t commit -am 'fix add'"
    replies = fix_replies()
    replies[4:4] = [call("run_command", command=commit)]
    drive(store, run_id, ScriptedModel(replies))
    packet = sender_packet(store.events(run_id))
    (made,) = [a for a in packet.artifacts if a.kind == "commit"]
    assert made.note == "committed by step fix: fix add"
    ctx = receiver(store, ws, packet)
    (ws / "calc.py").write_text("changed since\n")
    got = fetch(store, ctx, ref=made.ref, path="calc.py")
    assert got.ok and got.content.endswith("return a + b\n")


def test_what_the_sender_recorded_is_made_fit_however_hostile(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "trestle.db")
    ws = sample_workspace(tmp_path)
    run_id = start_run(store, ws)
    replies = fix_replies()
    replies[1] = json.dumps(
        {
            "summary": "clears the screen \x1b[2J\x00" + "y" * 10_000,
            "relevant_files": [{"path": "calc.py\nrm -rf /", "why": "\x07" * 3_000}],
            "how_to_test": "pytest",
            "open_questions": ["q" * 9_000] * 100,
        }
    )
    drive(store, run_id, ScriptedModel(replies))
    packet = sender_packet(store.events(run_id))
    assert parse_packet(packet.model_dump_json()) == packet  # within every limit
    understood = packet.findings[0]
    assert understood.claim.startswith("clears the screen \ufffd[2J\ufffd")
    assert understood.evidence[0].ref == "calc.py rm -rf /"
    assert len(packet.open_questions) == 1  # the same question, once
