"""The dashboard as an operator uses it to find runs and decide, measured in the system's
Chromium through Playwright: one store (the agent demo's, with runs of plain plans added
by real ``trestle run`` processes) and one ``trestle ui`` serve the whole module.

Layout is measured, not eyeballed: at 1400 and 390 px no element is wider than its box
unless the box scrolls, a table cell never breaks inside a short word, and the graph of a
30-step plan fits its box with no two steps overlapping. Each page's screenshot is kept
under the test's temporary directory and checked to be a real image of the page's width.
"""

from __future__ import annotations

import itertools
import json
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from dashboard_helpers import Dashboard, dashboard, plan_run, run_ids, trestle
from test_dashboard_browser import chromium, project
from trestle.store import SqliteStore

pytest.importorskip("playwright.sync_api", reason="the dev extra installs playwright")
from playwright.sync_api import Browser, Locator, Page, ViewportSize, expect, sync_playwright

WIDE: ViewportSize = {"width": 1400, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}

SHOWCASE = """
goal: show the operator's view
steps:
  - {id: build, run: "echo built"}
  - {id: test, run: "echo 'tests: 3 failed in tests/test_release_candidate.py'; exit 1",
     needs: [build]}
  - {id: config, write: {path: conf/app.toml, content: "port = 8080\\n"}, approval: confirm}
  - {id: cleanup, run: "rm -f a.tmp && rm -f b.tmp", approval: confirm}
  - {id: deploy, run: "echo deploy", needs: [test, config, cleanup], irreversible: true}
"""

CHILD = """
goal: write the release notes
steps:
  - id: notes
    description: |-
      review the notes:
      - summary of the release
      - the list of fixes
    write: {path: notes.md, content: "# notes\\n"}
    approval: confirm
"""

PARENT = """
goal: hand the notes to a child
steps:
  - {id: prepare, run: "echo prep"}
  - id: research
    needs: [prepare]
    delegate: {goal: write the release notes, plan: child.yaml}
"""


def thirty_steps() -> str:
    """A chain of 8, a fan-out of 14, a join and a chain of 7: 30 steps, some tagged."""
    lines = ["goal: a wide nightly plan", "steps:"]
    chain = [f"c{i}" for i in range(1, 9)]
    for i, sid in enumerate(chain):
        needs = f", needs: [{chain[i - 1]}]" if i else ""
        lines.append(f'  - {{id: {sid}, run: "true", tags: [nightly]{needs}}}')
    wide = [f"w{i}" for i in range(1, 15)]
    lines += [f'  - {{id: {w}, run: "true", needs: [c8]}}' for w in wide]
    lines.append(f'  - {{id: join, run: "true", needs: [{", ".join(wide)}]}}')
    tail = ["join"] + [f"t{i}" for i in range(1, 8)]
    lines += [f'  - {{id: {b}, run: "true", needs: [{a}]}}' for a, b in itertools.pairwise(tail)]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class World:
    ui: Dashboard
    store: Path
    shots: Path
    agent: str  # the demo's root run
    showcase: str
    parent: str
    child: str
    wide: str


def _root_of(store: Path, before: set[str]) -> str:
    [new] = [r for r in run_ids(store) if r not in before and "." not in r]
    return new


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("operator")
    demo = trestle("demo", "--dir", str(base / "demo"), cwd=base, timeout=300)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    store = base / "demo" / "trestle.db"
    [agent] = [r for r in run_ids(store) if "." not in r]

    show = base / "show"
    show.mkdir()
    (show / "conf").mkdir()
    plan, _ = project(show, SHOWCASE)
    before = set(run_ids(store))
    done = trestle("run", str(plan), "--store", str(store), "--no-live", "--no-prompt", cwd=show)
    assert done.returncode == 3, done.stdout + done.stderr
    showcase = _root_of(store, before)

    tree = base / "tree"
    tree.mkdir()
    (tree / "child.yaml").write_text(CHILD, encoding="utf-8")
    plan, _ = project(tree, PARENT)
    before = set(run_ids(store))
    done = trestle("run", str(plan), "--store", str(store), "--no-live", "--no-prompt", cwd=tree)
    assert done.returncode == 3, done.stdout + done.stderr
    parent = _root_of(store, before)
    child = f"{parent}.research.1"

    (base / "wide").mkdir()
    wide = plan_run(store, thirty_steps(), base / "wide")
    shots = base / "shots"
    shots.mkdir()
    with dashboard(store) as ui:
        yield World(ui, store, shots, agent, showcase, parent, child, wide)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = chromium()
    if path is None:
        pytest.skip("no Chromium here: scripts/setup-browser.sh installs it")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def session(browser: Browser, world: World) -> Iterator[tuple[Page, str]]:
    """One logged-in page for the module (the login URL works once), and the base URL
    of its session's pages."""
    context = browser.new_context(viewport=WIDE)
    context.set_default_timeout(30_000)
    opened = context.new_page()
    at = world.ui.log_in(opened)
    yield opened, at
    context.close()


@pytest.fixture(scope="module")
def page(session: tuple[Page, str]) -> Page:
    return session[0]


@pytest.fixture(scope="module")
def at(session: tuple[Page, str]) -> str:
    """Where the logged-in page's session pages are (``http://HOST:PORT/s/KEY/``)."""
    return session[1]


def path_of(url: str) -> str:
    """The path of ``url`` (a session's pages: ``/s/KEY/``), as the pages' links begin."""
    return urlsplit(url).path


def shot(page: Page, path: Path) -> None:
    """A full-page screenshot, checked to be a PNG as wide as the window."""
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    assert width == page.viewport_size["width"] if page.viewport_size else True, (path, width)
    assert height >= 200 and len(data) > 5_000, (path, height, len(data))


# elements wider than their box that do not scroll it; a scrolling box that scrolls at
# all when ``still`` (a wide screen: nothing should need to); a short word in a table
# cell or a list broken over two lines (other than after a hyphen or a slash)
OVERFLOW = """(still) => {
  const problems = [];
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
    (typeof el.className === "string" && el.className ? "." + el.className : "");
  if (document.documentElement.scrollWidth > window.innerWidth + 1)
    problems.push("page wider than the window: " + document.documentElement.scrollWidth);
  for (const el of document.querySelectorAll("main *")) {
    if (el.closest("svg") && el.tagName.toLowerCase() !== "svg") continue;
    const style = getComputedStyle(el);
    if (style.display === "inline" || style.display === "none") continue;
    const scrolls = ["auto", "scroll"].includes(style.overflowX);
    if (el.scrollWidth > el.clientWidth + 1 && !scrolls && style.overflowX !== "hidden")
      problems.push("overflows: " + name(el) + " " + el.scrollWidth + " > " + el.clientWidth);
    if (still && scrolls && el.tagName !== "PRE" && el.scrollWidth > el.clientWidth + 1)
      problems.push("scrolls at this width: " + name(el));
    const box = el.getBoundingClientRect();
    const main = document.querySelector("main").getBoundingClientRect();
    if (!el.closest(".scroll, pre") && box.width && box.right > main.right + 1)
      problems.push("beyond main: " + name(el) + " " + box.right + " > " + main.right);
  }
  for (const cell of document.querySelectorAll("main td, main dd, main li")) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (node.parentElement.closest("pre, code")) continue;
      const text = node.textContent;
      // a word longer than 24 characters may be broken where its box ends; in a shorter
      // one a line may end after a hyphen or a slash, as text does, but nowhere else
      for (const word of text.matchAll(/\\S+/g)) {
        if (word[0].length > 24) continue;
        for (const m of word[0].matchAll(/[^\\/-]+/g)) {
          const at = word.index + m.index;
          const range = document.createRange();
          range.setStart(node, at);
          range.setEnd(node, at + m[0].length);
          const rects = Array.from(range.getClientRects()).filter((r) => r.width > 0);
          const lines = new Set(rects.map((r) => Math.round(r.top)));
          if (lines.size > 1) problems.push("word broken: " + word[0] + " in " + name(cell));
        }
      }
    }
  }
  return problems.slice(0, 20);
}"""


def test_every_page_fits_at_1400_and_390_px(world: World, page: Page, at: str) -> None:
    pages = {
        "runs": "",
        "showcase": f"runs/{world.showcase}",
        "wide-plan": f"runs/{world.wide}",
        "agent": f"runs/{world.agent}",
        "chat": f"runs/{world.agent}/chat",
        "child": f"runs/{world.child}",
        "inbox": "inbox",
        "health": "health",
    }
    for label, viewport in (("1400", WIDE), ("390", PHONE)):
        page.set_viewport_size(viewport)
        for name, path in pages.items():
            page.goto(at + path)
            expect(page.locator("h1")).to_be_visible()
            for details in page.locator("main details").all():
                details.evaluate("(d) => { d.open = true; }")
            problems = page.evaluate(OVERFLOW, viewport is WIDE)
            assert problems == [], (name, label, problems)
            shot(page, world.shots / f"{name}-{label}.png")
    page.set_viewport_size(WIDE)


GRAPH_FITS = """() => {
  const box = document.querySelector(".graph-box").getBoundingClientRect();
  const svg = document.querySelector("svg.graph").getBoundingClientRect();
  const nodes = Array.from(
    document.querySelectorAll("g.node rect"), (r) => r.getBoundingClientRect());
  let overlaps = 0;
  for (let i = 0; i < nodes.length; i++)
    for (let j = i + 1; j < nodes.length; j++) {
      const a = nodes[i], b = nodes[j];
      if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) overlaps++;
    }
  const outside = nodes.filter((n) => n.left < box.left - 1 || n.right > box.right + 1).length;
  return {box: box.width, svg: svg.width, nodes: nodes.length, overlaps, outside,
          narrowest: Math.min(...nodes.map((n) => n.width))};
}"""


def test_the_graph_of_a_30_step_plan_fits_its_box(world: World, page: Page, at: str) -> None:
    for viewport in (WIDE, PHONE):
        page.set_viewport_size(viewport)
        page.goto(f"{at}runs/{world.wide}")
        fit = page.evaluate(GRAPH_FITS)
        assert fit["nodes"] == 30, fit
        assert fit["overlaps"] == 0 and fit["outside"] == 0, fit
        assert fit["svg"] <= fit["box"] + 1, fit
        if viewport is WIDE:  # drawn at full size where there is room
            assert fit["narrowest"] >= 150, fit
        shot(page, world.shots / f"graph-{viewport['width']}.png")
    page.set_viewport_size(WIDE)
    # the critical path (the chain, a fan-out step, the join and the tail) is marked
    critical = page.locator("g.node.critical")
    expect(critical).to_have_count(8 + 1 + 1 + 7)
    expect(page.locator('g.node.critical[data-step="c1"]')).to_have_count(1)
    expect(page.locator('g.node.critical[data-step="t7"]')).to_have_count(1)
    expect(page.locator("path.edge")).to_have_count(7 + 14 + 14 + 7)
    expect(page.locator("path.edge.critical")).to_have_count(16)
    # a step sits below every step it needs
    tops = page.evaluate(
        """() => Object.fromEntries(Array.from(document.querySelectorAll("g.node"),
          (g) => [g.dataset.step, g.querySelector("rect").getBoundingClientRect().top]))"""
    )
    assert tops["c1"] < tops["c8"] < tops["w1"] < tops["join"] < tops["t1"] < tops["t7"], tops


def test_a_delegating_step_links_to_its_child_run(world: World, page: Page, at: str) -> None:
    page.goto(f"{at}runs/{world.parent}")
    link = page.locator(f'a.child-link[href="{path_of(at)}runs/{world.child}"]')
    expect(link.locator('g.node[data-step="research"]')).to_have_count(1)
    link.click()
    expect(page.locator("h1")).to_contain_text(world.child)
    # and the child's page leads back to its tree's root
    page.get_by_role("link", name="Its tree's root run").click()
    expect(page.locator("h1")).to_contain_text(world.parent)


def card(page: Page, at: str, run_id: str, step: str) -> Locator:
    """The inbox's card on ``step`` of ``run_id``."""
    page.goto(f"{at}inbox")
    found = page.locator("article.card").filter(
        has=page.locator(f'a[href="{path_of(at)}runs/{run_id}#step-{step}"]')
    )
    expect(found).to_have_count(1)
    return found


def test_a_child_runs_card_shows_its_tree_and_its_plan_line_by_line(
    world: World, page: Page, at: str
) -> None:
    found = card(page, at, world.child, "notes")
    tree = found.locator("dd.tree-path")
    expect(tree).to_contain_text(f"{world.parent} > research#1")
    tree.get_by_role("link", name=f"its root run {world.parent}").click()
    expect(page.locator("h1")).to_contain_text(world.parent)
    found = card(page, at, world.child, "notes")
    step = found.locator("dd.lines").filter(has_text="review the notes")
    lines = [line.strip() for line in step.inner_text().splitlines() if line.strip()]
    assert lines[-2:] == ["- summary of the release", "- the list of fixes"], lines


def test_similar_is_offered_only_where_it_covers_more(world: World, page: Page, at: str) -> None:
    config = card(page, at, world.showcase, "config")
    expect(config.get_by_label("Also approve similar", exact=False)).to_have_count(1)
    cleanup = card(page, at, world.showcase, "cleanup")
    expect(cleanup.get_by_label("Also approve similar", exact=False)).to_have_count(0)
    expect(cleanup).to_contain_text("approves nothing more")


def test_a_decided_card_says_so_and_offers_no_more_buttons(
    world: World, page: Page, at: str
) -> None:
    cleanup = card(page, at, world.showcase, "cleanup")
    cleanup.get_by_role("button", name="Approve", exact=False).first.click()
    expect(page.get_by_role("status")).to_contain_text("queued")
    cleanup = card(page, at, world.showcase, "cleanup")
    mark = cleanup.locator("p.queued")
    expect(mark).to_contain_text("decided: approved by dashboard:")
    expect(mark).to_contain_text(f"trestle resume {world.showcase}")
    expect(cleanup.get_by_role("button")).to_have_count(0)
    # the other card of the run is still open to decide
    config = card(page, at, world.showcase, "config")
    expect(config.get_by_role("button", name="Approve", exact=False).first).to_be_visible()


def test_the_waiting_column_counts_dead_letters_too(world: World, page: Page, at: str) -> None:
    page.goto(at)
    row = page.locator(f'tr[data-run="{world.showcase}"] td.waiting-cell')
    expect(row).to_contain_text("approval")
    dead = row.get_by_role("link", name="dead letter test")
    expect(dead).to_have_attribute("href", f"{path_of(at)}health")


def find(page: Page) -> None:
    """Submit the runs page's search, and wait until the page it answers with has loaded:
    the click may return before the navigation does, and the list read next must be the
    new one (the search's address always differs: its form sends every field)."""
    before = page.url
    page.get_by_role("button", name="Find").click()
    page.wait_for_url(lambda url: url != before)


def listed(page: Page) -> list[str]:
    """The runs the runs page lists, in its order."""
    rows = page.locator("table.runs tr[data-run]")
    return [str(row.get_attribute("data-run")) for row in rows.all()]


def test_finding_runs_by_tag_engine_status_time_alerts_and_waiting(
    world: World, page: Page, at: str
) -> None:
    base = at
    page.goto(base)
    page.get_by_label("Step tag").fill("nightly")
    find(page)
    assert listed(page) == [world.wide]
    page.goto(f"{base}?engine=temporal")
    expect(page.get_by_text("No runs match.")).to_be_visible()
    page.goto(f"{base}?engine=local&tag=nightly")
    assert listed(page) == [world.wide]
    page.goto(base)
    page.get_by_label("Status (one or more)").select_option(["created", "succeeded"])
    find(page)
    found = listed(page)
    assert world.wide in found and world.agent in found, found
    assert world.showcase not in found and world.parent not in found, found
    page.goto(f"{base}?since=2999-01-01")
    expect(page.get_by_text("No runs match.")).to_be_visible()
    page.goto(f"{base}?until=2999-01-01&q=operator")
    assert listed(page) == [world.showcase]
    page.goto(base)
    page.get_by_label("Waits for a human").check()
    find(page)
    waiting = listed(page)
    assert world.showcase in waiting and world.wide not in waiting, waiting
    assert world.child in waiting  # its card waits in its own inbox
    page.goto(f"{base}?alerts=on")
    assert world.wide not in listed(page)


def test_paging_through_runs_keeps_the_filters(world: World, page: Page, at: str) -> None:
    every = set(run_ids(world.store))
    page.goto(f"{at}?per=2&q=")
    seen: list[str] = []
    for _ in range(len(every)):
        seen += listed(page)
        assert len(listed(page)) <= 2
        older = page.get_by_role("link", name="Older")
        if not older.count():
            break
        assert "per=2" in (older.get_attribute("href") or "")
        older.click()
    assert sorted(seen) == sorted(every), (seen, every)
    answer = page.request.get(f"{at}?page=x")
    assert answer.status == 400 and "page &#39;x&#39;: expected a page number" in answer.text()
    answer = page.request.get(f"{at}?since=yesterday")
    assert answer.status == 400 and "since &#39;yesterday&#39;: expected a date" in answer.text()


def test_a_runs_event_history_as_json(world: World, page: Page, browser: Browser, at: str) -> None:
    page.goto(f"{at}runs/{world.showcase}")
    href = page.get_by_role("link", name="Event history as JSON").get_attribute("href")
    assert href == f"{path_of(at)}runs/{world.showcase}/events.json"
    answer = page.request.get(world.ui.origin + href)
    assert answer.status == 200 and answer.headers["content-type"] == "application/json"
    events = json.loads(answer.text())
    assert events[0]["seq"] == 1 and events[0]["kind"] == "run_created"
    opened = SqliteStore(world.store, create=False)
    try:
        assert len(events) == len(opened.events(world.showcase))
    finally:
        opened.close()
    some = json.loads(page.request.get(f"{world.ui.origin}{href}?after=2&limit=3").text())
    assert [e["seq"] for e in some] == [3, 4, 5]
    assert page.request.get(f"{world.ui.origin}{href}?limit=0").status == 400
    stranger = browser.new_context()
    try:  # no session: refused like every page
        assert stranger.request.get(world.ui.origin + href).status == 401
    finally:
        stranger.close()


def test_an_agent_conversation_reads_as_a_chat(world: World, page: Page, at: str) -> None:
    page.goto(f"{at}runs/{world.agent}")
    # the timeline's model and tool rows say what was called and what it used
    model = page.locator("table.timeline tr.k-model_called td:last-child").first
    expect(model).to_contain_text("token")
    tool = page.locator("table.timeline tr.k-tool_call_started")
    started = tool.first.locator("td:last-child").inner_text()
    assert started.strip(), "a tool call's row has no detail"
    ended = page.locator("table.timeline tr.k-tool_call_ended td:last-child").first
    expect(ended).to_contain_text("ok")
    page.get_by_role("link", name="The conversation as a chat").click()
    expect(page.locator("h1")).to_contain_text("Conversation")
    answers = page.locator("li.msg.model")
    expect(answers.first).to_contain_text("tokens")
    calls = page.locator("li.msg.model .tool-call")
    expect(calls.first).to_be_visible()
    assert calls.count() >= 2
    expect(calls.first.locator("pre.arguments")).not_to_be_empty()
    expect(page.locator("li.msg.round").first).to_contain_text("goal:")
    results = page.locator("pre.result")
    expect(results.first).not_to_be_empty()
    shot(page, world.shots / "chat-1400.png")


def test_a_forged_queued_decision_is_named_as_one_the_run_will_refuse(
    world: World, page: Page, at: str
) -> None:
    # a step's process can write to the store: what an unsigned request says is not shown
    # as a decision, whoever it claims to be by
    forged = {"fields": {"approval": 1, "verdict": "approve", "by": "mallory"}}
    opened = SqliteStore(world.store, create=False)
    try:
        opened.add_request(
            world.child,
            "decision",
            "notes",
            "",
            now=time.time(),
            payload=json.dumps({**forged, "signature": "0" * 64}),
        )
    finally:
        opened.close()
    notes = card(page, at, world.child, "notes")
    mark = notes.locator("p.queued")
    expect(mark).to_contain_text("not signed with this user's key: the run refuses it")
    expect(mark).not_to_contain_text("mallory")
    expect(notes).not_to_contain_text("decided: approved")
