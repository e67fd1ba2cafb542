"""The approval policy: every tier, every precedence level, patterns, confidence,
audit sampling, action hashes, and loading ``trestle.toml`` (good files and bad)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trestle.core.errors import ConfigError, PlanError
from trestle.core.policy import (
    DEFAULT_AUTO_COMMANDS,
    DEFAULT_CONFIRM_COMMANDS,
    MINUS,
    TIER_ORDER,
    TIMES,
    ActionFacts,
    Policy,
    Rule,
    Scope,
    Tier,
    TierDecision,
    action_hash,
    audit_draw,
    classify,
    command_shape,
    effective_policy,
    path_glob_matches,
    workspace_path,
)
from trestle.formats.planfile import parse_plan
from trestle.formats.policyfile import find_policy_file, load_policy, operator_policy

DOCS = Path(__file__).resolve().parent.parent / "docs" / "policy.md"


def decide(
    facts: ActionFacts,
    plan: Policy | None = None,
    operator: Policy | None = None,
    key: str = "step/1",
) -> TierDecision:
    return classify(facts, plan=plan, operator=operator, run_id="run-1", action_key=key)


def rule(tier: Tier = "confirm", **criteria: Any) -> Rule:
    return Rule(name="r", tier=tier, **criteria)


def cmd(command: str, **kw: Any) -> ActionFacts:
    return ActionFacts(nature="command", name="s", command=command, **kw)


def write(*paths: str, **kw: Any) -> ActionFacts:
    return ActionFacts(nature="write", name="s", paths=paths, **kw)


SRC_ONLY = Policy(scope=Scope(write_paths=("src/**",), output_paths=("out/",)))
OUTPUTS = Policy(scope=Scope(output_paths=("dist/**", "reports/")))
ONLY_MAKE = Policy(scope=Scope(commands=("make *", "pytest*")))
ALWAYS_CONFIRM_WRITES = Policy(rules=(rule("confirm", natures=("write",)),))

READ = ActionFacts(nature="read", name="s")
UNSURE_READ = ActionFacts(nature="read", name="s", confidence=0.1)
THRESHOLD_07 = Policy(confidence_threshold=0.7)
PLAN_RULE_LOG_MAKE = Policy(rules=(rule("log", commands=("make",)),))
THREE_PLAN_RULES = Policy(
    rules=(
        rule("log", tags=("x",)),
        rule("auto", natures=("command",)),
        rule("confirm", natures=("command",)),
    )
)
OP_CONFIRM_MAKE = Policy(rules=(rule("confirm", commands=("make",)),))
OP_CONFIRM_COMMANDS = Policy(rules=(rule("confirm", natures=("command",)),))
OP_AUTO_A = Policy(rules=(rule("auto", paths=("a",)),))
OP_AUTO_X = Policy(rules=(rule("auto", commands=("x",)),))
OP_SECOND = Policy(rules=(rule("log", tags=("t",)), rule("auto", natures=("write",))))
FAILURES = f"0.49 (0.79 {MINUS} 2 failed attempts {TIMES} 0.15)"
ALERTS = f"0.4 (0.7 {MINUS} 3 alerts {TIMES} 0.1)"

# (id, facts, plan policy, operator policy, tier, source, a piece of the reason)
# fmt: off
CASES: list[tuple[str, ActionFacts, Policy | None, Policy | None, Tier, str, str]] = [
    # 7. defaults by nature
    ("read", READ, None, None, "auto", "default", "a read"),
    ("test", ActionFacts(nature="test", name="s"), None, None, "auto", "default", "a test"),
    ("call", ActionFacts(nature="call", name="s"), None, None, "log", "default", "a call"),
    ("write", write("src/a.py"), None, None, "log", "default", "not a designated output"),
    ("write, no paths", write(), None, None, "log", "default", "a write in scope"),
    ("output write", write("dist/app.whl"), OUTPUTS, None, "auto", "default", "output_paths"),
    ("output dir", write("reports/a/b.md"), OUTPUTS, None, "auto", "default", "output_paths"),
    ("output + other", write("dist/x", "src/y"), OUTPUTS, None, "log", "default", "'src/y'"),
    ("auto command", cmd("pytest -q tests"), None, None, "auto", "default", "auto_commands"),
    ("auto pipeline", cmd("cat a.txt | grep x"), None, None, "auto", "default", "auto_com"),
    ("unlisted", cmd("make build"), None, None, "log", "default", "'make build' is not in"),
    ("auto + unlisted", cmd("pytest; rm -rf x"), None, None, "log", "default", "writes 'x'"),
    ("substitution", cmd("cat $(ls)"), None, None, "log", "default", "command substitution"),
    ("redirect out", cmd("cat a > dist/a"), OUTPUTS, None, "auto", "default", "auto_commands"),
    ("redirect", cmd("cat a > src/a"), None, None, "log", "default", "'src/a': in scope"),
    ("read writes", READ.model_copy(update={"paths": ("x",)}), None, None, "log", "default", ""),
    # 6. confidence
    ("confident", cmd("make", confidence=0.9), None, None, "log", "default", ""),
    ("unsure", cmd("make", confidence=0.3), None, None, "confirm", "confidence", "0.3 is below"),
    ("at threshold", cmd("make", confidence=0.5), None, None, "log", "default", ""),
    ("just below", cmd("make", confidence=0.499), None, None, "confirm", "confidence", "0.499"),
    ("failures", cmd("make", confidence=0.8, failed_attempts=2),
        None, None, "log", "default", ""),
    ("failures below", cmd("make", confidence=0.79, failed_attempts=2),
        None, None, "confirm", "confidence", FAILURES),
    ("alerts", cmd("make", confidence=0.7, alerts=3),
        None, None, "confirm", "confidence", ALERTS),
    ("read unsure", UNSURE_READ, None, None, "confirm", "confidence", "0.1"),
    ("operator threshold", cmd("make", confidence=0.6),
        None, THRESHOLD_07, "confirm", "confidence", "below 0.7"),
    ("plan threshold", cmd("make", confidence=0.6),
        THRESHOLD_07, None, "confirm", "confidence", "below 0.7"),
    ("operator beats plan threshold", cmd("make", confidence=0.6),
        THRESHOLD_07, Policy(confidence_threshold=0.4), "log", "default", ""),
    ("no penalty", cmd("make", confidence=0.6, failed_attempts=5),
        None, Policy(failure_penalty=0), "log", "default", ""),
    # 5. scope
    ("outside write_paths", write("docs/a.md"),
        None, SRC_ONLY, "confirm", "scope.write_paths", "'docs/a.md', outside write_paths"),
    ("inside write_paths", write("src/pkg/a.py"), None, SRC_ONLY, "log", "default", ""),
    ("outputs are in scope", write("out/r.txt"), None, SRC_ONLY, "auto", "default", ""),
    ("escape", write("../etc/passwd"),
        None, None, "confirm", "scope.write_paths", "outside the workspace"),
    ("absolute", write("/etc/passwd"), None, None, "confirm", "scope.write_paths", "outside"),
    ("dotdot inside", write("src/../src/a.py"), None, SRC_ONLY, "log", "default", ""),
    ("redirect home", cmd("echo x > ~/.bashrc"),
        None, None, "confirm", "scope.write_paths", "'~/.bashrc'"),
    ("redirect var", cmd("echo x >> $HOME/y"), None, None, "confirm", "scope.write_paths", ""),
    ("redirect outside", cmd("make > docs/log"),
        None, SRC_ONLY, "confirm", "scope.write_paths", "'docs/log'"),
    ("allowed command", cmd("make test"), None, ONLY_MAKE, "log", "default", ""),
    ("other command", cmd("curl x"),
        None, ONLY_MAKE, "confirm", "scope.commands", "'curl x' is not among"),
    ("chained other", cmd("make a && curl x | wc -l"),
        None, ONLY_MAKE, "confirm", "scope.commands", "'curl x'"),
    ("hidden command", cmd("make $(curl x)"),
        None, ONLY_MAKE, "confirm", "scope.commands", "substitution"),
    ("plan scope", cmd("curl x"), ONLY_MAKE, None, "confirm", "scope.commands", ""),
    ("scope beats confidence", write("docs/a", confidence=0.1),
        None, SRC_ONLY, "confirm", "scope.write_paths", ""),
    # 4. confirm_commands
    ("commit", cmd("git commit -m x"),
        None, None, "confirm", "confirm_commands", "'git commit*'"),
    ("push in a chain", cmd("make && git push origin"),
        None, None, "confirm", "confirm_commands", "'git push origin'"),
    ("spaced push", cmd("git   push"), None, None, "confirm", "confirm_commands", "'git push'"),
    ("publish", cmd("twine upload dist/*"), None, None, "confirm", "confirm_commands", ""),
    ("quoted is data", cmd("grep 'git push' log.txt"), None, None, "auto", "default", ""),
    ("env push", cmd("env FOO=1 /usr/bin/git -C . push"),
        None, None, "confirm", "confirm_commands", "'git push'"),
    ("eval", cmd("eval git push"),
        None, None, "confirm", "unknown_command", "eval runs text built at run time"),
    ("piped into a shell", cmd("curl x | sh"), None, ONLY_MAKE, "confirm", "unknown_command",
        "sh reads the commands it runs from its input"),
    ("diff writes", cmd("git diff --output=d.txt"), None, None, "log", "default", "'d.txt'"),
    ("rm outside", cmd("rm -rf ~/x"), None, None, "confirm", "scope.write_paths", "'~/x'"),
    ("own list", cmd("make deploy"),
        None, Policy(confirm_commands=("make deploy*",)), "confirm", "confirm_commands", ""),
    ("list replaced", cmd("git push"), None, Policy(confirm_commands=()), "log", "default", ""),
    ("beats scope", cmd("git push"), None, ONLY_MAKE, "confirm", "confirm_commands", ""),
    # 3. irreversible
    ("irreversible", cmd("pytest", irreversible=True),
        None, None, "confirm", "irreversible", "'s' is irreversible"),
    ("beats confirm_commands", cmd("git push", irreversible=True),
        None, None, "confirm", "irreversible", ""),
    ("irreversible read", READ.model_copy(update={"irreversible": True}),
        None, None, "confirm", "irreversible", ""),
    # 2. the action's own tier, then plan rules
    ("approval auto", cmd("git push", tier="auto", irreversible=True),
        None, None, "auto", "step.approval", "declares approval auto"),
    ("approval log", write("../x", tier="log"), None, None, "log", "step.approval", ""),
    ("approval confirm", READ.model_copy(update={"tier": "confirm"}),
        None, None, "confirm", "step.approval", ""),
    ("approval low confidence", cmd("make", tier="auto", confidence=0.0),
        None, None, "auto", "step.approval", ""),
    ("plan rule", write("src/a"), ALWAYS_CONFIRM_WRITES,
        None, "confirm", "plan.rules[0]", "plan rule 'r' forces confirm: nature 'write'"),
    ("plan rule beats irreversible", cmd("make", irreversible=True),
        PLAN_RULE_LOG_MAKE, None, "log", "plan.rules[0]", ""),
    ("approval beats plan rule", write("src/a", tier="auto"),
        ALWAYS_CONFIRM_WRITES, None, "auto", "step.approval", ""),
    ("first plan rule wins", cmd("make"), THREE_PLAN_RULES, None, "auto", "plan.rules[1]", ""),
    # 1. operator rules
    ("operator rule", cmd("make"), None, OP_CONFIRM_MAKE, "confirm", "operator.rules[0]",
        "operator rule 'r' forces confirm: command 'make' matches 'make'"),
    ("operator beats approval", cmd("make", tier="auto"),
        None, OP_CONFIRM_COMMANDS, "confirm", "operator.rules[0]", ""),
    ("operator beats plan rule", write("a"),
        ALWAYS_CONFIRM_WRITES, OP_AUTO_A, "auto", "operator.rules[0]", ""),
    ("operator beats irreversible", cmd("x", irreversible=True),
        None, OP_AUTO_X, "auto", "operator.rules[0]", ""),
    ("second operator rule", write("a"), None, OP_SECOND, "auto", "operator.rules[1]", ""),
]
# fmt: on


@pytest.mark.parametrize(
    ("facts", "plan", "operator", "tier", "source", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_the_policy_table(
    facts: ActionFacts,
    plan: Policy | None,
    operator: Policy | None,
    tier: Tier,
    source: str,
    reason: str,
) -> None:
    decision = decide(facts, plan, operator)
    assert (decision.tier, decision.source) == (tier, source), decision.reason
    assert reason in decision.reason
    assert decision.audit is None and decision.draw is None


def test_the_table_reaches_every_tier_and_level() -> None:
    sources = {re.sub(r"\[\d+\]", "", case[5]) for case in CASES}
    assert sources == {
        "operator.rules",
        "step.approval",
        "plan.rules",
        "irreversible",
        "confirm_commands",
        "unknown_command",
        "scope.write_paths",
        "scope.commands",
        "confidence",
        "default",
    }
    assert {case[4] for case in CASES} == {"auto", "log", "confirm"}


def test_the_confidence_reason_shows_its_arithmetic() -> None:
    decision = decide(cmd("make", confidence=0.65, failed_attempts=2))
    arithmetic = f"0.65 {MINUS} 2 failed attempts {TIMES} 0.15"
    assert decision.reason == f"confidence 0.35 ({arithmetic}) is below 0.5"
    assert decision.confidence == 0.35
    both = decide(cmd("make", confidence=0.9, failed_attempts=1, alerts=1))
    assert both.confidence == 0.65 and both.tier == "log"


@pytest.mark.parametrize(
    ("confidence", "failed", "alerts", "adjusted", "tier"),
    [
        (0.8, 2, 0, 0.5, "log"),  # 0.8 - 0.3 is exactly the threshold: passes
        (0.65, 1, 0, 0.5, "log"),
        (0.6, 1, 0, 0.45, "confirm"),
        (0.7, 0, 2, 0.5, "log"),
        (0.69, 0, 2, 0.49, "confirm"),
        (0.5, 0, 0, 0.5, "log"),
        (0.2, 9, 9, 0.0, "confirm"),  # floored at 0
        (1.0, 0, 0, 1.0, "log"),
    ],
)
def test_confidence_arithmetic_at_and_around_the_threshold(
    confidence: float, failed: int, alerts: int, adjusted: float, tier: Tier
) -> None:
    facts = cmd("make", confidence=confidence, failed_attempts=failed, alerts=alerts)
    decision = decide(facts)
    assert decision.confidence == adjusted
    assert decision.tier == tier


def test_confidence_is_recorded_whichever_level_decides() -> None:
    decision = decide(cmd("git push", confidence=0.9, failed_attempts=1))
    assert decision.source == "confirm_commands" and decision.confidence == 0.75
    assert decide(cmd("git push")).confidence is None


# --- rule criteria ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("criteria", "facts", "matches"),
    [
        ({"paths": ("src/**",)}, write("src/a/b.py"), True),
        ({"paths": ("src/**",)}, write("lib/a.py"), False),
        ({"paths": ("docs/*", "*.md")}, write("README.md"), True),  # any glob in the field
        ({"paths": ("*.md",)}, write("docs/a.md"), False),  # '*' stays in one directory
        ({"paths": ("**/*.md",)}, write("docs/a.md"), True),
        ({"paths": ("src/**",)}, cmd("make > src/gen.py"), True),  # a redirection writes
        ({"paths": ("**",)}, cmd("make"), False),  # writes nothing
        ({"commands": ("make *",)}, cmd("make build"), True),
        ({"commands": ("make *",)}, cmd("cmake build"), False),  # globs match the whole
        ({"commands": ("make *",)}, cmd("cd x && make build"), True),  # or one part
        ({"commands": ("make *",)}, ActionFacts(nature="call", name="s"), False),
        ({"commands": ("cd * && make *",)}, cmd("cd x && make y"), True),  # or the whole
        ({"commands": (r"re:rm\s+-rf\s+.*",)}, cmd("rm   -rf /"), True),
        ({"commands": (r"re:rm\s+-rf\s+.*",)}, cmd("echo rm -rf /"), False),  # fullmatch
        ({"commands": (r"re:.*\bsudo\b.*",)}, cmd("make; sudo reboot"), True),
        ({"commands": ("re:[a-c]+",)}, cmd("abc"), True),
        ({"tags": ("deploy", "prod")}, cmd("x", tags=("prod",)), True),
        ({"tags": ("deploy",)}, cmd("x", tags=("dev",)), False),
        ({"natures": ("call", "write")}, write("a"), True),
        ({"natures": ("call",)}, write("a"), False),
        ({"cost_above": 1.0}, cmd("x", cost=1.5), True),
        ({"cost_above": 1.0}, cmd("x", cost=1.0), False),  # strictly above
        ({"cost_above": 1.0}, cmd("x"), False),  # no estimate, no match
        ({"cost_above": 0.0}, cmd("x", cost=0.01), True),
        ({"natures": ("command",), "tags": ("t",)}, cmd("x", tags=("t",)), True),
        ({"natures": ("command",), "tags": ("t",)}, cmd("x"), False),  # all fields must match
        ({"commands": ("x",), "cost_above": 5}, cmd("x", cost=1), False),
    ],
)
def test_rule_criteria(criteria: dict[str, Any], facts: ActionFacts, matches: bool) -> None:
    operator = Policy(rules=(Rule(name="probe", tier="log", **criteria),))
    decision = decide(facts, operator=operator)
    assert (decision.source == "operator.rules[0]") is matches, decision.reason


def test_a_rule_reason_names_every_matched_criterion() -> None:
    probe = Rule(name="big prod", tier="confirm", tags=("prod",), cost_above=2, paths=("k8s/",))
    decision = decide(
        write("k8s/app.yaml", tags=("prod",), cost=3.5), operator=Policy(rules=(probe,))
    )
    assert decision.reason == (
        "operator rule 'big prod' forces confirm: path 'k8s/app.yaml' matches 'k8s/' and "
        "tag 'prod' and cost $3.5 is above $2"
    )


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("src/**", "src/a.py", True),
        ("src/**", "src/a/b/c.py", True),
        ("src/**", "src", False),
        ("src/", "src/a/b", True),
        ("./src/*.py", "src/a.py", True),
        ("src/*.py", "src/a/b.py", False),
        ("src/**/*.py", "src/b.py", True),
        ("src/**/*.py", "src/a/b.py", True),
        ("**", "anything/at/all", True),
        ("?.txt", "a.txt", True),
        ("?.txt", "ab.txt", False),
        ("[ab].txt", "b.txt", True),
        ("[!ab].txt", "b.txt", False),
        ("[.txt", "[.txt", True),  # an unclosed bracket is literal
        ("a+b(c).txt", "a+b(c).txt", True),  # regex characters are literal
        ("*.lock", "uv.lock", True),
    ],
)
def test_path_globs(glob: str, path: str, matches: bool) -> None:
    assert path_glob_matches(glob, path) is matches


@pytest.mark.parametrize(
    ("path", "inside"),
    [
        ("a/b", "a/b"),
        ("./a//b/", "a/b"),
        ("a/../b", "b"),
        ("..", None),
        ("a/../../b", None),
        ("/abs", None),
        ("~/x", None),
        ("$HOME/x", None),
        ("*.txt", None),
        ("", None),
    ],
)
def test_workspace_paths(path: str, inside: str | None) -> None:
    assert workspace_path(path) == inside


@pytest.mark.parametrize(
    ("command", "parts", "writes", "opaque"),
    [
        ("pytest -q", ["pytest -q"], [], False),
        ("a; b && c || d | e & f", ["a", "b", "c", "d", "e", "f"], [], False),
        ("a\nb", ["a", "b"], [], False),
        ("a |& b", ["a", "b"], [], False),
        ("echo 'x; y' \"p && q\"", ["echo 'x; y' \"p && q\""], [], False),
        ("echo a\\;b", ["echo a\\;b"], [], False),
        ("  git    push   ", ["git push"], [], False),
        ("make > out.log 2>&1", ["make > out.log 2>&1"], ["out.log"], False),
        ("make >> a 2> b &> c >| d", ["make >> a 2> b &> c >| d"], ["a", "b", "c", "d"], False),
        ("make > /dev/null 2>&1 >&-", ["make > /dev/null 2>&1 >&-"], [], False),
        ("echo x >'my file'", ["echo x >'my file'"], ["my file"], False),
        ("echo x>y;z", ["echo x>y", "z"], ["y"], False),
        ("sort < in > out", ["sort < in > out"], ["out"], False),
        ("echo $(whoami)", ["echo $(whoami)"], [], True),
        ("echo `whoami`", ["echo `whoami`"], [], True),
        ('echo "$(whoami)"', ['echo "$(whoami)"'], [], True),
        ("echo '$(whoami)'", ["echo '$(whoami)'"], [], False),  # single quotes: literal
        ("diff <(a) b", ["diff <(a) b"], [], True),
        ("", [], [], False),
    ],
)
def test_command_shape(command: str, parts: list[str], writes: list[str], opaque: bool) -> None:
    shape = command_shape(command)
    assert (list(shape.parts), list(shape.writes), shape.opaque) == (parts, writes, opaque)


def test_an_empty_command_is_never_auto() -> None:
    assert decide(cmd("   ")).tier == "log"


# --- merging the operator's and the plan's settings -----------------------------------


def test_settings_merge_field_by_field() -> None:
    plan = Policy(
        scope=Scope(write_paths=("src/**",), commands=("make *",)),
        confidence_threshold=0.8,
        audit_rate=0.5,
        auto_commands=("make *",),
        rules=(rule(tags=("x",)),),
    )
    operator = Policy(scope=Scope(write_paths=("lib/**",)), audit_rate=0.1)
    merged = effective_policy(plan=plan, operator=operator)
    assert merged.scope == Scope(write_paths=("lib/**",), commands=("make *",))
    assert (merged.confidence_threshold, merged.audit_rate) == (0.8, 0.1)
    assert merged.auto_commands == ("make *",)
    assert merged.confirm_commands == DEFAULT_CONFIRM_COMMANDS
    assert merged.rules == ()
    assert effective_policy(plan=None, operator=None) == Policy()


# --- audit sampling -------------------------------------------------------------------


def test_audit_draws_are_deterministic_and_in_range() -> None:
    draws = [audit_draw(7, "run-1", f"step-{i}/1") for i in range(2000)]
    assert all(0.0 <= d < 1.0 for d in draws)
    assert draws == [audit_draw("7", "run-1", f"step-{i}/1") for i in range(2000)]
    assert len(set(draws)) == len(draws)
    assert audit_draw(8, "run-1", "step-0/1") != draws[0]
    assert audit_draw(7, "run-2", "step-0/1") != draws[0]
    # a known value pins the derivation, so stored draws stay valid across versions
    assert audit_draw(0, "r", "k") == 0.5038965356001485


def test_rate_zero_never_draws_and_rate_one_always_samples() -> None:
    facts = cmd("make")
    for i in range(200):
        never = decide(facts, operator=Policy(audit_rate=0.0), key=f"k{i}")
        assert (never.audit, never.draw) == (None, None)
        always = decide(facts, operator=Policy(audit_rate=1.0), key=f"k{i}")
        assert always.audit == "after" and always.draw is not None


def test_sampling_takes_roughly_the_configured_fraction() -> None:
    policy = Policy(audit_rate=0.2, audit_seed=42)
    facts = ActionFacts(nature="read", name="s")
    keys = [f"step-{i}/1" for i in range(10_000)]
    sampled = [decide(facts, plan=policy, key=k).audit == "after" for k in keys]
    assert 0.18 < sum(sampled) / len(keys) < 0.22
    again = [decide(facts, plan=policy, key=k).audit == "after" for k in keys]
    assert sampled == again


def test_a_sampled_decision_records_its_draw_below_the_rate() -> None:
    policy = Policy(audit_rate=0.5, audit_seed="s")
    for i in range(100):
        decision = decide(cmd("make"), operator=policy, key=f"k{i}")
        assert decision.draw == audit_draw("s", "run-1", f"k{i}")
        assert (decision.audit is not None) is (decision.draw < 0.5)


def test_irreversible_samples_are_reviewed_before_reversible_after() -> None:
    policy = Policy(audit_rate=1.0)
    before = decide(cmd("deploy", irreversible=True, tier="log"), operator=policy)
    assert (before.tier, before.audit) == ("log", "before")
    after = decide(cmd("make"), operator=policy)
    assert (after.tier, after.audit) == ("log", "after")
    auto = decide(ActionFacts(nature="read", name="s"), operator=policy)
    assert (auto.tier, auto.audit) == ("auto", "after")


def test_confirm_decisions_are_not_sampled() -> None:
    decision = decide(cmd("git push"), operator=Policy(audit_rate=1.0))
    assert (decision.tier, decision.audit, decision.draw) == ("confirm", None, None)


def test_the_plan_can_set_the_audit_rate_and_the_operator_can_switch_it_off() -> None:
    plan = Policy(audit_rate=1.0)
    assert decide(cmd("make"), plan=plan).audit == "after"
    assert decide(cmd("make"), plan=plan, operator=Policy(audit_rate=0)).audit is None


# --- action hashes --------------------------------------------------------------------


def test_action_hash_is_sha256_of_canonical_json() -> None:
    payload = {"run": "make", "env": {"B": "2", "A": "1"}, "n": [1, 2.5, None, True]}
    canonical = '{"env":{"A":"1","B":"2"},"n":[1,2.5,null,true],"run":"make"}'
    assert action_hash(payload) == hashlib.sha256(canonical.encode()).hexdigest()
    reordered = {"n": (1, 2.5, None, True), "run": "make", "env": {"A": "1", "B": "2"}}
    assert action_hash(reordered) == action_hash(payload)
    assert action_hash({**payload, "run": "make "}) != action_hash(payload)
    assert action_hash({"text": "é"}) == hashlib.sha256('{"text":"é"}'.encode()).hexdigest()


def test_action_hash_accepts_models_and_refuses_ambiguous_values() -> None:
    facts = cmd("make")
    assert action_hash({"f": facts}) == action_hash({"f": facts.model_dump(mode="json")})
    with pytest.raises(TypeError, match="set"):
        action_hash({"s": {1, 2}})
    with pytest.raises(TypeError, match="keys must be strings"):
        action_hash({"m": {1: "a"}})
    with pytest.raises(ValueError, match="non-finite"):
        action_hash({"x": float("nan")})


# --- properties -----------------------------------------------------------------------

COMMANDS = ["make", "pytest -q", "git push", "cat a > b", "rm -rf x; ls", "echo $(id)", "x | y"]
PATHS = ["src/a.py", "docs/b.md", "dist/c", "../d", "/e"]

facts_strategy = st.builds(
    ActionFacts,
    nature=st.sampled_from(["read", "test", "write", "command", "call"]),
    name=st.just("s"),
    command=st.none() | st.sampled_from(COMMANDS),
    paths=st.lists(st.sampled_from(PATHS), max_size=2).map(tuple),
    irreversible=st.booleans(),
    tags=st.lists(st.sampled_from(["a", "b"]), max_size=2).map(tuple),
    cost=st.none() | st.floats(0, 10),
    confidence=st.none() | st.floats(0, 1),
    failed_attempts=st.integers(0, 5),
    alerts=st.integers(0, 5),
    tier=st.none() | st.sampled_from(["auto", "log", "confirm"]),
)
tiers = st.sampled_from(["auto", "log", "confirm"])
rule_strategy = st.builds(
    Rule,
    name=st.just("r"),
    tier=tiers,
    tags=st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=2).map(tuple),
)
policy_strategy = st.builds(
    Policy,
    scope=st.builds(
        Scope,
        write_paths=st.lists(st.sampled_from(["src/**", "dist/"]), max_size=2).map(tuple),
        output_paths=st.lists(st.sampled_from(["dist/**"]), max_size=1).map(tuple),
        commands=st.lists(st.sampled_from(["make*", "pytest*", "ls"]), max_size=2).map(tuple),
    ),
    rules=st.lists(rule_strategy, max_size=3).map(tuple),
    confidence_threshold=st.floats(0, 1),
    audit_rate=st.floats(0, 1),
)


@settings(max_examples=200, deadline=None)
@given(facts=facts_strategy, plan=st.none() | policy_strategy, tier=tiers)
def test_an_operator_rule_always_wins(facts: ActionFacts, plan: Policy | None, tier: Tier) -> None:
    operator = Policy(rules=(Rule(name="all", tier=tier, natures=(facts.nature,)),))
    decision = decide(facts, plan=plan, operator=operator)
    assert (decision.tier, decision.source) == (tier, "operator.rules[0]")


@settings(max_examples=200, deadline=None)
@given(facts=facts_strategy, plan=st.none() | policy_strategy, operator=st.none() | policy_strategy)
def test_losing_confidence_never_lowers_the_tier(
    facts: ActionFacts, plan: Policy | None, operator: Policy | None
) -> None:
    worse = facts.model_copy(
        update={"failed_attempts": facts.failed_attempts + 1, "alerts": facts.alerts + 1}
    )
    before = decide(facts, plan, operator)
    after = decide(worse, plan, operator)
    assert TIER_ORDER[after.tier] >= TIER_ORDER[before.tier]
    assert decide(facts, plan, operator) == before  # the same inputs, the same decision


@settings(max_examples=200, deadline=None)
@given(facts=facts_strategy, plan=st.none() | policy_strategy)
def test_without_an_explicit_tier_or_rule_irreversible_means_confirm(
    facts: ActionFacts, plan: Policy | None
) -> None:
    plain = facts.model_copy(update={"irreversible": True, "tier": None})
    no_rules = plan.model_copy(update={"rules": ()}) if plan else None
    decision = decide(plain, plan=no_rules)
    assert (decision.tier, decision.source) == ("confirm", "irreversible")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=" ab;|&<>()$`'\"\\\n2-/~", max_size=40))
def test_command_shape_takes_any_text(command: str) -> None:
    shape = command_shape(command)
    assert all(part == part.strip() and part for part in shape.parts)
    assert command_shape(command) == shape


# --- loading trestle.toml -------------------------------------------------------------

FULL = """
[policy]
confidence_threshold = 0.6
failure_penalty = 0.2
alert_penalty = 0.05
audit_rate = 0.25
audit_seed = 7
auto_commands = ["make check*"]
confirm_commands = ["make deploy*", "re:.*--force.*"]

[policy.scope]
write_paths = ["src/**"]
output_paths = ["reports/"]
commands = ["make *"]

[[policy.rules]]
name = "prod"
tier = "confirm"
tags = ["prod"]
cost_above = 1.5

[[policy.rules]]
name = "fmt"
tier = "auto"
commands = ["re:make fmt\\\\b.*"]
natures = ["command"]
paths = ["src/**"]
"""


def toml_file(tmp_path: Path, text: str, name: str = "trestle.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_full_policy_file_loads(tmp_path: Path) -> None:
    policy = load_policy(toml_file(tmp_path, FULL))
    assert policy == Policy(
        scope=Scope(write_paths=("src/**",), output_paths=("reports/",), commands=("make *",)),
        rules=(
            Rule(name="prod", tier="confirm", tags=("prod",), cost_above=1.5),
            Rule(
                name="fmt",
                tier="auto",
                commands=(r"re:make fmt\b.*",),
                natures=("command",),
                paths=("src/**",),
            ),
        ),
        auto_commands=("make check*",),
        confirm_commands=("make deploy*", "re:.*--force.*"),
        confidence_threshold=0.6,
        failure_penalty=0.2,
        alert_penalty=0.05,
        audit_rate=0.25,
        audit_seed="7",
    )
    assert decide(cmd("make fmt > src/fmt.log"), operator=policy).source == "operator.rules[1]"
    assert decide(cmd("make fmt"), operator=policy).source == "default"  # no path matched
    assert decide(cmd("make x --force"), operator=policy).source == "confirm_commands"


def test_a_file_without_a_policy_table_gives_the_defaults(tmp_path: Path) -> None:
    policy = load_policy(toml_file(tmp_path, "[monitors]\n"))
    assert policy == Policy()
    assert policy.model_fields_set == set()  # sets nothing, so the plan's settings stand


def load_problems(tmp_path: Path, text: str) -> list[str]:
    path = toml_file(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    lines = str(info.value).splitlines()
    assert all(line.startswith(f"{path}:") for line in lines), lines
    return [line.removeprefix(f"{path}:") for line in lines]  # "LINE: what", or " what"


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        (
            "[policy]\naudit_rate = 0.1\nconfidence_threshold = \n",
            ["3: invalid TOML: invalid value (column 24)"],
        ),
        ("policy = 3\n", ["1: policy: must be a table ([policy]), not a value"]),
        # a table Trestle does not read would be ignored in silence: a policy the
        # operator believes holds and does not
        (
            '[sandbox]\nread = ["/srv/tools"]\n',
            [
                "1: unknown table [sandbox]: a trestle.toml holds only [policy], [monitors], "
                "[mcp]; did you mean [policy.sandbox]?"
            ],
        ),
        (
            "[other]\nkey = 1\n",
            ["1: unknown table [other]: a trestle.toml holds only [policy], [monitors], [mcp]"],
        ),
        (
            "[policy]\nconfidence_treshold = 0.4\n",
            ["2: policy.confidence_treshold: unknown field (did you mean 'confidence_threshold'?)"],
        ),
        (
            '[policy.scope]\nwrite_path = ["a"]\n',
            ["2: policy.scope.write_path: unknown field (did you mean 'write_paths'?)"],
        ),
        (
            '[[policy.rules]]\nname = "a"\ntier = "auto"\ntags = ["x"]\n'
            '[[policy.rules]]\nname = "b"\ntier = "auto"\ncommands = ["ok", "re:(x"]\n',
            [
                "8: policy.rules[1].commands[1]: invalid regex '(x': missing ), "
                "unterminated subpattern at position 0"
            ],
        ),
        (
            '[[policy.rules]]\nname = "a"\ntier = "maybe"\ntags = ["x"]\n',
            ["3: policy.rules[0].tier: must be one of 'auto', 'log' or 'confirm', not 'maybe'"],
        ),
        (
            '[[policy.rules]]\nname = "a"\ntier = "log"\n',
            [
                "1: policy.rules[0]: a rule needs at least one criterion: "
                "paths, commands, tags, natures, cost_above"
            ],
        ),
        (
            '[[policy.rules]]\ntier = "log"\nnatures = ["delete"]\n',
            [
                "1: policy.rules[0].name: required, but missing",
                "3: policy.rules[0].natures[0]: must be one of 'read', 'test', 'write', "
                "'command' or 'call', not 'delete'",
            ],
        ),
        (
            '[policy]\nauto_commands = ["re:"]\nconfirm_commands = [""]\n',
            [
                "2: policy.auto_commands[0]: empty regex in 're:'",
                "3: policy.confirm_commands[0]: must not be empty",
            ],
        ),
        (
            '[policy]\naudit_rate = 1.5\nfailure_penalty = "high"\n',
            [
                "3: policy.failure_penalty: must be a number, not 'high'",
                "2: policy.audit_rate: must be at most 1, not 1.5",
            ],
        ),
    ],
)
def test_every_loader_error_names_the_file_and_field(
    tmp_path: Path, text: str, problems: list[str]
) -> None:
    assert sorted(load_problems(tmp_path, text)) == sorted(problems)


def test_unterminated_toml_is_reported_with_its_line(tmp_path: Path) -> None:
    (problem,) = load_problems(tmp_path, '[policy]\nrules = [{name = "x"\n')
    assert problem.startswith("2: invalid TOML: "), problem


def test_a_missing_or_unreadable_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found"):
        load_policy(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found"):
        operator_policy(tmp_path, tmp_path / "nope.toml")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe[policy]")
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(binary)


def test_find_policy_file_walks_up_to_the_repository_root(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    deep = repo / "a" / "b"
    deep.mkdir(parents=True)
    (repo / ".git").mkdir()
    assert find_policy_file(deep) is None
    # a file above the repository root is not the project's
    toml_file(tmp_path, "[policy]\naudit_rate = 0.5\n")
    assert find_policy_file(deep) is None
    found = toml_file(repo, "[policy]\naudit_rate = 0.25\n")
    assert find_policy_file(deep) == found.resolve()
    nearer = toml_file(repo / "a", "[policy]\naudit_rate = 0.75\n")
    assert find_policy_file(deep) == nearer.resolve()
    assert find_policy_file(repo) == found.resolve()
    policy = operator_policy(deep)
    assert policy is not None and policy.audit_rate == 0.75


def test_find_policy_file_in_plain_directories_and_git_worktrees(tmp_path: Path) -> None:
    plain = tmp_path / "plain" / "x"
    plain.mkdir(parents=True)
    found = toml_file(tmp_path / "plain", "")
    assert find_policy_file(plain) == found.resolve()
    worktree = tmp_path / "wt"
    worktree.mkdir()
    (worktree / ".git").write_text("gitdir: elsewhere\n")  # how worktrees mark their root
    assert find_policy_file(worktree) is None
    assert operator_policy(worktree) is None


# --- the same model in a plan file, and the documented examples ----------------------


def fenced_blocks(language: str) -> list[str]:
    text = DOCS.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_the_documented_toml_and_plan_examples_agree(tmp_path: Path) -> None:
    (toml_text,) = fenced_blocks("toml")
    (yaml_text,) = fenced_blocks("yaml")
    from_toml = load_policy(toml_file(tmp_path, toml_text))
    plan = parse_plan(yaml_text, source="plan.yaml")
    assert plan.policy == from_toml
    tiers = {}
    for step in plan.steps:
        facts = ActionFacts(
            nature="command" if step.run else "write",
            name=step.id,
            command=step.run,
            paths=(step.write.path,) if step.write else (),
            tags=step.tags,
            confidence=step.confidence,
            tier=step.approval,
        )
        tiers[step.id] = decide(facts, plan=plan.policy).tier
    assert tiers == {"format": "auto", "test": "auto", "release-notes": "auto", "tag": "log"}
    releases = Policy(rules=(Rule(name="releases", tier="confirm", tags=("release",)),))
    tag = plan.step("tag")
    facts = cmd(tag.run or "", tags=tag.tags, tier=tag.approval)
    assert decide(facts, plan=plan.policy, operator=releases).tier == "confirm"


def test_a_plan_policy_error_names_the_field() -> None:
    text = (
        "policy:\n  rules:\n    - {name: a, tier: auto, commands: ['re:[']}\n"
        "steps:\n  - {id: a, run: make}\n"
    )
    with pytest.raises(PlanError) as info:
        parse_plan(text, source="plan.yaml")
    (problem,) = info.value.problems
    assert "policy.rules[0].commands[0]" in problem and "invalid regex '['" in problem


def test_the_documented_defaults_are_the_real_ones() -> None:
    text = DOCS.read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")
    }
    for field, defaults in (
        ("`auto_commands`", DEFAULT_AUTO_COMMANDS),
        ("`confirm_commands`", DEFAULT_CONFIRM_COMMANDS),
    ):
        cells = rows[field].split("|")[1:-1]
        assert len(cells) == 3, f"{field}'s row has {len(cells)} cells, not 3"
        documented = re.findall(r"`([^`]+)`", cells[1])
        assert tuple(documented) == defaults
