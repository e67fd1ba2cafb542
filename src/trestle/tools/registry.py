"""The tool registry: the one way a model's tool call is checked, gated and run.

:meth:`ToolRegistry.call` takes a tool call as a model produced it (a name and a raw
JSON string) and always returns an :class:`~trestle.tools.base.Observation`. In order:

1. an unknown name is refused, listing the tools there are (and the nearest one);
2. a tool outside the phase's allowed natures is refused, saying which are allowed;
3. the arguments must parse as a JSON object (else: the parse error and where);
4. they must validate against the tool's model (else: each bad field and why);
5. paths the call would write are jailed, then the gate reviews the call's facts:
   allow, deny (the model is told why) or defer (a human decides; nothing runs);
6. only then does the tool run.

Bad model output never raises here; it becomes an observation the model can read
and correct. A gate that raises is the runtime's problem and propagates.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel, JsonValue, ValidationError

from trestle.core.conversation import ToolSchema
from trestle.core.errors import ConfigError
from trestle.core.field_problems import did_you_mean
from trestle.core.policy import ActionFacts, Nature
from trestle.core.safetext import MAX_ARGUMENTS, MAX_DEPTH, json_depth, json_without_surrogates
from trestle.execution.actions import cap_output
from trestle.tools.base import (
    GatedCall,
    GateVerdict,
    Observation,
    Tool,
    ToolContext,
    ToolFailure,
    ToolGate,
)
from trestle.tools.jail import normalise

TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what function-calling APIs accept
HEADER_ALLOWANCE = 1_000  # characters a tool may add to capped output (a header, a note)


class ToolRegistry:
    """The tools one agent may call. An explicit instance: there are no global tools.

    Args:
        tools: tools to register at once, in the order models should see them.
    """

    def __init__(self, tools: Iterable[Tool[Any]] = ()) -> None:
        self._tools: dict[str, Tool[Any]] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool[Any]) -> None:
        """Add ``tool``; a second tool with the same name is a :class:`ConfigError`."""
        if not TOOL_NAME.fullmatch(tool.name):
            raise ConfigError(
                f"tool name {tool.name!r} is invalid: use 1-64 letters, digits, '_' or '-'"
            )
        if tool.name in self._tools:
            raise ConfigError(f"tool {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool[Any]:
        """The tool called ``name``; a :class:`ConfigError` if there is none."""
        try:
            return self._tools[name]
        except KeyError:
            raise ConfigError(f"no tool {name!r}{did_you_mean(name, self._tools)}") from None

    def names(self, natures: Collection[Nature] | None = None) -> tuple[str, ...]:
        """Tool names in registration order, optionally only those of ``natures``."""
        return tuple(t.name for t in self._tools.values() if natures is None or t.nature in natures)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool[Any]]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def schemas(self, natures: Collection[Nature] | None = None) -> list[ToolSchema]:
        """What a model is shown: every tool, or only those a phase allows."""
        return [self._tools[name].schema() for name in self.names(natures)]

    def validated(self, name: str, arguments: Mapping[str, Any]) -> dict[str, JsonValue]:
        """``arguments`` for tool ``name`` as a call runs with them: checked against the
        tool's schema, defaults filled in. ConfigError naming what is wrong (an unknown
        tool, a missing or unknown argument, a value of the wrong type)."""
        tool = self.get(name)
        try:
            raw = json.dumps(arguments, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"arguments for {name} are not JSON: {exc}") from None
        parsed = _parse(tool, raw)
        if isinstance(parsed, Observation):
            raise ConfigError(parsed.error or parsed.content)
        dumped: dict[str, JsonValue] = parsed.model_dump(mode="json")
        return dumped

    async def probe(self, name: str, raw_arguments: str, ctx: ToolContext) -> str | None:
        """The tool's own probe of a call a crash cut short (see :meth:`Tool.probe`):
        what shows its effect is in place, or None if it cannot tell (an unknown
        tool, arguments that no longer parse, a probe that fails)."""
        tool = self._tools.get(name)
        if tool is None:
            return None
        parsed = _parse(tool, raw_arguments)
        if isinstance(parsed, Observation):
            return None
        try:
            return await tool.probe(ctx, parsed)
        except Exception:  # a probe that cannot look leaves the outcome unknown
            return None

    def facts(self, name: str, raw_arguments: str, ctx: ToolContext) -> ActionFacts | None:
        """How the tool describes this call to the gate, or None if it cannot say (an
        unknown tool, arguments that do not parse): for a human's look after a crash."""
        tool = self._tools.get(name)
        if tool is None:
            return None
        parsed = _parse(tool, raw_arguments)
        if isinstance(parsed, Observation):
            return None
        try:
            return tool.facts(parsed, ctx)
        except Exception:
            return None

    async def call(
        self,
        name: str,
        raw_arguments: str,
        ctx: ToolContext,
        gate: ToolGate,
        *,
        allowed_natures: Collection[Nature] | None = None,
        phase: str | None = None,
        offered: Collection[str] | None = None,
    ) -> Observation:
        """Check, gate and run one tool call from a model.

        Args:
            name: the tool the model named.
            raw_arguments: the arguments exactly as the model wrote them (JSON text).
            ctx: where and within which limits the tool runs.
            gate: decides whether the call may run. Required: there is no default.
            allowed_natures: the natures the current phase allows; ``None`` for all.
            phase: the current phase's name, for the refusal message.
            offered: the tools the model was shown, when not all the phase allows;
                any other is refused as unknown.

        Returns:
            The observation for the model. It has ``deferred`` set when the gate
            wants a human to decide first; the tool has not run then.
        """
        tool = self._tools.get(name)
        if tool is not None and allowed_natures is not None and tool.nature not in allowed_natures:
            return self._refuse_in_phase(tool, allowed_natures, phase, offered)
        if tool is None or (offered is not None and name not in offered):
            known = tuple(n for n in self.names(allowed_natures) if offered is None or n in offered)
            if len(name) > MAX_NAME:  # quoted short, and no fuzzy match over it
                shown, hint = f"{name[:MAX_NAME]!r}… ({len(name):,} characters)", ""
            else:
                shown, hint = repr(name), did_you_mean(name, known)
            return Observation.failure(
                f"unknown tool {shown}{hint}; "
                f"the tools you can call are: {', '.join(known) or 'none'}"
            )
        parsed = _parse(tool, raw_arguments)
        if isinstance(parsed, Observation):
            return parsed
        try:
            facts = _jail_paths(tool.facts(parsed, ctx), ctx)
        except ToolFailure as exc:
            return Observation.failure(str(exc))
        except Exception as exc:  # an extra tool's bug must not end the run
            return Observation.failure(f"{name} failed: {type(exc).__name__}: {exc}")
        verdict = await gate.review(
            GatedCall(
                tool=name,
                arguments=parsed.model_dump(mode="json"),
                facts=facts,
                run_id=ctx.run_id,
                step_id=ctx.step_id,
            )
        )
        edited = verdict.arguments if verdict.decision == "allow" else None
        why_edited = verdict.reason
        if edited is not None:
            # a human edited the call before approving it: the edited call is what
            # runs, checked and gated like any call, and the model is told so
            changed = await self._edited(tool, edited, ctx, gate)
            if isinstance(changed, Observation):
                return changed
            parsed, verdict = changed
        gate_data: dict[str, JsonValue] = {"gate": verdict.decision, "reason": verdict.reason}
        if verdict.gate is not None:  # the policy's decision: a refusal's end records it
            gate_data["decision"] = verdict.gate.decision.model_dump(mode="json")
        if verdict.decision == "deny":
            return Observation.failure(f"{name} was refused: {verdict.reason}", data=gate_data)
        if verdict.decision == "defer":
            error = f"{name} waits for a human decision: {verdict.reason}"
            return Observation(
                ok=False,
                content=f"{error}. It has not run.",
                error=error,
                data={**gate_data, "facts": facts.model_dump(mode="json")},
                deferred=True,
            )
        if verdict.by_human != ctx.approved or verdict.bound is not None:
            ctx = dataclasses.replace(ctx, approved=verdict.by_human, bound=verdict.bound)
        observation = await _run(tool, parsed, ctx)
        limit = ctx.output_cap + HEADER_ALLOWANCE
        if len(observation.content) > limit:  # a backstop for tools that do not cap
            observation = observation.model_copy(
                update={"content": cap_output(observation.content, limit)}
            )
        if edited is not None:
            said = json.dumps(parsed.model_dump(mode="json"), ensure_ascii=False)
            note = f"[{why_edited}: it ran as {name}({said}), not as you wrote it]\n"
            observation = observation.model_copy(
                update={
                    "content": note + observation.content,
                    "data": {**observation.data, "edited_by_human": True},
                }
            )
        return observation

    async def _edited(
        self, tool: Tool[Any], arguments: dict[str, JsonValue], ctx: ToolContext, gate: ToolGate
    ) -> tuple[BaseModel, GateVerdict] | Observation:
        """The call as a human edited it, validated and put before the gate in its turn
        (its scope, its tier, the decision that approved it): what runs, or why not."""
        parsed = _parse(tool, json.dumps(arguments))
        if isinstance(parsed, Observation):
            return parsed
        try:
            facts = _jail_paths(tool.facts(parsed, ctx), ctx)
        except ToolFailure as exc:
            return Observation.failure(str(exc))
        call = GatedCall(
            tool=tool.name,
            arguments=parsed.model_dump(mode="json"),
            facts=facts,
            run_id=ctx.run_id,
            step_id=ctx.step_id,
        )
        verdict = (await gate.review(call)).model_copy(update={"arguments": None})
        if verdict.decision == "allow":
            return parsed, verdict
        if verdict.decision == "defer":  # not the call approved (its arguments differ)
            error = f"{tool.name} as a human edited it waits for a human decision: {verdict.reason}"
            return Observation(
                ok=False,
                content=f"{error}. It has not run.",
                error=error,
                data={"gate": "defer", "reason": verdict.reason},
                deferred=True,
            )
        why = f"the call as a human edited it did not pass the gate: {verdict.reason}"
        return Observation.failure(f"{tool.name} was refused: {why}", data={"gate": "deny"})

    def _refuse_in_phase(
        self,
        tool: Tool[Any],
        allowed: Collection[Nature],
        phase: str | None,
        offered: Collection[str] | None,
    ) -> Observation:
        names = [n for n in self.names(allowed) if offered is None or n in offered]
        kinds = ", ".join(sorted(allowed)) or "no"
        return Observation.failure(
            f"{tool.name} is not allowed in {phase or 'this phase'}: it is a {tool.nature} "
            f"tool, and only {kinds} tools are allowed here "
            f"({', '.join(names) or 'none registered'})"
        )


MAX_NAME = 200  # characters of a tool name quoted back


def _parse(tool: Tool[Any], raw: str) -> BaseModel | Observation:
    """The validated arguments, or an observation saying exactly what is wrong."""
    if len(raw) > MAX_ARGUMENTS:
        return Observation.failure(
            f"arguments for {tool.name} are {len(raw):,} characters, more than the "
            f"{MAX_ARGUMENTS:,} a call may carry; write large content in parts"
        )
    if json_depth(raw) > MAX_DEPTH:
        return Observation.failure(
            f"arguments for {tool.name} nest deeper than {MAX_DEPTH} levels; "
            f"expected {_signature(tool)}"
        )
    try:
        # some servers send "" for no arguments; an escaped lone surrogate ("\\ud83d")
        # is valid JSON that decodes to text no file name or store can hold
        value = json_without_surrogates(json.loads(raw)) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        before = raw[max(exc.pos - 30, 0) : exc.pos]
        where = f"just after {before!r}" if before else "at the start"
        return Observation.failure(
            f"arguments for {tool.name} are not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno} (character {exc.pos}), {where}"
        )
    except (ValueError, RecursionError) as exc:  # too deeply nested, too many digits
        return Observation.failure(f"arguments for {tool.name} are not usable JSON: {exc}")
    if not isinstance(value, dict):
        return Observation.failure(
            f"arguments for {tool.name} must be a JSON object, not {type(value).__name__}; "
            f"expected {_signature(tool)}"
        )
    try:
        args: BaseModel = tool.arguments.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(_problem(error) for error in exc.errors(include_url=False))
        return Observation.failure(
            f"invalid arguments for {tool.name}: {problems}; expected {_signature(tool)}"
        )
    return args


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "arguments"
    if len(where) > MAX_NAME:  # an argument name is the model's text too: quoted short
        where = where[:MAX_NAME] + "..."
    if error["type"] == "missing":
        return f"{where!r} is required"
    if error["type"] == "extra_forbidden":
        return f"{where!r} is not an argument of this tool"
    got = repr(error["input"])
    got = got if len(got) <= 60 else got[:57] + "..."
    return f"{where!r}: {error['msg']} (got {got})"


def _signature(tool: Tool[Any]) -> str:
    """``path (string, required), start_line (integer)``: the arguments at a glance."""
    schema = tool.arguments.model_json_schema()
    required = set(schema.get("required", ()))
    parts = []
    for field, spec in schema.get("properties", {}).items():
        kind = spec.get("type") or "/".join(
            str(option.get("type", "?")) for option in spec.get("anyOf", ())
        )
        parts.append(f"{field} ({kind}{', required' if field in required else ''})")
    return ", ".join(parts) or "no arguments ({})"


def _jail_paths(facts: ActionFacts, ctx: ToolContext) -> ActionFacts:
    """Refuse written paths outside the workspace; give the gate their canonical form,
    so a rule on ``migrations/`` also catches ``./src/../migrations/x.sql``."""
    if not facts.paths:
        return facts
    paths = tuple(normalise(ctx, path) for path in facts.paths)
    return facts.model_copy(update={"paths": paths})


async def _run(tool: Tool[Any], args: BaseModel, ctx: ToolContext) -> Observation:
    try:
        return await tool.run(ctx, args)
    except ToolFailure as exc:
        return Observation.failure(str(exc))
    except Exception as exc:
        # a tool's bug, or input nobody foresaw (a lone surrogate in a file's text):
        # the model is told, and the run goes on
        return Observation.failure(f"{tool.name} failed: {type(exc).__name__}: {exc}")
