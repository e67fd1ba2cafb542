"""The dashboard as a person uses it: the system's Chromium, driven by Playwright,
against a real ``trestle ui`` process and runs driven by real ``trestle run`` processes.

Screenshots of each page at desktop and phone width are kept under
``tests/artifacts/dashboard/`` (git-ignored; ``$TRESTLE_TEST_ARTIFACTS`` moves it).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from dashboard_helpers import Dashboard, dashboard, run_ids, start_run, trestle, wait_for
from forked_cli import Started
from trestle.core.events import AnyEvent, ApprovalDecided
from trestle.store import SqliteStore

pytest.importorskip("playwright.sync_api", reason="the dev extra installs playwright")
from playwright.sync_api import Browser, Locator, Page, ViewportSize, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = (
    Path(os.environ.get("TRESTLE_TEST_ARTIFACTS", ROOT / "tests" / "artifacts")) / "dashboard"
)
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = chromium()
    if path is None:  # as `make test` does, once
        subprocess.run([str(ROOT / "scripts" / "setup-browser.sh")], check=False, timeout=600)
        path = chromium()
    if path is None:
        pytest.skip("no Chromium here, and scripts/setup-browser.sh could not install it")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(30_000)
    opened = context.new_page()
    yield opened
    context.close()


def project(tmp_path: Path, plan: str) -> tuple[Path, Path]:
    """A workspace holding ``plan.yaml``, and the store its runs use."""
    (tmp_path / "plan.yaml").write_text(plan, encoding="utf-8")
    store = tmp_path / ".trestle" / "trestle.db"
    return tmp_path / "plan.yaml", store


def started(plan: Path, store: Path, cwd: Path) -> tuple[Started, str]:
    """``trestle run`` in the background, and its run id once it is recorded."""
    process = start_run(plan, store, cwd)
    wait_for(lambda: store.exists() and bool(run_ids(store)), what="the run to be recorded")
    return process, run_ids(store)[0]


def finish(process: Started) -> tuple[int, str]:
    out, _ = process.communicate(timeout=120)
    return process.returncode, out


def decisions(store: Path, run_id: str) -> list[ApprovalDecided]:
    return [e for e in recorded(store, run_id) if isinstance(e, ApprovalDecided)]


def recorded(store: Path, run_id: str) -> list[AnyEvent]:
    opened = SqliteStore(store, create=False)
    try:
        return [e.event for e in opened.events(run_id)]
    finally:
        opened.close()


WAIT = "while [ ! -f {name} ]; do sleep 0.05; done"

LIVE_PLAN = f"""
goal: watch it live
steps:
  - {{id: fetch, run: "{WAIT.format(name="go-fetch")}"}}
  - {{id: build, run: "{WAIT.format(name="go-build")}", needs: [fetch]}}
  - {{id: ship, run: "echo shipped", needs: [build]}}
"""


def node(page: Page, step: str) -> Locator:
    """The step's box in the plan's graph."""
    return page.locator(f'g.node[data-step="{step}"]')


def test_a_run_progresses_live_without_a_reload(tmp_path: Path, page: Page) -> None:
    plan, store = project(tmp_path, LIVE_PLAN)
    process, run_id = started(plan, store, tmp_path)
    with dashboard(store) as ui:
        at = ui.log_in(page)
        page.goto(f"{at}runs/{run_id}")
        page.evaluate("window.__same_page = true")
        expect(page.locator('g.node[data-step="fetch"]')).to_have_attribute(
            "data-status", "running"
        )
        expect(page.locator('g.node[data-step="fetch"].critical')).to_have_count(1)
        (tmp_path / "go-fetch").touch()
        expect(page.locator('g.node[data-step="fetch"]')).to_have_attribute(
            "data-status", "succeeded"
        )
        expect(page.locator('g.node[data-step="build"]')).to_have_attribute(
            "data-status", "running"
        )
        (tmp_path / "go-build").touch()
        expect(page.locator("#run-status")).to_have_text("succeeded")
        expect(page.locator('g.node[data-step="ship"]')).to_have_attribute(
            "data-status", "succeeded"
        )
        expect(page.locator("table.timeline")).to_contain_text("run_finished")
        assert page.evaluate("window.__same_page") is True  # swapped in, not reloaded
    assert finish(process)[0] == 0


GATED_PLAN = f"""
goal: release 1.2
steps:
  - {{id: slow, run: "{WAIT.format(name="go")}"}}
  - {{id: deploy, run: "echo deployed > deployed.txt", irreversible: true}}
"""


def waiting_card(page: Page, base: str) -> Locator:
    """The inbox's first card, once the run has asked (reloading until it has)."""
    for _ in range(100):
        page.goto(f"{base}inbox")
        card = page.locator("article.card")
        if card.count():
            return card.first
        page.wait_for_timeout(200)
    raise AssertionError("no approval reached the inbox")


def test_approving_a_waiting_irreversible_step_lets_the_run_finish(
    tmp_path: Path, page: Page
) -> None:
    plan, store = project(tmp_path, GATED_PLAN)
    process, run_id = started(plan, store, tmp_path)
    with dashboard(store) as ui:
        at = ui.log_in(page)
        card = waiting_card(page, at)
        expect(card).to_contain_text("deploy")
        expect(card).to_contain_text("irreversible")
        card.get_by_label("Note (optional)").first.fill("release window is open")
        card.get_by_role("button", name="Approve", exact=False).first.click()
        expect(page.get_by_role("status")).to_contain_text("approved")
        # an approved command runs alone: it waits for slow, which waits for go
        waits = lambda: any(e.kind == "alone_awaited" for e in recorded(store, run_id))  # noqa: E731
        wait_for(waits, what="the approved deploy to wait for slow")
        page.goto(f"{at}runs/{run_id}")
        expect(page.locator("table.timeline")).to_contain_text("starts once 'slow' ends")
        assert not (tmp_path / "deployed.txt").exists()
        (tmp_path / "go").touch()
        wait_for(lambda: (tmp_path / "deployed.txt").exists(), what="the approved deploy")
        page.goto(f"{at}runs/{run_id}")
        expect(page.locator("#run-status")).to_have_text("succeeded")
        expect(page.locator("table.timeline")).to_contain_text("approve by dashboard:")
    code, out = finish(process)
    assert code == 0, out
    [decided] = decisions(store, run_id)
    assert decided.verdict == "approve" and decided.by.startswith("dashboard:")
    assert decided.reason == "release window is open" and decided.signed is not None


def test_a_rejection_reaches_the_log_with_its_reason(tmp_path: Path, page: Page) -> None:
    plan, store = project(tmp_path, GATED_PLAN)
    process, run_id = started(plan, store, tmp_path)
    with dashboard(store) as ui:
        at = ui.log_in(page)
        card = waiting_card(page, at)
        card.get_by_label("Reason for rejecting (required)").fill("not in this release")
        card.get_by_role("button", name="Reject").click()
        expect(page.get_by_role("status")).to_contain_text("rejected")
        # the driver records the rejection on its next look at the queue
        wait_for(lambda: bool(decisions(store, run_id)), what="the rejection to be recorded")
        (tmp_path / "go").touch()
        code, out = finish(process)
        assert code == 1, out  # partial: the rejected step failed
        page.goto(f"{at}runs/{run_id}")
        expect(page.locator("table.timeline")).to_contain_text("not in this release")
        expect(page.locator("#step-deploy")).to_contain_text("not in this release")
    assert not (tmp_path / "deployed.txt").exists()
    [decided] = decisions(store, run_id)
    assert decided.verdict == "reject" and decided.reason == "not in this release"


FOREVER_PLAN = f"""
goal: never ends
steps:
  - {{id: wait, run: "{WAIT.format(name="never")}"}}
"""


def test_cancelling_a_run_stops_it(tmp_path: Path, page: Page) -> None:
    plan, store = project(tmp_path, FOREVER_PLAN)
    process, run_id = started(plan, store, tmp_path)
    with dashboard(store) as ui:
        at = ui.log_in(page)
        page.goto(f"{at}runs/{run_id}")
        expect(node(page, "wait")).to_have_attribute("data-status", "running")
        page.get_by_label("Why (recorded)").fill("wrong branch")
        page.get_by_role("button", name="Cancel run").click()
        expect(page.get_by_role("status")).to_contain_text("cancelled")
        expect(page.locator("#run-status")).to_have_text("cancelled")
        expect(page.locator("table.timeline")).to_contain_text("wrong branch")
    assert finish(process)[0] == 7


FLAKY_PLAN = """
goal: retry me
steps:
  - {id: check, run: "test -f fixed"}
"""


def test_retrying_a_dead_letter(tmp_path: Path, page: Page) -> None:
    plan, store = project(tmp_path, FLAKY_PLAN)
    code, out = finish(start_run(plan, store, tmp_path))
    assert code == 3, out  # failed, dead-lettered: waits for a human
    [run_id] = run_ids(store)
    with dashboard(store) as ui:
        at = ui.log_in(page)
        page.goto(f"{at}health")
        letter = page.locator("article.letter")
        expect(letter).to_contain_text("check")
        letter.get_by_label("Why retry").fill("the file is there now")
        letter.get_by_role("button", name="Retry", exact=False).click()
        expect(page.get_by_role("status")).to_contain_text("retry of 'check': queued")
        (tmp_path / "fixed").touch()
        resumed = trestle("resume", run_id, "--store", str(store), "--no-live", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        page.goto(f"{at}health")
        expect(page.get_by_text("The dead-letter queue is empty.")).to_be_visible()
        page.goto(f"{at}runs/{run_id}")
        expect(page.locator("#run-status")).to_have_text("succeeded")
        reopened = page.locator("table.timeline tr.k-step_reopened")
        expect(reopened).to_contain_text("the file is there now (asked by dashboard:")


# -- every page: screenshots, labels, roles, focus order ---------------------------------

SHOWCASE = """
goal: show every page
steps:
  - {id: build, run: "echo built"}
  - {id: test, run: "echo 'tests: 3 failed'; exit 1", needs: [build]}
  - {id: docs, run: "echo docs", needs: [build]}
  - {id: config, write: {path: conf/app.toml, content: "port = 8080\\n"}, approval: confirm}
  - {id: deploy, run: "echo deploy", needs: [test, docs, config], irreversible: true}
"""

A11Y = """() => {
  const problems = [];
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.type === "hidden") continue;
    if (!(el.labels && el.labels.length) && !el.getAttribute("aria-label"))
      problems.push("unlabelled " + el.outerHTML.slice(0, 80));
  }
  for (const el of document.querySelectorAll("button, a[href]")) {
    const name = (el.getAttribute("aria-label") || el.textContent || "").trim();
    if (!name) problems.push("nameless " + el.outerHTML.slice(0, 80));
  }
  if (!document.querySelector("main")) problems.push("no main landmark");
  if (!document.querySelector("nav[aria-label]")) problems.push("no labelled nav");
  if (!document.querySelector("h1")) problems.push("no h1");
  for (const el of document.querySelectorAll("[tabindex]"))
    if (parseInt(el.getAttribute("tabindex"), 10) > 0) problems.push("positive tabindex");
  if (document.documentElement.scrollWidth > window.innerWidth + 1)
    problems.push("the page is wider than the window: " + document.documentElement.scrollWidth);
  return problems;
}"""

FOCUSABLE = """() => Array.from(document.querySelectorAll(
  "a[href], button, input:not([type=hidden]), select, textarea, summary"
)).filter((el) => el.offsetParent !== null || el.tagName === "SUMMARY")
  .map((el) => el.outerHTML.slice(0, 60))"""


def test_every_page_at_desktop_and_phone_width(tmp_path: Path, page: Page) -> None:
    plan, store = project(tmp_path, SHOWCASE)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "app.toml").write_text("port = 80\n", encoding="utf-8")
    code, out = finish(start_run(plan, store, tmp_path))
    assert code == 3, out
    [run_id] = [r for r in run_ids(store) if "." not in r]  # the root, not its worker
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pages = {"runs": "", "run": f"runs/{run_id}", "inbox": "inbox", "health": "health"}
    with dashboard(store) as ui:
        at = ui.log_in(page)
        for width, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_viewport_size(viewport)
            for name, path in pages.items():
                page.goto(at + path)
                expect(page.locator("h1")).to_be_visible()
                problems = page.evaluate(A11Y)
                assert problems == [], (name, width, problems)
                page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
        page.set_viewport_size(DESKTOP)
        page.goto(at + "inbox")
        expect(page.locator("pre.diff").first).to_contain_text("+port = 8080")
        # the keyboard reaches the skip link first, then the navigation, in page order
        order = page.evaluate(FOCUSABLE)
        reached = []
        for _ in range(6):
            page.keyboard.press("Tab")
            reached.append(page.evaluate("document.activeElement.outerHTML.slice(0, 60)"))
        assert reached == order[:6], (reached, order[:6])
        assert "Skip to content" in reached[0]
        page.goto(at + "inbox")
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")  # the skip link moves the focus to the main content
        assert page.evaluate("document.activeElement.id") == "main"
    (ARTIFACTS / "pages.json").write_text(json.dumps(sorted(pages)), encoding="utf-8")


EDIT_PLAN = """
goal: change the port
steps:
  - {id: config, write: {path: conf/app.toml, content: "port = 8080\\n"}, approval: confirm}
"""


def test_an_edited_action_is_shown_as_a_diff_then_approved_as_edited(
    tmp_path: Path, page: Page
) -> None:
    plan, store = project(tmp_path, EDIT_PLAN)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "app.toml").write_text("port = 80\n", encoding="utf-8")
    code, out = finish(start_run(plan, store, tmp_path))
    assert code == 3, out
    [run_id] = run_ids(store)
    with dashboard(store) as ui:
        at = ui.log_in(page)
        card = waiting_card(page, at)
        expect(card.locator("pre.diff")).to_contain_text("+port = 8080")
        card.get_by_text("Edit the action, then approve the edit").click()
        box = card.get_by_label("The action as YAML", exact=False)
        expect(box).to_contain_text("port = 8080")
        box.fill(box.input_value().replace("8080", "9090"))
        card.get_by_role("button", name="Show the edit", exact=False).click()
        card = page.locator("article.card").first
        change = card.get_by_label("diff of the edit", exact=False)
        expect(change).to_contain_text("9090")
        lines = change.inner_text().splitlines()
        assert any(line.startswith("-") and "8080" in line for line in lines), lines
        assert any(line.startswith("+") and "9090" in line for line in lines), lines
        card.get_by_role("button", name="as edited", exact=False).click()
        expect(page.get_by_role("status")).to_contain_text("as edited: queued")
        resumed = trestle("resume", run_id, "--store", str(store), "--no-live", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (tmp_path / "conf" / "app.toml").read_text(encoding="utf-8") == "port = 9090\n"
    [decided] = decisions(store, run_id)
    assert decided.verdict == "modify" and decided.by.startswith("dashboard:")


def test_an_invalid_edit_is_refused_before_anything_is_queued(tmp_path: Path, page: Page) -> None:
    plan, store = project(tmp_path, EDIT_PLAN)
    (tmp_path / "conf").mkdir()
    code, out = finish(start_run(plan, store, tmp_path))
    assert code == 3, out
    with dashboard(store) as ui:
        at = ui.log_in(page)
        card = waiting_card(page, at)
        card.get_by_text("Edit the action, then approve the edit").click()
        card.get_by_label("The action as YAML", exact=False).fill("timeout: -3\nbogus: 1\n")
        card.get_by_role("button", name="Show the edit", exact=False).click()
        expect(page.get_by_role("alert")).to_contain_text("cannot edit bogus")
        expect(page.locator("article.card")).to_have_count(1)  # still waiting


def test_an_agent_run_shows_its_phases_turns_changes_and_rewinds(
    tmp_path: Path, page: Page
) -> None:
    demo = trestle("demo", "--dir", str(tmp_path / "demo"), cwd=tmp_path, timeout=300)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    [store] = list((tmp_path / "demo").glob("**/trestle.db"))[:1]
    [run_id] = [r for r in run_ids(store) if "." not in r]  # the root, not its worker
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with dashboard(store) as ui:
        at = ui.log_in(page)
        page.goto(f"{at}runs/{run_id}")
        agent = page.locator("section[aria-labelledby=agent-heading]")
        expect(agent.locator("ol.phases li").first).to_be_visible()
        for phase in ("understand", "plan", "execute", "validate"):
            expect(agent.locator("ol.phases")).to_contain_text(phase, ignore_case=True)
        turn = agent.locator("details.turn").first
        turn.locator("summary").click()
        expect(turn).to_contain_text("ok")
        page.screenshot(path=str(ARTIFACTS / "agent-run-desktop.png"), full_page=True)
        page.get_by_role("link", name="what fix-slugify changed").first.click()
        expect(page.locator("h1")).to_contain_text("changed")
        expect(page.get_by_label("the diff of", exact=False)).to_contain_text("@@")
        page.screenshot(path=str(ARTIFACTS / "diff-desktop.png"), full_page=True)
        page.go_back()
        step = "fix-slugify"
        page.get_by_label("Rewind the workspace to before step").select_option(step)
        page.get_by_role("button", name="Rewind").click()
        expect(page.get_by_role("status")).to_contain_text(f"restored to before {step!r}")
        expect(page.locator("table.timeline")).to_contain_text("by dashboard:")


BUDGET_PLAN = """
goal: three small steps
budget:
  steps: {soft: 1, top_up: 1}
steps:
  - {id: a, run: "true"}
  - {id: b, run: "true", needs: [a]}
  - {id: c, run: "true", needs: [b]}
"""


def test_a_budget_pause_is_topped_up_by_the_amount_given(tmp_path: Path, page: Page) -> None:
    plan, store = project(tmp_path, BUDGET_PLAN)
    code, out = finish(start_run(plan, store, tmp_path))
    assert code == 3, out
    [run_id] = run_ids(store)
    with dashboard(store) as ui:
        at = ui.log_in(page)
        card = waiting_card(page, at)
        expect(card).to_contain_text("soft steps limit")
        card.get_by_label("Top-up", exact=False).fill("5")
        card.get_by_role("button", name="Approve", exact=False).click()
        expect(page.get_by_role("status")).to_contain_text("approved")
        resumed = trestle("resume", run_id, "--store", str(store), "--no-live", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    [decided] = decisions(store, run_id)
    assert decided.top_up == 5 and decided.by.startswith("dashboard:")


SIMILAR_PLAN = """
goal: two settings
steps:
  - {id: port, write: {path: conf/port.toml, content: "port = 8080\\n"}, approval: confirm}
  - {id: host, write: {path: conf/host.toml, content: "host = a\\n"}, approval: confirm,
     needs: [port]}
"""


def test_approving_similar_says_what_it_covers_and_covers_only_that(
    tmp_path: Path, page: Page
) -> None:
    plan, store = project(tmp_path, SIMILAR_PLAN)
    (tmp_path / "conf").mkdir()
    code, out = finish(start_run(plan, store, tmp_path))
    assert code == 3, out
    [run_id] = run_ids(store)
    with dashboard(store) as ui:
        at = ui.log_in(page)
        card = waiting_card(page, at)
        similar = card.get_by_label("Also approve similar", exact=False)
        expect(card.locator(f"label[for='{similar.get_attribute('id')}']")).to_contain_text(
            "later writes asked for the same reason in the folder 'conf'"
        )
        similar.check()
        card.get_by_role("button", name="Approve", exact=False).click()
        expect(page.get_by_role("status")).to_contain_text("approved")
        resumed = trestle("resume", run_id, "--store", str(store), "--no-live", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr  # 'host' did not ask
    [decided] = decisions(store, run_id)
    assert decided.similar and decided.by.startswith("dashboard:")
    assert (tmp_path / "conf" / "host.toml").read_text(encoding="utf-8") == "host = a\n"


PASSWORD = "correct horse battery"


@contextmanager
def alice_joined(tmp_path: Path, page: Page) -> Iterator[Dashboard]:
    """A real ``trestle ui`` over an empty store, alice joined in ``page``."""
    store = tmp_path / "trestle.db"
    SqliteStore(store).close()
    with dashboard(store) as ui:
        join_as_alice(page, ui, tmp_path)
        yield ui


def join_as_alice(page: Page, ui: Dashboard, cwd: Path) -> None:
    """alice invited with the CLI, and joining through her invitation in ``page``."""
    invited = trestle("people", "invite", "alice", cwd=cwd)
    url = re.search(r"(http://\S+/invite\?token=\S+)", invited.stdout)
    assert url is not None, invited.stdout + invited.stderr
    page.goto(url.group(1))
    # the token left the address: the form is at /invite/KEY, its cookie sent only there
    expect(page).to_have_url(re.compile(re.escape(ui.base) + "invite/[0-9a-f]{32}$"))
    expect(page.get_by_role("heading", name="Join as alice")).to_be_visible()
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("The same again").fill(PASSWORD)
    page.get_by_role("button", name="Set password and log in").click()
    expect(page.get_by_text("acting as dashboard:alice")).to_be_visible()


def stored_device(page: Page, other_than: str | None = None) -> str | None:
    """The device token the page's script keeps for alice, once it is there (and not
    ``other_than``); None if it never is. Polled here: the page's CSP allows no string
    evaluated as script, which ``wait_for_function`` needs."""
    for _ in range(100):
        kept = page.evaluate("localStorage.getItem('trestle.device.alice')")
        if isinstance(kept, str) and kept != other_than:
            return kept
        page.wait_for_timeout(50)
    return None


def log_in_as_alice(page: Page, ui: Dashboard) -> None:
    page.goto(ui.base + "login")
    page.get_by_label("Name").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_a_teammate_joins_by_invitation_and_logs_out_everywhere(
    tmp_path: Path, page: Page, browser: Browser
) -> None:
    with alice_joined(tmp_path, page) as ui:
        laptop = browser.new_context(viewport=DESKTOP)
        try:
            log_in_as_alice(other := laptop.new_page(), ui)
            expect(other.get_by_text("acting as dashboard:alice")).to_be_visible()
            page.get_by_role("button", name="Log out everywhere").click()
            expect(page.get_by_role("alert")).to_contain_text("2 sessions ended")
            other.reload()
            expect(other.get_by_role("alert")).to_contain_text("log in again")
        finally:
            laptop.close()


def test_a_lockout_another_program_causes_spares_the_persons_own_browser(
    tmp_path: Path, page: Page, browser: Browser
) -> None:
    with alice_joined(tmp_path, page) as ui:
        # the device token moved from its cookie into the origin's storage
        kept = stored_device(page)
        assert kept is not None and len(kept) > 30
        assert not [c for c in page.context.cookies() if c["name"].startswith("trestle_device")]
        # a page on another port sets a device cookie for the whole host: the dashboard's
        # pages took it for the login's, kept the planted token, and alice was locked out
        with serving(_Planter) as elsewhere:
            session_page = page.url
            page.goto(elsewhere)
            page.goto(session_page)
        assert stored_device(page) == kept
        page.get_by_role("button", name="Log out", exact=True).click()
        # another program on the host (a step that keeps the network) guesses alice's
        # password until the name is locked: a form and its cookie, a forged Origin
        with httpx.Client(base_url=ui.base, timeout=30) as intruder:
            for n in range(5):
                form = intruder.get("login")
                csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
                assert csrf is not None
                wrong = {"csrf": csrf.group(1), "name": "alice", "password": f"guess {n}!"}
                said = intruder.post("login", data=wrong, headers={"origin": ui.origin})
                assert said.status_code == 401, said.text

        laptop = browser.new_context(viewport=DESKTOP)
        try:
            log_in_as_alice(other := laptop.new_page(), ui)
            expect(other.get_by_role("alert")).to_contain_text("too many wrong passwords")
        finally:
            laptop.close()
        log_in_as_alice(page, ui)  # the browser alice logged in with before is not held back
        expect(page.get_by_text("acting as dashboard:alice")).to_be_visible()
        assert stored_device(page, other_than=kept) is not None  # and its token was renewed


@contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Another server on a free port of 127.0.0.1, answering with ``handler``: its URL."""
    elsewhere = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=elsewhere.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{elsewhere.server_address[1]}"
    finally:
        elsewhere.shutdown()


class _Elsewhere(http.server.BaseHTTPRequestHandler):
    """Another server on 127.0.0.1 (one a step with the network started, or another
    user's): notes the cookies a browser sends it."""

    cookies: list[str] = []
    planted: tuple[str, ...] = ()  # the cookies it sets (Set-Cookie values)

    def do_GET(self) -> None:
        type(self).cookies.append(self.headers.get("Cookie", ""))
        body = b'<!doctype html><title>docs preview</title><img src="/favicon.ico">'
        self.send_response(200)
        for cookie in self.planted:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Planter(_Elsewhere):
    """One that sets cookies for the whole host, as any port may."""

    cookies: list[str] = []
    planted = tuple(
        f"{name}=alice:planted-elsewhere; Path=/; Max-Age=3600"
        for name in ("trestle_device", "trestle_device_0")
    )


def test_another_port_of_the_host_gets_no_cookie_to_act_with(tmp_path: Path, page: Page) -> None:
    # a browser sends a host's cookies to every port of it: the dashboard's must reach
    # only the dashboard's own pages, or a page on another port takes it and approves
    plan, store = project(tmp_path, GATED_PLAN.replace(WAIT.format(name="go"), "true"))
    waiting = trestle("run", str(plan), "--store", str(store), "--no-live", cwd=tmp_path)
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    run_id = run_ids(store)[0]
    with serving(_Elsewhere) as other, dashboard(store) as ui:
        at = ui.log_in(page)
        expect(waiting_card(page, at)).to_contain_text("deploy")
        invited = trestle("people", "invite", "bob", cwd=tmp_path)
        url = re.search(r"(http://\S+/invite\?token=\S+)", invited.stdout)
        assert url is not None, invited.stdout + invited.stderr
        page.goto(url.group(1))  # bob's invitation, opened: its token now in a cookie
        expect(page.get_by_role("heading", name="Join as bob")).to_be_visible()
        for path in ("/", "/inbox", "/login", "/invite", "/s/"):
            page.goto(other + path)
        got = [c for c in _Elsewhere.cookies if c]
        ours = ("trestle_session", "trestle_invite", "trestle_device")
        assert not any(name in c for c in got for name in ours), got
        # what it has is no credential: the cookies of the dashboard's origin
        sent = "; ".join(got)
        with httpx.Client(base_url=ui.base, follow_redirects=False) as thief:
            forged = thief.post(
                f"inbox/{run_id}.1/approve",
                headers={"origin": ui.origin, "cookie": sent},
                data={"csrf": "x"},
            )
            assert forged.status_code in (401, 403), forged.text
    assert decisions(store, run_id) == []


def test_a_link_without_the_sessions_address_opens_in_the_browsers_session(
    tmp_path: Path, page: Page
) -> None:
    # a notification links to the card as /inbox#card-REF: the browser that has a session
    # opens it there; once logged out, the same link says how to log in
    plan, store = project(tmp_path, GATED_PLAN.replace(WAIT.format(name="go"), "true"))
    waiting = trestle("run", str(plan), "--store", str(store), "--no-live", cwd=tmp_path)
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    ref = f"{run_ids(store)[0]}.1"
    with dashboard(store) as ui:
        at = ui.log_in(page)
        page.goto(f"{ui.base}inbox#card-{ref}")
        expect(page).to_have_url(f"{at}inbox#card-{ref}")
        expect(page.locator(f"[id='card-{ref}']")).to_contain_text("deploy")
        page.get_by_role("button", name="Log out", exact=True).click()
        expect(page.get_by_role("alert")).to_contain_text("logged out")
        # the logged-out page's deferred script forgets the session's address: it has run
        # once the document is loaded (the alert is there as soon as it is parsed)
        page.wait_for_load_state("domcontentloaded")
        page.goto(f"{ui.base}inbox#card-{ref}")
        expect(page.get_by_role("alert")).to_contain_text("not logged in here")
        expect(page).to_have_url(f"{ui.base}inbox#card-{ref}")
