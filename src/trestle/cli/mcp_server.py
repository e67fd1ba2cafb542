"""``trestle mcp serve``: Trestle as a Model Context Protocol server over stdio, so that
an IDE or another agent can read runs and decide approvals.

Tools: ``runs``, ``show_run`` and ``inbox`` read (as ``trestle runs``, ``show`` and
``inbox`` print, their ``--json`` as structured content); ``approve``, ``reject``,
``retry``, ``skip``, ``tell`` and ``cancel`` decide, through the CLI's decision path
(:mod:`trestle.cli.mcp_answers`): signed with this user's approval key, recorded by the
run's driver as made by ``mcp:CLIENT:USER@HOST``, where CLIENT is the name the MCP
client gave when it connected (its ``clientInfo.name``; a client names itself, so
it says which tool asked, not who may). Who may is the identity key the server signs
with (the user's ``identity.key``, or ``trestle mcp serve --identity FILE``): where an
operator's approver rule covers an approval, the decision counts only if that key is
in one of its groups, and it is recorded as the group names the key, with the client
(``alice (mcp:cursor)``). Whoever can talk to this server's stdin decides as that key.

A decision is refused from inside a run's step, as ``trestle approve`` refuses it:
when this server was started by a step (checked once, when it starts: its parents may
be gone by the time a call comes), and when the call is (checked again on every call).

Imported only by the command's body: the MCP SDK is an extra (``trestle-runtime[mcp]``).
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from trestle import __version__
from trestle.cli import mcp_answers
from trestle.cli.mcp_answers import Answer
from trestle.core.errors import TrestleError
from trestle.store.base import Store
from trestle.trust.step_origin import inside_a_step

CLIENT_NAME_LIMIT = 64  # characters of the client's name kept in a decision's `by`

RunParam = Annotated[
    str, Field(description="A run's id, or a tail of it that names one run (as the CLI takes).")
]
RefParam = Annotated[
    str,
    Field(description="The approval, RUN.N as `inbox` lists it (or a tail such as 'e2f2.1')."),
]
StepParam = Annotated[str, Field(description="The step's id.")]

READING = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


def deciding(*, destructive: bool, idempotent: bool, open_world: bool) -> ToolAnnotations:
    """The hints of a tool that decides something (never read-only)."""
    return ToolAnnotations(
        read_only_hint=False,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=open_world,
    )


INSTRUCTIONS = (
    "Trestle runs multi-step plans and agents durably. `runs` lists runs, `show_run` "
    "shows one with its report, `inbox` the approvals waiting for a person, each as its "
    "handoff card. Decisions (approve, reject, retry, skip, tell, change_plan, cancel) "
    "are signed and recorded as this user's, made through MCP by this client; read the "
    "card first."
)


def build_server(where: str | Path, *, user: str | None = None) -> MCPServer:
    """The server over the store at ``where`` (opened for each call, never created).
    ``user`` is who decisions are made as (default: this user at this host)."""
    from trestle.store.location import open_store

    started_inside = _started_inside(where, open_store)
    who = user or _user()
    server = MCPServer(
        "trestle",
        title="Trestle",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level="WARNING",
    )

    async def answer(work: Callable[[Store], Answer], *, deciding: bool = False) -> CallToolResult:
        def call() -> Answer:
            if deciding:  # before the store is even opened: a step may not see it
                mcp_answers.refuse_inside_a_step(None, started_inside)
            store = open_store(where, create=False)
            try:
                if deciding:
                    mcp_answers.refuse_inside_a_step(store)  # drivers of its runs too
                return work(store)
            finally:
                store.close()

        try:
            # the store, the lease checks and the wait for a live driver's outcome block
            done = await anyio.to_thread.run_sync(call)
        except TrestleError as exc:
            raise ToolError(str(exc)) from None
        return CallToolResult(
            content=[TextContent(type="text", text=done.text)], structured_content=done.data
        )

    def by(ctx: Context) -> str:
        return f"mcp:{client_name(ctx)}:{who}"

    @server.tool(annotations=READING, title="List runs")
    async def runs(
        limit: Annotated[int, Field(ge=1, le=1000, description="How many, newest first.")] = 50,
    ) -> CallToolResult:
        """Runs in the store, newest first: status, steps done, goal (as `trestle runs`)."""
        return await answer(lambda st: mcp_answers.runs_answer(st, limit))

    @server.tool(annotations=READING, title="Show a run")
    async def show_run(run: RunParam) -> CallToolResult:
        """A run's state and its report: what is done, failed, blocked, skipped, waiting
        and what a human should check (as `trestle show RUN`)."""
        return await answer(lambda st: mcp_answers.show_answer(st, run))

    @server.tool(annotations=READING, title="Approvals waiting")
    async def inbox(
        run: Annotated[str | None, Field(description="Only this run's approvals.")] = None,
    ) -> CallToolResult:
        """Every open approval, oldest first, as its handoff card: the exact action, why
        it asks, what approving and rejecting do, and a write's diff (as `trestle inbox`)."""
        return await answer(lambda st: mcp_answers.inbox_answer(st, run))

    @server.tool(
        title="Approve an action",
        annotations=deciding(destructive=True, idempotent=False, open_world=True),
    )
    async def approve(
        ctx: Context,
        ref: RefParam,
        reason: Annotated[str, Field(description="Recorded with the decision.")] = "",
        similar: Annotated[
            bool,
            Field(
                description="Also approve similar actions for the rest of the run (the "
                "card's `if --similar` line says which)."
            ),
        ] = False,
        top_up: Annotated[
            float | None, Field(ge=0, description="For a budget pause: how much to add.")
        ] = None,
        group: Annotated[
            str | None,
            Field(
                description="With similar: the group id `inbox` showed; the approval is "
                "refused if the group changed since (as `trestle approve --group`)."
            ),
        ] = None,
    ) -> CallToolResult:
        """Approve the action an approval shows (or a budget top-up): that exact action
        runs when the run is next driven (as `trestle approve REF`). With ``similar``,
        the approvals of its inbox group that wait now are approved with it."""
        made = by(ctx)
        return await answer(
            lambda st: mcp_answers.approve(
                st, ref, by=made, reason=reason, similar=similar, top_up=top_up, group=group
            ),
            deciding=True,
        )

    @server.tool(
        title="Reject an action",
        annotations=deciding(destructive=True, idempotent=False, open_world=False),
    )
    async def reject(
        ctx: Context,
        ref: RefParam,
        reason: Annotated[
            str, Field(min_length=1, description="Why (recorded, and fed back to the proposer).")
        ],
    ) -> CallToolResult:
        """Reject an action: it does not run, its step fails with the reason, and steps
        that need it are blocked (as `trestle reject REF --reason TEXT`)."""
        made = by(ctx)
        return await answer(
            lambda st: mcp_answers.reject(st, ref, by=made, reason=reason), deciding=True
        )

    @server.tool(
        title="Retry a step",
        annotations=deciding(destructive=False, idempotent=False, open_world=True),
    )
    async def retry(
        ctx: Context,
        run: RunParam,
        step: StepParam,
        reason: Annotated[
            str, Field(description="Why it is worth another try.")
        ] = "retry requested",
    ) -> CallToolResult:
        """Give a failed or escalated step a fresh set of attempts (as `trestle retry`)."""
        made = by(ctx)
        return await answer(
            lambda st: mcp_answers.retry_or_skip(st, "retry", run, step, by=made, reason=reason),
            deciding=True,
        )

    @server.tool(
        title="Skip a step",
        annotations=deciding(destructive=True, idempotent=False, open_world=False),
    )
    async def skip(
        ctx: Context,
        run: RunParam,
        step: StepParam,
        reason: Annotated[
            str, Field(min_length=1, description="Why the step is not needed (recorded).")
        ],
    ) -> CallToolResult:
        """Mark a step as not to be run; steps that need it go on without it (as
        `trestle skip`)."""
        made = by(ctx)
        return await answer(
            lambda st: mcp_answers.retry_or_skip(st, "skip", run, step, by=made, reason=reason),
            deciding=True,
        )

    @server.tool(
        title="Tell an agent run",
        annotations=deciding(destructive=False, idempotent=False, open_world=True),
    )
    async def tell(
        ctx: Context,
        run: RunParam,
        text: Annotated[str, Field(min_length=1, description="What else the run must do.")],
    ) -> CallToolResult:
        """Add a requirement to a running agent run; it is planned where it fits (as
        `trestle tell`)."""
        made = by(ctx)
        return await answer(lambda st: mcp_answers.tell(st, run, text, by=made), deciding=True)

    @server.tool(
        title="Change an agent run's plan",
        annotations=deciding(destructive=True, idempotent=False, open_world=False),
    )
    async def change_plan(
        ctx: Context,
        run: RunParam,
        step: StepParam,
        drop: Annotated[bool, Field(description="Drop the step: it will not run.")] = False,
        objective: Annotated[
            str, Field(description="The step's new objective (instead of dropping it).")
        ] = "",
    ) -> CallToolResult:
        """Drop a step of an agent run's plan that has not started, or give it a new
        objective (as `trestle tell RUN --drop STEP` / `--change STEP TEXT`)."""
        made = by(ctx)
        return await answer(
            lambda st: mcp_answers.change_plan(
                st, run, step, drop=drop, objective=objective, by=made
            ),
            deciding=True,
        )

    @server.tool(
        title="Cancel a run",
        annotations=deciding(destructive=True, idempotent=True, open_world=False),
    )
    async def cancel(
        ctx: Context,
        run: RunParam,
        reason: Annotated[
            str, Field(min_length=1, description="Why the run is cancelled (recorded).")
        ],
    ) -> CallToolResult:
        """Cancel a run and its delegated children: their steps' processes are stopped,
        the reason recorded, and the run takes no more decisions (as `trestle cancel`)."""
        made = by(ctx)
        return await answer(
            lambda st: mcp_answers.cancel(st, run, by=made, reason=reason), deciding=True
        )

    return server


def _started_inside(where: str | Path, open_store: Callable[..., Store]) -> str | None:
    """Why this server is part of a run's step, checked as it starts, while the step's
    processes are there to see; with the drivers of the store's runs when it opens (a
    step does not see the store in the sandbox)."""
    try:
        store = open_store(where, create=False)
    except Exception:  # no store to be seen (a sandboxed step's): the process checks alone
        return inside_a_step()
    try:
        return inside_a_step(store)
    finally:
        store.close()


def client_name(ctx: Context) -> str:
    """The name the client gave when it connected (``clientInfo.name``), kept short and
    printable; ``unknown-client`` when it gave none."""
    params = ctx.session.client_params
    info = getattr(params, "client_info", None) if params is not None else None
    name = str(getattr(info, "name", "") or "")
    name = "".join(c if c.isprintable() else " " for c in name)
    name = " ".join(name.split())[:CLIENT_NAME_LIMIT]
    return name or "unknown-client"


def _user() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "user"
    return f"{user}@{socket.gethostname()}"
