"""The dashboard's pages and actions over HTTP, against a real ``trestle ui``: filters,
the timeline's filters, and what an action that cannot apply says."""

from __future__ import annotations

from pathlib import Path

from dashboard_helpers import csrf_of, dashboard, pages, plan_run, run_ids, start_run, trestle
from trestle.store import SqliteStore

ONE = "goal: {goal}\nsteps:\n  - {{id: one, run: 'true'}}\n"


def test_runs_are_searched_and_filtered_by_status(tmp_path: Path) -> None:
    store = tmp_path / "trestle.db"
    fixing = plan_run(store, ONE.format(goal="fix the parser"), tmp_path)
    docs = plan_run(store, ONE.format(goal="write the docs"), tmp_path)
    with dashboard(store) as ui:
        client = ui.session()
        found = client.get("/", params={"q": "PARSER"}).text
        assert fixing in found and docs not in found
        assert docs in client.get("/", params={"q": docs[-4:]}).text
        assert fixing not in client.get("/", params={"status": "succeeded"}).text
        assert fixing in client.get("/", params={"status": "created"}).text


def test_a_run_nothing_drives_is_found_as_interrupted_not_running(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "goal: left\ncheckpoints: every_step\nsteps:\n"
        "  - {id: one, run: 'true'}\n  - {id: two, needs: [one], run: 'true'}\n",
        encoding="utf-8",
    )
    store = tmp_path / ".trestle" / "trestle.db"
    start_run(plan, store, tmp_path).communicate(timeout=120)
    [run_id] = run_ids(store)
    rewound = trestle("rewind", run_id, "--to", "two", "--yes", "--store", str(store), cwd=tmp_path)
    assert rewound.returncode == 0, rewound.stdout + rewound.stderr
    opened = SqliteStore(store, create=False)
    try:  # recorded as running: the rewind left it unfinished, and nothing drives it
        assert opened.run(run_id).status == "running"
    finally:
        opened.close()
    with dashboard(store) as ui:
        client = ui.session()
        assert '<option value="interrupted">interrupted</option>' in client.get("/").text
        assert run_id in client.get("/", params={"status": "interrupted"}).text
        assert run_id not in client.get("/", params={"status": "running"}).text
        both = client.get("/", params={"status": ["running", "created"]}).text
        assert run_id not in both


def test_the_timeline_filters_by_kind_and_step(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "goal: two\nsteps:\n  - {id: one, run: 'true'}\n  - {id: two, run: 'exit 1'}\n",
        encoding="utf-8",
    )
    store = tmp_path / ".trestle" / "trestle.db"
    start_run(plan, store, tmp_path).communicate(timeout=120)
    [run_id] = run_ids(store)
    with dashboard(store) as ui:
        client = ui.session()
        every = client.get(f"/runs/{run_id}").text
        assert "run_created</td>" in every and "step_failed</td>" in every
        steps = client.get(f"/runs/{run_id}", params={"only": "steps", "step": "two"}).text
        timeline = steps.split('class="timeline"')[1].split("</table>")[0]
        assert "run_created</td>" not in timeline and "step_failed</td>" in timeline
        assert "<td>one</td>" not in timeline
        # the stream sends the same filtered part
        with client.stream("GET", f"/stream/runs/{run_id}?only=run") as live:
            body = ""
            for chunk in live.iter_text():
                body += chunk
                if 'class="timeline"' in body and "</table>" in body.split('class="timeline"')[1]:
                    break
        assert "run_created</td>" in body.split('class="timeline"')[1]
        assert "step_failed</td>" not in body.split('class="timeline"')[1]


def test_an_action_that_cannot_apply_says_why_and_changes_nothing(tmp_path: Path) -> None:
    store = tmp_path / "trestle.db"
    run_id = plan_run(store, ONE.format(goal="x"), tmp_path)
    with dashboard(store) as ui:
        client = ui.session()
        token = csrf_of(client.get(f"/runs/{run_id}").text)
        own = {"origin": ui.origin}
        retry = client.post(
            f"/runs/{run_id}/steps/one/retry",
            data={"csrf": token, "next": "https://elsewhere.example/"},
            headers=own,
        )
        assert retry.status_code == 303
        # never off the dashboard, nor off the session's pages
        assert retry.headers["location"] == f"{pages(client)}/runs/{run_id}"
        said = client.get(f"/runs/{run_id}").text
        assert "error: run" in said and "cannot retry step" in said
        skip = client.post(f"/runs/{run_id}/steps/one/skip", data={"csrf": token}, headers=own)
        assert skip.status_code == 400
        cancel = client.post(f"/runs/{run_id}/cancel", data={"csrf": token}, headers=own)
        assert cancel.status_code == 303
        assert "the reason is empty" in client.get(f"/runs/{run_id}").text
        assert client.get("/runs/nope").status_code == 404
        nothing = client.post("/inbox/garbage/approve", data={"csrf": token}, headers=own)
        assert nothing.status_code == 404 and "expected RUN.N" in nothing.text
        unknown = client.post(f"/inbox/{run_id}.7/reject", data={"csrf": token}, headers=own)
        assert unknown.status_code == 303
        assert "has no approval 7" in client.get("/inbox").text
        missing = client.get(f"/runs/{run_id}/steps/one/diff").text
        assert "error: " in missing and "checkpoints" in missing
        no_step = client.get(f"/runs/{run_id}/steps/nope/diff")
        assert no_step.status_code == 404 and "has no step &#39;nope&#39;" in no_step.text
        assert client.get("/runs/nope/steps/one/diff").status_code == 404


def test_control_characters_from_a_run_are_shown_as_escapes(tmp_path: Path) -> None:
    """A bidirectional override in a step's output would reorder what the page shows
    (and an escape sequence is no text to read): both appear as escapes."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "goal: hostile text\nsteps:\n"
        "  - id: noisy\n"
        "    run: 'printf \"fine \\033[8mhidden \\342\\200\\256evil\\n\"; exit 1'\n",
        encoding="utf-8",
    )
    store = tmp_path / ".trestle" / "trestle.db"
    start_run(plan, store, tmp_path).communicate(timeout=120)
    [run_id] = run_ids(store)
    with dashboard(store) as ui:
        client = ui.session()
        for page in (f"/runs/{run_id}", "/health"):
            html = client.get(page).text
            assert "\u202e" not in html and "\x1b" not in html, page
        assert "fine \\x1b[8mhidden \\u202eevil" in client.get(f"/runs/{run_id}").text


def test_a_hard_budget_stop_is_raised_from_the_run_page_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "goal: two steps, one allowed\nbudget:\n  steps: {hard: 1}\nsteps:\n"
        "  - {id: one, run: 'echo one >> ledger.txt'}\n"
        "  - {id: two, run: 'echo two >> ledger.txt', needs: [one]}\n",
        encoding="utf-8",
    )
    store = tmp_path / ".trestle" / "trestle.db"
    stopped = start_run(plan, store, tmp_path)
    stopped.communicate(timeout=120)
    assert stopped.returncode == 6
    [run_id] = run_ids(store)
    with dashboard(store) as ui:
        client = ui.session()
        page = client.get(f"/runs/{run_id}").text
        assert "Raise the limit that stopped it" in page
        own = {"origin": ui.origin}
        token = csrf_of(page)
        bad = client.post(
            f"/runs/{run_id}/budget",
            data={"csrf": token, "dimension": "steps", "amount": "inf"},
            headers=own,
        )
        assert bad.status_code == 303
        assert "the amount must be a finite number above 0" in client.get(f"/runs/{run_id}").text
        raised = client.post(
            f"/runs/{run_id}/budget",
            data={"csrf": token, "dimension": "steps", "amount": "1", "reason": "one more"},
            headers=own,
        )
        assert raised.status_code == 303
        assert f"raised the steps limit of run {run_id} by 1" in client.get(f"/runs/{run_id}").text
    resumed = trestle("resume", run_id, "--store", str(store), "--sandbox", "off", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (tmp_path / "ledger.txt").read_text() == "one\ntwo\n"  # each step once


def test_a_run_page_draws_its_tree(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text("steps:\n  - {id: note, run: 'true'}\n")
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "goal: tree\nsteps:\n"
        "  - id: down\n    delegate: {goal: 'note it <b>now</b>', plan: child.yaml}\n",
        encoding="utf-8",
    )
    store = tmp_path / ".trestle" / "trestle.db"
    start_run(plan, store, tmp_path).communicate(timeout=120)
    [root] = [r for r in run_ids(store) if "." not in r]
    child = f"{root}.down.1"
    with dashboard(store) as ui:
        client = ui.session()
        at = pages(client)
        listed = client.get("/").text
        assert listed.index(f">{root}</a>") < listed.index(f'└ <a href="{at}/runs/{child}">')
        page = client.get(f"/runs/{root}").text
        tree = page.split('id="tree-heading"')[1].split("</section>")[0]
        assert f'<a href="{at}/runs/{child}">{child}</a>' in tree
        assert "succeeded" in tree and "note it &lt;b&gt;now&lt;/b&gt;" in tree
        shown = client.get(f"/runs/{child}").text.split('id="tree-heading"')[1]
        parent = f'<a href="{at}/runs/{root}">{root}</a>'
        assert f"A child of run {parent} (its step down, round 1)" in shown


def test_a_failed_run_page_shows_where_it_may_first_have_gone_wrong(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "goal: cascade\ncheckpoints: every_step\nsteps:\n"
        "  - {id: total, run: 'echo 9 > total.txt', verify: [{file_exists: total.txt}]}\n"
        "  - id: report\n    needs: [total]\n    run: 'cat total.txt > report.txt'\n"
        "    verify: [{file_contains: report.txt, text: '12'}]\n",
        encoding="utf-8",
    )
    store = tmp_path / ".trestle" / "trestle.db"
    start_run(plan, store, tmp_path).communicate(timeout=120)
    [run_id] = run_ids(store)
    with dashboard(store) as ui:
        page = ui.session().get(f"/runs/{run_id}").text
    section = page.split('id="blame-heading"')[1].split("</section>")[0]
    assert "Traced back from <code>report</code>: check failed" in section
    first = section.split("<li><strong>")[1]
    assert first.startswith("total</strong>")
    assert "for: weak checks: none looked at what it wrote" in first
    assert f"trestle rewind {run_id} --to total" in section
