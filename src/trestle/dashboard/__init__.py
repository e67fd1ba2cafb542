"""The web dashboard (``trestle ui``): runs, a run's plan and log, the inbox, health.

It reads the store the way the CLI does and changes a run only through the CLI's own
paths: decisions through :func:`trestle.lifecycle.approvals.queue_decision`, retry and skip
through :func:`trestle.lifecycle.runs.request_decision`, cancel through
:func:`trestle.lifecycle.cancel.cancel_run`. Each is signed and recorded exactly as from the
command line, with ``by`` naming the dashboard and its user.

Needs the ``ui`` extra (FastAPI, uvicorn, Jinja2, python-multipart); only
:mod:`trestle.dashboard.serve` and :mod:`trestle.dashboard.app` import them.
"""
