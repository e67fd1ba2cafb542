"""The PostgreSQL store's tables, their numbered migrations, and what a database holds.

The tables and columns are the SQLite store's (flags as 0 or 1 there too), so both
stores read them with the same queries (:mod:`trestle.store.sql_reads`); only the
compressed bytes SQLite keeps in its untyped text columns have columns of their own
here (schema 2), which the reads take through :data:`EVENT_BODY` and
:data:`SNAPSHOT_STATE`.

Every table lives in the schema ``trestle``, so a database can be told apart at a
glance: one with that schema and its version table is a Trestle store; one with
tables of its own and no such schema belongs to another application and is refused
(never written into); an empty one becomes a store when a run is started in it.

The schema's version is a row in ``trestle.schema_version``. A store written by a
newer Trestle is refused; one written by an older Trestle is refused too, with the
command that upgrades it (:meth:`~trestle.store.postgres.PostgresStore.upgrade`): a
store shared by many hosts is never changed by whichever process happens to open it.
"""

from __future__ import annotations

SCHEMA = "trestle"

MIGRATIONS: tuple[str, ...] = (
    # 1: runs, events, payloads, snapshots, leases, requests, groups, Temporal's blobs
    """
    CREATE SCHEMA trestle;
    CREATE TABLE trestle.schema_version (version integer NOT NULL);
    INSERT INTO trestle.schema_version VALUES (0);
    CREATE TABLE trestle.runs (
        run_id text PRIMARY KEY,
        goal text NOT NULL,
        plan_path text,
        workspace text NOT NULL,
        status text NOT NULL,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        last_seq bigint NOT NULL,
        summary text NOT NULL
    );
    CREATE INDEX runs_created ON trestle.runs (created_at DESC);
    CREATE TABLE trestle.events (
        run_id text NOT NULL,
        seq bigint NOT NULL,
        kind text NOT NULL,
        v integer NOT NULL,
        at double precision NOT NULL,
        data text NOT NULL,
        packed smallint NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE trestle.payloads (
        run_id text NOT NULL,
        hash bytea NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (run_id, hash)
    );
    CREATE TABLE trestle.snapshots (
        run_id text PRIMARY KEY,
        seq bigint NOT NULL,
        state text NOT NULL,
        monitors bytea NOT NULL,
        mac text NOT NULL
    );
    CREATE TABLE trestle.leases (
        run_id text PRIMARY KEY,
        owner text NOT NULL,
        pid integer NOT NULL,
        host text NOT NULL,
        token bigint NOT NULL,
        expires_at double precision NOT NULL
    );
    CREATE TABLE trestle.requests (
        id bigserial PRIMARY KEY,
        run_id text NOT NULL,
        kind text NOT NULL,
        step text NOT NULL,
        reason text NOT NULL,
        created_at double precision NOT NULL,
        payload text NOT NULL,
        consumed smallint NOT NULL DEFAULT 0
    );
    CREATE INDEX requests_pending ON trestle.requests (run_id) WHERE consumed = 0;
    CREATE TABLE trestle.board (
        id bigserial PRIMARY KEY,
        grp text NOT NULL,
        key text NOT NULL,
        version bigint NOT NULL,
        value text NOT NULL,
        writer text NOT NULL,
        step text NOT NULL,
        call_key text NOT NULL,
        at double precision NOT NULL,
        accepted smallint NOT NULL,
        expected bigint
    );
    CREATE UNIQUE INDEX board_versions ON trestle.board (grp, key, version) WHERE accepted = 1;
    CREATE INDEX board_keys ON trestle.board (grp, key);
    CREATE TABLE trestle.messages (
        n bigserial UNIQUE,
        id text PRIMARY KEY,
        grp text NOT NULL,
        sender text NOT NULL,
        recipient text NOT NULL,
        reply_to text,
        body text NOT NULL,
        sent_at double precision NOT NULL,
        delivered_at double precision,
        delivered_by text
    );
    CREATE INDEX messages_to ON trestle.messages (grp, recipient);
    CREATE TABLE trestle.blobs (
        hash text PRIMARY KEY,
        data bytea NOT NULL
    )
    """,
    # 2: the SQLite store's schema 6 forms: an event's body may be stored compressed
    # (``packed`` flag 2, trestle.store.bodies) in ``compressed``, its ``data`` then
    # empty; a long payload may be a manifest of shared pieces (trestle.store.payloads);
    # a snapshot's state is stored compressed in ``compressed_state``, its ``state``
    # then empty. Columns that may be NULL, so no row is rewritten: rows of schema 1
    # keep their text and are read as they were written. The number tells an older
    # Trestle it cannot read the new forms.
    """
    ALTER TABLE trestle.events ADD COLUMN compressed bytea;
    ALTER TABLE trestle.snapshots ADD COLUMN compressed_state bytea
    """,
)

# How the shared reads (trestle.store.sql_reads) read an event's body and a snapshot's
# state: the compressed bytes, or a schema 1 row's text as its UTF-8 bytes (one column
# has one type).
EVENT_BODY = "COALESCE(compressed, convert_to(data, 'UTF8'))"
SNAPSHOT_STATE = "COALESCE(compressed_state, convert_to(state, 'UTF8'))"

# What a database holds, in one query: Trestle's version table (or NULL), and up to
# five tables of anything else, so a database of another application is named by them.
SURVEY = """
    SELECT to_regclass('trestle.schema_version') IS NOT NULL,
           EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'trestle'),
           ARRAY(SELECT schemaname || '.' || tablename FROM pg_tables
                 WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'trestle')
                 ORDER BY 1 LIMIT 5)
"""

TABLES = ("runs", "events", "payloads", "snapshots", "leases", "requests")
