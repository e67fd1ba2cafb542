"""Handoff packets: what one agent passes to another that takes over part of its work.

A packet is structured so that the receiver gets what it needs and can ask for the
rest by name, instead of being handed everything up front::

    HandoffPacket
    ├── goal, acceptance criteria, constraints and rules   (pinned in the receiver)
    ├── findings         claim + evidence (file:line, a command's output, text)
    ├── decisions        what was decided, and why
    ├── open questions
    └── artifacts        references: a file, a checkpoint, a commit, the sender's
                         transcript (run and seq range), one tool call's output

The receiver's first message shows :func:`render`'s text; the receiver pulls an
artifact with the ``fetch_artifact`` tool, which resolves only the references the
packet lists. The same record also carries the two plainer ways to hand over work,
so that they can be measured against the packet (``bench/handoff.py``): ``mode``
``last_message`` (the sender's final message) and ``transcript`` (all of it), both in
``body``.

Every size is bounded and every text is checked: a packet that is too large, that
holds control characters (other than newlines and tabs in multi-line text) or
unpaired surrogates is refused with the field and the reason. :func:`clean_text`
makes outside text (a tool's output) fit those rules. Builders from a recorded run
are in :mod:`trestle.core.packets`. Pure: no IO.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationError, model_validator

from trestle.core.errors import ConfigError
from trestle.core.estimate import estimate_text_tokens
from trestle.core.field_problems import field_path
from trestle.core.record import Record
from trestle.core.safetext import MAX_DEPTH, json_depth

HandoffMode = Literal["packet", "last_message", "transcript"]
EvidenceKind = Literal["file", "command", "text"]
ArtifactKind = Literal["file", "checkpoint", "commit", "transcript", "tool_output"]

MAX_LINE = 500  # a reference, a note
MAX_TEXT = 4_000  # a goal, a claim, a decision, a question, a criterion
MAX_EXCERPT = 2_000  # one piece of evidence
MAX_BODY = 1_000_000  # a last message or a whole transcript
MAX_ITEMS = 64  # criteria, constraints, findings, decisions, questions
MAX_EVIDENCE = 16  # per finding
MAX_ARTIFACTS = 200
MAX_PACKET_JSON = 4 * MAX_BODY  # a packet given as JSON text

HEADER = "[trestle: handoff]"
FETCH_HINT = "fetch any of them with fetch_artifact(ref=...)"

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _checked(text: str, control: re.Pattern[str]) -> str:
    # an unpaired surrogate never gets here: pydantic's string check refuses it
    bad = control.search(text)
    if bad is not None:
        char = f"U+{ord(bad.group()):04X}"
        raise ValueError(f"holds the control character {char} at character {bad.start()}")
    return text


def _line(text: str) -> str:
    return _checked(text, _LINE_CONTROL)


def _text(text: str) -> str:
    return _checked(text, _CONTROL)


Line = Annotated[str, Field(max_length=MAX_LINE), AfterValidator(_line)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT), AfterValidator(_text)]
Excerpt = Annotated[str, Field(max_length=MAX_EXCERPT), AfterValidator(_text)]
Body = Annotated[str, Field(max_length=MAX_BODY), AfterValidator(_text)]


def clean_text(text: str, limit: int = MAX_TEXT, *, one_line: bool = False) -> str:
    """Outside text made fit for a packet: surrogates and control characters replaced
    (``\\r\\n`` becomes ``\\n``), and held to ``limit`` characters (its head kept, with
    a note of how much was cut)."""
    text = text.replace("\r\n", "\n")
    text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    text = (_LINE_CONTROL if one_line else _CONTROL).sub("\ufffd" if not one_line else " ", text)
    if len(text) <= limit:
        return text
    keep = max(0, limit - 40)  # the note takes fewer than 40 characters
    return (text[:keep] + f" [... {len(text) - keep:,} more characters]")[:limit]


class Evidence(Record):
    """What backs a finding.

    Attributes:
        kind: ``file`` (``ref`` is ``path`` or ``path:line`` or ``path:first-last``),
            ``command`` (``ref`` is the command, or its tool call's reference) or
            ``text``.
        ref: where it is.
        excerpt: what it says there, verbatim (clipped).
    """

    kind: EvidenceKind
    ref: Line = ""
    excerpt: Excerpt = ""


class Finding(Record):
    """Something the sender found out, and what shows it."""

    claim: Text
    evidence: tuple[Evidence, ...] = Field(default=(), max_length=MAX_EVIDENCE)


class Decision(Record):
    """A decision the sender took, and why."""

    what: Text
    why: Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_text)] = ""


class ArtifactRef(Record):
    """Something the receiver may fetch by reference (``fetch_artifact``).

    Attributes:
        kind: ``file`` (a workspace path), ``checkpoint`` (a workspace snapshot's commit
            id; fetch a file in it by path), ``commit`` (a commit of the workspace's own
            git repository; likewise), ``transcript`` (``RUN:FIRST-LAST``, a run's events
            by seq) or ``tool_output`` (``RUN:SEQ``, the event that ended a tool call).
        ref: the reference, as ``fetch_artifact`` takes it.
        note: what it is, so the receiver can tell whether to fetch it.
    """

    kind: ArtifactKind
    ref: Annotated[str, Field(min_length=1, max_length=MAX_LINE), AfterValidator(_line)]
    note: Line = ""


class HandoffPacket(Record):
    """What one agent hands another; see the module docstring.

    Attributes:
        mode: ``packet`` (the structured fields), ``last_message`` or ``transcript``
            (``body`` holds the sender's last message, or its whole transcript).
        sender: the sending run's id, if there is one.
        goal: what the receiver is to achieve.
        acceptance: how the receiver's work will be judged.
        constraints: rules and requirements the receiver must keep.
        findings: what the sender found out, with evidence.
        decisions: what the sender decided, and why.
        open_questions: what the sender did not settle.
        artifacts: what the receiver may fetch by reference.
        body: the last message or the transcript (other modes only).
    """

    mode: HandoffMode = "packet"
    sender: Line = ""
    goal: Text
    acceptance: tuple[Text, ...] = Field(default=(), max_length=MAX_ITEMS)
    constraints: tuple[Text, ...] = Field(default=(), max_length=MAX_ITEMS)
    findings: tuple[Finding, ...] = Field(default=(), max_length=MAX_ITEMS)
    decisions: tuple[Decision, ...] = Field(default=(), max_length=MAX_ITEMS)
    open_questions: tuple[Text, ...] = Field(default=(), max_length=MAX_ITEMS)
    artifacts: tuple[ArtifactRef, ...] = Field(default=(), max_length=MAX_ARTIFACTS)
    body: Body = ""

    @model_validator(mode="after")
    def _fits_its_mode(self) -> HandoffPacket:
        if self.mode == "packet" and self.body:
            raise ValueError(
                "a packet carries its content in fields; 'body' is for the "
                "last_message and transcript modes"
            )
        refs = [a.ref for a in self.artifacts]
        twice = sorted({r for r in refs if refs.count(r) > 1})
        if twice:
            raise ValueError(f"artifact reference {twice[0]!r} is listed twice")
        return self

    def artifact(self, ref: str) -> ArtifactRef | None:
        """The artifact listed as ``ref``, or None."""
        return next((a for a in self.artifacts if a.ref == ref), None)


def carrying(body: object, packet: HandoffPacket) -> dict[str, object]:
    """A message's body with ``packet`` attached (see :func:`carried`)."""
    return {"message": body, "handoff": packet.model_dump(mode="json")}


def looks_carrying(body: object) -> bool:
    """Whether ``body`` has the shape of a body that carries a packet."""
    return isinstance(body, dict) and body.keys() == {"message", "handoff"}


def carried(body: object, sender: str) -> tuple[object, HandoffPacket | None]:
    """A message body's own part, and the packet it carries if it carries one from
    ``sender``, the message's sender: a body made by :func:`carrying`. A body that
    only looks like one, or a packet naming another sender, is left as it is."""
    if isinstance(body, dict) and looks_carrying(body):
        try:
            packet = HandoffPacket.model_validate(body["handoff"])
        except ValidationError:
            return body, None
        if packet.sender == sender:
            return body["message"], packet
    return body, None


def parse_packet(text: str, *, source: str = "handoff packet") -> HandoffPacket:
    """A packet from JSON text (size and nesting checked before parsing).

    Raises:
        ConfigError: the text is too large, too deep, not JSON, or not a valid packet;
            the message names ``source``, each bad field and why.
    """
    if len(text) > MAX_PACKET_JSON:
        raise ConfigError(f"{source}: {len(text):,} characters, more than {MAX_PACKET_JSON:,}")
    if json_depth(text) > MAX_DEPTH:
        raise ConfigError(f"{source}: not readable as JSON: nested deeper than {MAX_DEPTH} levels")
    try:  # surrogates are kept, so that the packet's own check names them
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{source}: not readable as JSON: {exc}") from None
    try:
        return HandoffPacket.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{field_path(e['loc']) or 'the packet'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:10]
        ]
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None


# --- what the receiver sees -------------------------------------------------------------


def render(packet: HandoffPacket) -> str:
    """The packet as the receiver's first message shows it: compact, evidence inline,
    artifacts listed by reference with how to fetch them."""
    lines = [HEADER + (f" from run {packet.sender}" if packet.sender else "")]
    lines.append(f"Goal: {packet.goal}")
    lines += _listed("Acceptance criteria", packet.acceptance)
    lines += _listed("Constraints and rules", packet.constraints)
    if packet.findings:
        lines.append("Findings:")
        for finding in packet.findings:
            lines.append(f"- {finding.claim}")
            for ev in finding.evidence:
                where = f" {ev.ref}" if ev.ref else ""
                lines.append(f"  [{ev.kind}{where}]" + (":" if ev.excerpt else ""))
                lines += [f"    {line}" for line in ev.excerpt.splitlines()]
    if packet.decisions:
        lines.append("Decisions:")
        lines += [f"- {d.what}" + (f" (why: {d.why})" if d.why else "") for d in packet.decisions]
    lines += _listed("Open questions", packet.open_questions)
    if packet.artifacts:
        lines.append(f"Artifacts ({FETCH_HINT}):")
        lines += [
            f"- {a.kind} {a.ref}" + (f" - {a.note}" if a.note else "") for a in packet.artifacts
        ]
    if packet.mode == "last_message" and packet.body:
        lines += ["The sender's last message:", packet.body]
    elif packet.mode == "transcript" and packet.body:
        lines += ["The sender's transcript:", packet.body]
    return "\n".join(lines)


def _listed(title: str, items: tuple[str, ...]) -> list[str]:
    return [f"{title}:", *(f"- {item}" for item in items)] if items else []


def pinned(packet: HandoffPacket) -> tuple[str, ...]:
    """The packet's lines that the receiver keeps pinned through every context
    compression: its goal, acceptance criteria and constraints."""
    return (
        f"Handed-over goal: {packet.goal}",
        *(f"Acceptance: {c}" for c in packet.acceptance),
        *(f"Constraint: {c}" for c in packet.constraints),
    )


def handoff_tokens(packet: HandoffPacket) -> int:
    """What the packet costs the receiver's context, by the offline estimate."""
    return estimate_text_tokens(render(packet))
