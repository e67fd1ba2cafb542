"""The approval policy: which tier (auto, log or confirm) an action runs under, and why.

An action (a plan step, later an agent's tool call) is described by :class:`ActionFacts`.
:func:`classify` walks a fixed precedence and stops at the first level that decides:

1. operator rules (``trestle.toml``, the person running it), first match;
2. the action's own ``tier`` (a step's ``approval:``), then the plan's rules, first match;
3. irreversible actions need confirmation, as do those whose tool's definition asks
   for it (an MCP tool's annotations);
4. so do commands that match ``confirm_commands`` (commits, pushes, publishes, git
   commands that discard work), read through wrappers (:mod:`trestle.core.invocations`),
   and commands whose effect cannot be followed (``eval``, ``$X push``, ``curl | sh``);
5. so does anything out of scope (a write outside ``write_paths``, a command outside
   ``commands``);
6. so does an action whose adjusted confidence is below the threshold;
7. otherwise the nature decides: reads, tests, ``auto_commands`` and writes only to
   ``output_paths`` are auto; other writes, commands and calls are logged.

Every decision names the level (``source``) and says in a sentence what matched
(``reason``). Audit sampling then draws a reproducible number per action, so a replayed
run picks the same actions for review.

Pure: no IO. Reading ``trestle.toml`` lives in :mod:`trestle.formats.policyfile`.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Literal, NamedTuple

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, model_validator

from trestle.core.durations import parse_duration
from trestle.core.globs import glob_matches, glob_regex
from trestle.core.invocations import Meaning, follow
from trestle.core.record import Record
from trestle.core.shellparse import parse as parse_shell

Tier = Literal["auto", "log", "confirm"]
Nature = Literal["read", "test", "write", "command", "call"]
Audit = Literal["before", "after"]

TIER_ORDER: Mapping[Tier, int] = {"auto": 0, "log": 1, "confirm": 2}
"""Tiers from least to most human involvement."""


class ActionFacts(Record):
    """What the policy needs to know about one action (a plan step, or an agent's tool call)."""

    nature: Nature
    name: str  # the step id, or the tool name
    command: str | None = None  # the shell command, when the action runs one
    cwd: str | None = None  # where in the workspace it runs, when not at its root
    paths: tuple[str, ...] = ()  # workspace-relative paths the action writes
    irreversible: bool = False
    tags: tuple[str, ...] = ()
    cost: float | None = None  # estimated dollars
    confidence: float | None = None  # 0..1, the author's or the agent's
    failed_attempts: int = 0  # lowers confidence
    alerts: int = 0  # monitor alerts; lower confidence
    tier: Tier | None = None  # the author's explicit tier for this action
    # why the tool's own definition asks a human for each call (an MCP tool's
    # annotations); below every rule, beside ``irreversible``
    confirm: str | None = None


# --- patterns ------------------------------------------------------------------------

REGEX_PREFIX = "re:"


def _valid_command_pattern(pattern: str) -> str:
    if pattern.startswith(REGEX_PREFIX):
        regex = pattern.removeprefix(REGEX_PREFIX)
        if not regex:
            raise ValueError(f"empty regex in {pattern!r}")
        try:
            re.compile(regex)
        except (re.error, OverflowError, RecursionError) as exc:  # a{99999999999}
            raise ValueError(f"invalid regex {regex!r}: {exc}") from None
    return pattern


CommandPattern = Annotated[str, Field(min_length=1), AfterValidator(_valid_command_pattern)]
"""A glob matched against a whole command, or ``re:`` and a regex that must match it all."""

PathGlob = Annotated[str, Field(min_length=1)]
"""A glob on workspace-relative paths: ``*`` stays within a directory, ``**`` crosses."""


def command_pattern_matches(pattern: str, command: str) -> bool:
    """Does ``pattern`` (a glob, or ``re:`` + regex) match the whole of ``command``?"""
    if pattern.startswith(REGEX_PREFIX):
        return _regex(pattern.removeprefix(REGEX_PREFIX)).fullmatch(command) is not None
    return glob_matches(command, pattern)


def path_glob_matches(pattern: str, path: str) -> bool:
    """Does ``pattern`` match the whole workspace-relative ``path``?

    ``*`` and ``?`` never cross a ``/``; ``**`` does (``src/**``, ``**/*.lock``); a
    pattern ending in ``/`` means everything under that directory.
    """
    return _glob(pattern).fullmatch(path) is not None


def path_glob_reaches(pattern: str, path: str) -> bool:
    """Does ``pattern`` match the workspace-relative ``path`` or a path under it?

    A command's written path may be a directory (``rm -rf deploy``, ``cp -r x/.
    deploy``): what it changes is everything under it, so a rule on ``deploy/**``
    reaches it. ``""`` and ``"."`` are the workspace's top, under which every pattern
    reaches.
    """
    glob = pattern.removeprefix("./")
    if glob.endswith("/"):
        glob += "**"
    parts = tuple(p for p in glob.split("/") if p not in ("", "."))
    names = tuple(n for n in path.split("/") if n not in ("", "."))
    return _reaches(parts, names)


@lru_cache(maxsize=4096)
def _reaches(parts: tuple[str, ...], names: tuple[str, ...]) -> bool:
    """Whether the glob components ``parts`` match ``names`` and then, if any are left,
    some path below them: once ``names`` run out, any parts left match some name."""
    if not names:
        return True
    if not parts:
        return False
    head = parts[0]
    if "**" in head:  # crosses directories: none of them, or this one and maybe more
        return _reaches(parts[1:], names) or _reaches(parts, names[1:])
    return glob_matches(names[0], head) and _reaches(parts[1:], names[1:])


@lru_cache(maxsize=1024)
def _regex(regex: str) -> re.Pattern[str]:
    return re.compile(regex)


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    glob = pattern.removeprefix("./")
    if glob.endswith("/"):
        glob += "**"
    return re.compile(glob_regex(glob))


# --- what a shell command does ---------------------------------------------------------


@dataclass(frozen=True)
class CommandShape:
    """A shell command read (:mod:`trestle.core.shellparse`) and followed
    (:mod:`trestle.core.invocations`).

    Attributes:
        command: the whole command, stripped.
        parts: the simple commands joined by ``;``, ``&&``, ``||``, ``|``, ``&`` or
            newlines, each with unquoted whitespace collapsed to one space.
        writes: files it changes: output redirections (``>``, ``>>``, ``2>``, ``&>``,
            without ``/dev/null`` and descriptor copies such as ``2>&1``), what ``rm``,
            ``mv``, ``cp``, ``tee``, ``find -delete``... name, and output options such
            as ``git diff --output=FILE``; relative paths after a ``cd`` are joined to it.
        opaque: the command runs commands inside ``$(...)``, backticks, ``<(...)`` or
            ``>(...)``.
        runs: every program it runs as the policy's patterns read it, wrappers and
            global options set aside (``env FOO=1 /usr/bin/git -C . push`` runs
            ``git push``), substitutions and ``sh -c`` strings included.
        unknown: what could not be followed (``eval``, ``$X push``, a shell reading
            commands from its input, an unterminated quote); non-empty means confirm.
        nested: the simple commands inside substitutions.
    """

    command: str
    parts: tuple[str, ...]
    writes: tuple[str, ...]
    opaque: bool
    runs: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()  # what runs a command line of its own: 'rg --pre', 'trap'
    unknown: tuple[str, ...] = ()
    nested: tuple[str, ...] = ()


_NOT_FILES = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr"})


@lru_cache(maxsize=4096)
def command_shape(command: str) -> CommandShape:
    """Read ``command`` as the shell would, and follow what it runs and writes.

    Never raises: what cannot be read is listed in ``unknown``.
    """
    script = parse_shell(command)
    try:
        meaning = follow(script)
    except RecursionError:  # thousands of a launcher's options: unread, so asked about
        meaning = Meaning(invocations=(), writes=(), unknown=("options nested too deep to read",))
    runs = tuple(dict.fromkeys(t for i in meaning.invocations for t in i.texts))
    return CommandShape(
        command=command.strip(),
        parts=tuple(c.text for c in script.commands),
        writes=tuple(w for w in meaning.writes if w not in _NOT_FILES),
        opaque=script.substitutions,
        runs=runs,
        lines=meaning.lines,
        unknown=meaning.unknown,
        nested=tuple(c.text for c in script.nested),
    )


# a brace expansion with no braces inside it, whose alternatives bash writes out
_BRACES = re.compile(r"\{([^{}]*(?:,|\.\.)[^{}]*)\}")
_SEQUENCE = re.compile(r"(?:-?\d+\.\.-?\d+|[A-Za-z]\.\.[A-Za-z])(?:\.\.-?\d+)?")


def _brace_words(path: str, most: int = 256) -> list[str] | None:
    """The paths bash writes ``path``'s brace expansions out to (``{a,b}``, ``{1..9}``,
    ``{x..z}``), or None when there would be more than ``most`` or one cannot be
    told."""
    done: list[str] = []
    todo = [path]
    while todo:
        word = todo.pop()
        braces = _BRACES.search(word)
        if braces is None:
            done.append(word)
            continue
        inner = braces.group(1)
        if "," in inner:
            parts = inner.split(",")
        elif _SEQUENCE.fullmatch(inner):
            parts = _sequence(inner, most)
            if parts is None:
                return None
        else:
            return None
        todo += [word[: braces.start()] + part + word[braces.end() :] for part in parts]
        if len(done) + len(todo) > most:
            return None
    return done


def _sequence(inner: str, most: int) -> list[str] | None:
    """What bash writes ``{a..e}`` or ``{1..9..2}`` out to (None past ``most`` words):
    letters or numbers, never a ``/`` or ``..``, but a rule's path may name one
    (``deplo{x..z}`` is ``deploy``)."""
    first, last, *step = inner.split("..")
    stride = abs(int(step[0])) if step and step[0].lstrip("-").isdigit() else 1
    if first.lstrip("-").isdigit() and last.lstrip("-").isdigit():
        a, b = int(first), int(last)
        numbers = range(a, b + 1, stride or 1) if a <= b else range(a, b - 1, -(stride or 1))
        return [str(n) for n in numbers] if len(numbers) <= most else None
    a, b = ord(first), ord(last)
    letters = range(a, b + 1, stride or 1) if a <= b else range(a, b - 1, -(stride or 1))
    return [chr(c) for c in letters] if len(letters) <= most else None


def workspace_path(path: str) -> str | None:
    """``path`` normalised within the workspace, or None if it may lie outside it.

    Absolute paths, ``..`` escapes, and paths the shell would expand (``~``, ``$X``,
    globs) are all treated as outside: the policy cannot tell where they land. A brace
    expansion (``{a,../x}``: bash's, /bin/sh on many systems) is inside only when every
    path it makes is.
    """
    if not path or path.startswith(("/", "~")) or any(c in path for c in "$`*?[\\"):
        return None
    if _BRACES.search(path) is not None:  # bash makes '{a,../x}' two paths: a and ../x
        words = _brace_words(path)
        if words is None or any(workspace_path(w) is None for w in words):
            return None
        return posixpath.normpath(path)
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../"):
        return None
    return normal


# --- the policy ------------------------------------------------------------------------

RULE_CRITERIA = ("paths", "commands", "tags", "natures", "cost_above")


class Rule(Record):
    """Force a tier on every action that meets all of the rule's criteria.

    Within one criterion any listed value may match; across criteria, every one given
    must match. A rule needs at least one criterion.
    """

    name: str = Field(min_length=1)
    tier: Tier
    paths: tuple[PathGlob, ...] = Field(default=(), description="globs on written paths")
    commands: tuple[CommandPattern, ...] = Field(
        default=(), description="globs or re: regexes on the command or one of its parts"
    )
    tags: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    natures: tuple[Nature, ...] = ()
    cost_above: float | None = Field(default=None, ge=0, le=1e12, description="estimated dollars")

    @model_validator(mode="after")
    def _has_a_criterion(self) -> Rule:
        if not any(getattr(self, field) not in ((), None) for field in RULE_CRITERIA):
            raise ValueError(f"a rule needs at least one criterion: {', '.join(RULE_CRITERIA)}")
        return self


class Scope(Record):
    """Where a run may write and what it may run without asking."""

    write_paths: tuple[PathGlob, ...] = Field(
        default=(), description="globs a run may write to; empty means the whole workspace"
    )
    output_paths: tuple[PathGlob, ...] = Field(
        default=(), description="designated outputs: in scope, and writes to them are auto"
    )
    commands: tuple[CommandPattern, ...] = Field(
        default=(), description="commands a run may execute; empty means any"
    )


DEFAULT_AUTO_COMMANDS: tuple[str, ...] = (
    "pytest*",
    "python -m pytest*",
    "git status*",
    "git diff",
    "git diff *",  # not git difftool, which runs a tool
    "git log*",
    "git show*",
    "ls*",
    "pwd",
    "cat *",
    "head *",
    "tail *",
    "wc *",
    "grep *",
    "rg *",
)
DEFAULT_CONFIRM_COMMANDS: tuple[str, ...] = (
    "git commit*",
    "git push*",
    # git's other ways to push: a subtree, the plumbing, Subversion, Perforce, LFS objects
    "git subtree push*",
    "git send-pack*",
    "git http-push*",
    "git svn dcommit*",
    "git p4 submit*",
    "git lfs push*",
    "git send-email*",  # mail, sent
    "git tag*",
    "git reset*--hard*",
    "git reset*--merge*",
    "git reset*--keep*",
    r"re:git clean( .*)? -[a-zA-Z]*[fi].*",  # interactive: deletes without -f
    "git clean*--force*",
    "git clean*--interactive*",
    r"re:git branch( .*)? -[a-zA-Z]*[DMf].*",  # deletes, or moves a branch over another
    "git branch*--force*",
    r"re:git stash( -\S+)* drop( .*)?",  # after its options too: git stash -q drop
    r"re:git stash( -\S+)* clear( .*)?",
    "git reflog expire*",
    "git reflog delete*",
    "git update-ref*",  # moves, makes or deletes any ref: a branch, a tag
    "git gc*--prune*",
    "git prune*",
    "git filter-branch*",
    "git filter-repo*",
    # the other version controls' commits and pushes (Subversion's commit is its push)
    "hg commit*",
    "hg push*",
    "hg ci*",
    "svn commit*",
    "svn ci*",
    "jj git push*",
    "npm publish*",
    "npm pub*",  # npm takes a start of its commands
    "yarn publish*",
    "yarn npm publish*",
    "pnpm publish*",
    "twine upload*",
    "poetry publish*",
    "uv publish*",
    "hatch publish*",
    "flit publish*",
    "cargo publish*",
    "gem push*",
    "docker push*",
    "docker image push*",
    "podman push*",
    "podman image push*",
    "gh release create*",
    "gh release upload*",
    "gh release delete*",
    "gh pr create*",
    "gh pr merge*",
    "gh repo delete*",
    "gh issue create*",
    "gh issue comment*",
    "gh issue close*",
    "gh issue delete*",
    "gh pr comment*",
    "gh pr review*",
    "gh pr close*",
    "gh workflow run*",
    # gh api sends a GET unless told a method, or given fields or a body (then a POST)
    "gh api*-X*",
    "gh api*--method*",
    "gh api*-f*",  # -f, --field, --raw-field
    "gh api*-F*",
    "gh api*--input*",
    "kubectl apply*",
    "kubectl delete*",
    "kubectl create*",
    "kubectl replace*",
    "kubectl patch*",
    "helm install*",
    "helm upgrade*",
    "helm uninstall*",
    "helm delete*",
    "terraform apply*",
    "terraform destroy*",
)

Probability = Annotated[float, Field(ge=0, le=1)]


def _seed_text(value: object) -> object:
    """Seeds may be written as numbers; 7 and "7" are the same seed."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _plain_env_name(name: str) -> str:
    if _ENV_NAME.fullmatch(name) is None:
        raise ValueError(f"invalid environment variable name {name!r}")
    return name


def _absolute_or_home(path: str) -> str:
    if "\0" in path or not (path.startswith("/") or path == "~" or path.startswith("~/")):
        raise ValueError(f"path {path!r} must be absolute or start with ~/")
    return path


class SandboxPolicy(Record):
    """What a run's sandboxed commands may reach beyond the workspace and the system's
    read-only files (see :mod:`trestle.execution.sandbox` and docs/security.md)."""

    network: tuple[Annotated[str, Field(min_length=1)], ...] = Field(
        default=(), description="step ids and tool names (globs) that keep the network"
    )
    env: tuple[Annotated[str, AfterValidator(_plain_env_name)], ...] = Field(
        default=(), description="environment variables passed in besides the allow-list"
    )
    read: tuple[Annotated[str, AfterValidator(_absolute_or_home)], ...] = Field(
        default=(), description="hidden paths to show read-only, such as ~/.cargo"
    )
    git: tuple[Annotated[str, Field(min_length=1)], ...] = Field(
        default=(),
        description="step ids and tool names (globs) whose commands may write .git's "
        "history without a human's approval (never its config or hooks)",
    )

    def allows_network(self, name: str) -> bool:
        return any(glob_matches(name, pattern) for pattern in self.network)

    def allows_git(self, name: str) -> bool:
        return any(glob_matches(name, pattern) for pattern in self.git)


MEMBER_KEY = re.compile(r"ed25519:[0-9a-f]{64}")
GroupName = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]


def _member_key(key: str) -> str:
    if not MEMBER_KEY.fullmatch(key):
        raise ValueError(
            f"{key[:80]!r} is not an approver's public key: expected ed25519: and 64 hex "
            "digits, as `trestle policy identity` prints it"
        )
    return key


MemberKey = Annotated[str, AfterValidator(_member_key)]


def _duration(value: object) -> object:
    return parse_duration(value) if isinstance(value, str) else value


# seconds; written in trestle.toml as "4h", "30m", "1h30m"
Duration = Annotated[float, BeforeValidator(_duration), Field(gt=0)]


class ApproverRule(Record):
    """Who may decide the approvals that meet all of the rule's criteria: a member of
    one of ``groups`` (a decision signed with a key the group lists), and, with
    ``approvals`` above 1, that many distinct members, none of them the run's starter.

    Within one criterion any listed value may match; across criteria, every one given
    must match; a rule with no criterion covers every approval of the run.

    ``deadline`` (seconds after the approval was asked) is shown on the card; once it
    passes, members of ``escalate_to`` may decide as well (see
    :mod:`trestle.core.escalation`).
    """

    groups: tuple[GroupName, ...] = Field(min_length=1)
    approvals: int = Field(default=1, ge=1, le=9, description="distinct approvers needed")
    deadline: Duration | None = None
    escalate_to: tuple[GroupName, ...] = ()
    tiers: tuple[Tier, ...] = ()
    tags: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    paths: tuple[PathGlob, ...] = Field(default=(), description="globs on written paths")
    commands: tuple[CommandPattern, ...] = ()
    steps: tuple[PathGlob, ...] = Field(default=(), description="globs on step ids")
    tools: tuple[PathGlob, ...] = Field(default=(), description="globs on tool names")
    mcp_servers: tuple[Annotated[str, Field(min_length=1)], ...] = ()


class Policy(Record):
    """An approval policy, from ``trestle.toml``'s ``[policy]`` or a plan's ``policy:``.

    ``groups`` (approver groups: a name for each member's public key) and
    ``approvers`` are the operator's alone: a plan may not set them."""

    scope: Scope = Scope()
    rules: tuple[Rule, ...] = ()
    auto_commands: tuple[CommandPattern, ...] = Field(
        default=DEFAULT_AUTO_COMMANDS, description="commands that run without asking"
    )
    confirm_commands: tuple[CommandPattern, ...] = Field(
        default=DEFAULT_CONFIRM_COMMANDS, description="commands that always need a human"
    )
    confidence_threshold: Probability = 0.5
    failure_penalty: Probability = Field(default=0.15, description="per failed attempt")
    alert_penalty: Probability = Field(default=0.1, description="per monitor alert")
    audit_rate: Probability = Field(default=0.0, description="fraction of auto/log sampled")
    audit_seed: Annotated[str, BeforeValidator(_seed_text)] = Field(
        default="0", description="with the run id and action, fixes every audit draw"
    )
    sandbox: SandboxPolicy = SandboxPolicy()
    groups: dict[GroupName, dict[Annotated[str, Field(min_length=1)], MemberKey]] = {}
    approvers: tuple[ApproverRule, ...] = ()

    @model_validator(mode="after")
    def _known_groups(self) -> Policy:
        for number, rule in enumerate(self.approvers):
            for field, names in (("groups", rule.groups), ("escalate_to", rule.escalate_to)):
                for name in names:
                    if name not in self.groups:
                        known = ", ".join(sorted(self.groups)) or "none"
                        raise ValueError(
                            f"approvers[{number}].{field} names group {name!r}, which "
                            f"[policy.groups] does not define (defined: {known})"
                        )
            if rule.escalate_to and rule.deadline is None:
                raise ValueError(
                    f"approvers[{number}].escalate_to needs a deadline: escalation opens "
                    "when the deadline passes"
                )
        return self


class TierDecision(Record):
    """The tier an action runs under, and which level of the precedence chose it.

    Attributes:
        tier: auto, log or confirm.
        source: a short stable id of the level, e.g. ``operator.rules[2]``,
            ``step.approval``, ``plan.rules[0]``, ``irreversible``, ``confirm_commands``,
            ``scope.write_paths``, ``scope.commands``, ``confidence`` or ``default``.
        reason: one sentence naming the rule or threshold and the value it matched.
        confidence: the adjusted confidence, or None when the action carries none.
        audit: ``"after"`` when a reversible auto/log action was drawn for review,
            ``"before"`` when an irreversible one was (it then waits for a human).
        draw: the audit draw in [0, 1), or None when nothing was drawn.
    """

    tier: Tier
    source: str
    reason: str
    confidence: float | None = None
    audit: Audit | None = None
    draw: float | None = None


# --- classification --------------------------------------------------------------------


class _Verdict(NamedTuple):
    tier: Tier
    source: str
    reason: str


def classify(
    facts: ActionFacts,
    *,
    plan: Policy | None,
    operator: Policy | None,
    run_id: str,
    action_key: str,
) -> TierDecision:
    """Decide the tier of one action; see the module docstring for the precedence.

    Args:
        facts: the action. Its ``tier`` must come from the plan's author or the tool's
            definition, never from anything a model or a step printed.
        plan: the plan's own policy, if any.
        operator: the policy from ``trestle.toml``; it wins wherever it sets a field.
        run_id: the run, for the audit draw.
        action_key: identifies this action within the run (stable across replay).
    """
    settings = effective_policy(plan=plan, operator=operator)
    shape = command_shape(facts.command) if facts.command is not None else None
    writes = (*facts.paths, *(shape.writes if shape else ()))
    confidence, arithmetic = adjusted_confidence(facts, settings)
    verdict = (
        _first_rule(operator.rules if operator else (), "operator", facts, shape, writes)
        or _explicit_tier(facts)
        or _first_rule(plan.rules if plan else (), "plan", facts, shape, writes)
        or _irreversible(facts)
        or _declared_confirm(facts)
        or _confirm_command(shape, settings)
        or _unknown_command(shape)
        or _out_of_scope(shape, writes, settings.scope)
        or _low_confidence(confidence, arithmetic, settings)
        or _by_nature(facts, shape, writes, settings)
    )
    audit: Audit | None = None
    draw: float | None = None
    if verdict.tier != "confirm" and settings.audit_rate > 0:
        draw = audit_draw(settings.audit_seed, run_id, action_key)
        if draw < settings.audit_rate:
            audit = "before" if facts.irreversible else "after"
    return TierDecision(
        tier=verdict.tier,
        source=verdict.source,
        reason=verdict.reason,
        confidence=confidence,
        audit=audit,
        draw=draw,
    )


# classify runs before every attempt, and a run's two policies never change: merging
# them once per pair (by identity; the policies are frozen) keeps the gate cheap
_MERGED: dict[tuple[int, int], tuple[Policy | None, Policy | None, Policy]] = {}


def effective_policy(*, plan: Policy | None, operator: Policy | None) -> Policy:
    """Scope, command lists, thresholds and sampling: the operator's where set, else the plan's.

    Each field (and each field of ``scope``) is taken on its own. The result carries no
    rules: operator and plan rules sit at different levels of the precedence.
    """
    key = (id(plan), id(operator))
    hit = _MERGED.get(key)
    if hit is not None and hit[0] is plan and hit[1] is operator:
        return hit[2]
    if len(_MERGED) > 256:
        _MERGED.clear()
    merged_policy = _merge(plan, operator)
    _MERGED[key] = (plan, operator, merged_policy)
    return merged_policy


def _merge(plan: Policy | None, operator: Policy | None) -> Policy:
    layers = [p for p in (plan, operator) if p is not None]
    merged: dict[str, object] = {}
    scope: dict[str, object] = {}
    for layer in layers:  # later layers (the operator) overwrite earlier ones
        # approver groups and rules are read from the operator's policy alone
        for field in layer.model_fields_set - {"rules", "scope", "groups", "approvers"}:
            merged[field] = getattr(layer, field)
        if "scope" in layer.model_fields_set:
            scope.update({f: getattr(layer.scope, f) for f in layer.scope.model_fields_set})
    return Policy.model_validate({**merged, "scope": scope})


# reasons are read by people, so their arithmetic uses the proper minus and times signs
MINUS = "\N{MINUS SIGN}"
TIMES = "\N{MULTIPLICATION SIGN}"


def adjusted_confidence(facts: ActionFacts, policy: Policy) -> tuple[float | None, str]:
    """The action's confidence less its penalties (floored at 0), and how it was reached."""
    if facts.confidence is None:
        return None, ""
    value = facts.confidence
    terms = [_num(value)]
    for count, penalty, what in (
        (facts.failed_attempts, policy.failure_penalty, "failed attempt"),
        (facts.alerts, policy.alert_penalty, "alert"),
    ):
        if count > 0 and penalty > 0:
            value -= count * penalty
            plural = "s" if count != 1 else ""
            terms.append(f"{count} {what}{plural} {TIMES} {_num(penalty)}")
    # rounding keeps 0.8 - 2 * 0.15 at exactly 0.5, as a person would compute it
    value = max(0.0, round(value, 9))
    return value, f" {MINUS} ".join(terms) if len(terms) > 1 else ""


def _first_rule(
    rules: Iterable[Rule],
    origin: str,
    facts: ActionFacts,
    shape: CommandShape | None,
    writes: tuple[str, ...],
) -> _Verdict | None:
    for index, rule in enumerate(rules):
        matched = rule_match(rule, facts, shape, writes)
        if matched is not None:
            what = " and ".join(matched)
            reason = f"{origin} rule {rule.name!r} forces {rule.tier}: {what}"
            return _Verdict(rule.tier, f"{origin}.rules[{index}]", reason)
    return None


def rule_match(
    rule: Rule, facts: ActionFacts, shape: CommandShape | None, writes: tuple[str, ...]
) -> list[str] | None:
    """What matched, one phrase per criterion, or None if any criterion fails."""
    matched: list[str] = []
    if rule.paths:
        # a rule that asks reaches a written directory whose files it names; one that
        # lowers the tier names only the paths it matches
        hit = _any_path(rule.paths, writes, reach=rule.tier == "confirm")
        if hit is None:
            return None
        matched.append(f"path {hit[1]!r} matches {hit[0]!r}")
    if rule.commands:
        found = _any_part(rule.commands, shape) if shape is not None else None
        if found is None:
            return None
        matched.append(f"command {found[1]!r} matches {found[0]!r}")
    if rule.tags:
        tag = next((t for t in rule.tags if t in facts.tags), None)
        if tag is None:
            return None
        matched.append(f"tag {tag!r}")
    if rule.natures:
        if facts.nature not in rule.natures:
            return None
        matched.append(f"nature {facts.nature!r}")
    if rule.cost_above is not None:
        if facts.cost is None or not facts.cost > rule.cost_above:
            return None
        matched.append(f"cost ${_num(facts.cost)} is above ${_num(rule.cost_above)}")
    return matched


def _explicit_tier(facts: ActionFacts) -> _Verdict | None:
    if facts.tier is None:
        return None
    return _Verdict(facts.tier, "step.approval", f"{facts.name!r} declares approval {facts.tier}")


def _irreversible(facts: ActionFacts) -> _Verdict | None:
    if not facts.irreversible:
        return None
    return _Verdict("confirm", "irreversible", f"{facts.name!r} is irreversible")


def _declared_confirm(facts: ActionFacts) -> _Verdict | None:
    if facts.confirm is None:
        return None
    return _Verdict("confirm", "tool.annotations", facts.confirm)


def _confirm_command(shape: CommandShape | None, policy: Policy) -> _Verdict | None:
    found = _any_part(policy.confirm_commands, shape) if shape is not None else None
    if found is None:
        return None
    reason = f"command {found[1]!r} matches confirm_commands pattern {found[0]!r}"
    return _Verdict("confirm", "confirm_commands", reason)


def _unknown_command(shape: CommandShape | None) -> _Verdict | None:
    if shape is None or not shape.unknown:
        return None
    reason = f"cannot tell what {shape.command!r} runs: {'; '.join(shape.unknown)}"
    return _Verdict("confirm", "unknown_command", reason)


def _out_of_scope(
    shape: CommandShape | None, writes: tuple[str, ...], scope: Scope
) -> _Verdict | None:
    for path in writes:
        inside = workspace_path(path)
        if inside is None:
            reason = f"writes {path!r}, which may lie outside the workspace"
            return _Verdict("confirm", "scope.write_paths", reason)
        allowed = (*scope.write_paths, *scope.output_paths) if scope.write_paths else ()
        if allowed and not any(path_glob_matches(g, inside) for g in allowed):
            reason = f"writes {inside!r}, outside write_paths {list(scope.write_paths)!r}"
            return _Verdict("confirm", "scope.write_paths", reason)
    if shape is not None and scope.commands:
        stray = _unallowed_part(scope.commands, shape)
        if stray is not None:
            reason = f"{stray} is not among the allowed commands {list(scope.commands)!r}"
            return _Verdict("confirm", "scope.commands", reason)
    return None


def _low_confidence(value: float | None, arithmetic: str, policy: Policy) -> _Verdict | None:
    if value is None or value >= policy.confidence_threshold:
        return None
    how = f" ({arithmetic})" if arithmetic else ""
    reason = f"confidence {_num(value)}{how} is below {_num(policy.confidence_threshold)}"
    return _Verdict("confirm", "confidence", reason)


def _by_nature(
    facts: ActionFacts, shape: CommandShape | None, writes: tuple[str, ...], policy: Policy
) -> _Verdict:
    outputs = policy.scope.output_paths
    stray = next((p for p in writes if not _is_output(p, outputs)), None)
    if stray is not None:
        # anything that writes beyond the designated outputs is at least logged
        reason = f"writes {stray!r}: in scope but not a designated output, so logged"
        return _Verdict("log", "default", reason)
    if facts.nature in ("read", "test"):
        return _Verdict("auto", "default", f"a {facts.nature} is auto by default")
    if facts.nature == "write" and writes:
        return _Verdict("auto", "default", "writes only to designated output_paths")
    if facts.nature == "command" and shape is not None:
        unlisted = _unallowed_part(policy.auto_commands, shape)
        if unlisted is None:
            return _Verdict("auto", "default", f"command {facts.command!r} matches auto_commands")
        return _Verdict("log", "default", f"{unlisted} is not in auto_commands, so logged")
    return _Verdict("log", "default", f"a {facts.nature} in scope is logged by default")


def _is_output(path: str, outputs: tuple[str, ...]) -> bool:
    inside = workspace_path(path)
    return inside is not None and any(path_glob_matches(g, inside) for g in outputs)


def _any_path(
    globs: Iterable[str], paths: Iterable[str], *, reach: bool = False
) -> tuple[str, str] | None:
    """The first (glob, path) pair that matches, trying every path in the workspace;
    with ``reach``, a path a glob reaches (:func:`path_glob_reaches`) matches too."""
    matches = path_glob_reaches if reach else path_glob_matches
    for path in paths:
        inside = workspace_path(path)
        # a path bash writes out to several ('{deploy,x}') is each of them
        each = (_brace_words(inside) or [inside]) if inside and _BRACES.search(inside) else [inside]
        for glob in globs:
            if any(p is not None and matches(glob, posixpath.normpath(p)) for p in each):
                return glob, path
    return None


def _any_part(patterns: Iterable[str], shape: CommandShape | None) -> tuple[str, str] | None:
    """A (pattern, text) pair where a pattern matches one simple command or the whole."""
    if shape is None:
        return None
    # ordered, no repeats: the text as written, then what it really runs
    candidates = dict.fromkeys((shape.command, *shape.parts, *shape.nested, *shape.runs))
    for text in candidates:
        for pattern in patterns:
            if command_pattern_matches(pattern, text):
                return pattern, text
    return None


def _unallowed_part(patterns: tuple[str, ...], shape: CommandShape) -> str | None:
    """Describe the first simple command no pattern allows, or None if all are allowed."""
    if shape.opaque:
        return "a command substitution"
    if shape.unknown:
        return f"a command that cannot be followed ({shape.unknown[0]})"
    if not shape.parts:
        return "an empty command"
    for part in shape.parts:
        if not any(command_pattern_matches(p, part) for p in patterns):
            return f"command {part!r}"
    if shape.lines:  # a command line one runs besides ('rg --pre ./x.sh'): not as written
        return f"the command line {shape.lines[0]} runs"
    return None


def _num(value: float) -> str:
    """A number as a person writes it: 0.35, 2, 1250.5 (no float noise, no exponent)."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


# --- audit sampling and action identity ------------------------------------------------


def audit_draw(seed: int | str, run_id: str, action_key: str) -> float:
    """A number in [0, 1) fixed by (seed, run, action): replaying a run draws the same."""
    material = json.dumps([str(seed), run_id, action_key], separators=(",", ":"))
    digest = hashlib.sha256(material.encode("utf-8")).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)


def action_hash(payload: Mapping[str, object]) -> str:
    """The sha256 (hex) of ``payload`` as canonical JSON (sorted keys, no spaces).

    Approvals are bound to this hash, so any change to the action voids them. Values
    may be JSON scalars, lists, tuples, string-keyed mappings and pydantic models.

    Raises:
        TypeError: a value has no single JSON form (a set, a non-string key, ...).
        ValueError: a float is NaN or infinite.
    """
    text = json.dumps(
        _canonical(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# plain JSON values and dicts are told by their exact type first: a pydantic model's
# and a ``Mapping``'s checks are abstract-class checks, about 0.5 us each, and they were
# half of hashing a step's action (once per step)
_AS_IS = frozenset({str, int, bool, type(None)})


def _canonical(value: object) -> object:
    if type(value) in _AS_IS:
        return value
    if type(value) is dict:
        return _canonical_mapping(value)
    if isinstance(value, BaseModel):
        return _canonical(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        return _canonical_mapping(value)
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"cannot hash the non-finite number {value!r}")
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"cannot hash a {type(value).__name__} value in an action: {value!r}")


def _canonical_mapping(value: Mapping[object, object]) -> dict[object, object]:
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"action keys must be strings, not {key!r}")
    return {key: _canonical(item) for key, item in value.items()}
