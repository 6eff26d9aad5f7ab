"""The ledger's schema, as named migrations applied in order and recorded in `migrations`.

Plain SQL with a comment on every column, so the file documents the ledger for anyone
reading it with `sqlite3`, `sqlite-utils` or Datasette. Append new migrations at the end;
never edit one that has shipped.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
        CREATE TABLE requests (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,             -- "REQ-<id>", the id operators use
            title TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL DEFAULT 'open',   -- open|in_progress|blocked|done|cancelled
            owner TEXT,                           -- person id, or "kind:handle" when unmapped
            owner_at TEXT,                        -- source-side time of the owner's last change
            state_at TEXT,
            title_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX requests_owner ON requests(owner);
        CREATE INDEX requests_state ON requests(state);
        CREATE TABLE links (
            id INTEGER PRIMARY KEY,
            request_id INTEGER NOT NULL REFERENCES requests(id),
            source TEXT NOT NULL,                 -- configured source name
            kind TEXT NOT NULL,                   -- github|jira|trello|email
            ref TEXT NOT NULL,                    -- the item's id within its source
            url TEXT NOT NULL DEFAULT '',
            snap_owner TEXT,                      -- last values synced with this source
            snap_state TEXT,
            snap_title TEXT,
            source_updated_at TEXT,
            first_seen_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            UNIQUE (source, ref)
        );
        CREATE INDEX links_request ON links(request_id);
        CREATE TABLE link_keys (                  -- keys naming an item, and keys it mentions
            link_id INTEGER NOT NULL REFERENCES links(id),
            key TEXT NOT NULL,                    -- "github:acme/api#12", "jira:OPS-7", "req:42"
            role TEXT NOT NULL,                   -- self|mention
            PRIMARY KEY (link_id, key, role)
        );
        CREATE INDEX link_keys_key ON link_keys(key, role);
        CREATE TABLE people (
            id TEXT PRIMARY KEY,
            name TEXT
        );
        CREATE TABLE identities (
            kind TEXT NOT NULL,
            handle TEXT NOT NULL,
            person_id TEXT REFERENCES people(id), -- NULL: nobody in config claims this handle
            first_seen_at TEXT,
            last_seen_at TEXT,
            PRIMARY KEY (kind, handle)
        );
        CREATE TABLE events (                     -- append-only
            id INTEGER PRIMARY KEY,
            request_id INTEGER REFERENCES requests(id),
            at TEXT NOT NULL,                     -- when syncd recorded it
            source_at TEXT,                       -- when it happened at the source
            kind TEXT NOT NULL,                   -- created|linked|owner_changed|state_changed|conflict|writeback
            field TEXT,
            source TEXT,                          -- source name, or "operator"
            actor TEXT,
            from_value TEXT,
            to_value TEXT,
            note TEXT,
            detail TEXT
        );
        CREATE INDEX events_request ON events(request_id, id);
        CREATE INDEX events_at ON events(at);
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            link_id INTEGER NOT NULL REFERENCES links(id),
            request_id INTEGER NOT NULL REFERENCES requests(id),
            field TEXT NOT NULL,                  -- "owner"
            value TEXT,                           -- canonical value to write (NULL: unassign)
            origin TEXT,                          -- where the change came from
            actor TEXT,
            note TEXT,
            status TEXT NOT NULL,                 -- pending|done|dead|skipped|superseded
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            last_error TEXT,
            attempted_at TEXT,                    -- set just before a write is sent: after a
                                                  -- crash, tells syncd's own write from a person's
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX outbox_one_pending ON outbox(link_id, field) WHERE status = 'pending';
        CREATE INDEX outbox_status ON outbox(status, next_attempt_at);
        CREATE TABLE cursors (
            source TEXT PRIMARY KEY,
            value TEXT NOT NULL,                  -- adapter-owned JSON
            updated_at TEXT NOT NULL
        );
        CREATE TABLE source_status (
            source TEXT PRIMARY KEY,
            kind TEXT,
            last_poll_at TEXT,
            last_success_at TEXT,
            last_error TEXT,
            last_error_at TEXT,
            retry_at TEXT,
            last_requests INTEGER,
            items_seen INTEGER NOT NULL DEFAULT 0,
            rate_remaining INTEGER,
            rate_limit INTEGER,
            rate_reset_at TEXT
        );
        CREATE TABLE quarantine (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            ref TEXT,
            reason TEXT NOT NULL,
            payload TEXT,
            at TEXT NOT NULL
        );
        """,
    ),
    (
        "0007_views",
        """
        CREATE VIEW request_board AS              -- who owns what: one row per request
        SELECT
            r.key AS request,                     -- "REQ-42"
            r.title AS title,
            r.owner AS owner,                     -- person id, or "kind:handle" when unmapped
            coalesce(p.name, p.id, r.owner) AS owner_name,  -- the person's name from config
            r.state AS state,                     -- open|in_progress|blocked|done|cancelled
            (SELECT group_concat(l.source || ' ' || l.ref || ' ' || l.url, char(10))
               FROM links l WHERE l.request_id = r.id) AS links,  -- one "source ref url" a line
            (SELECT count(*) FROM links l WHERE l.request_id = r.id) AS linked_items,
            coalesce(h.source_at, h.at) AS last_handoff_at,  -- when the owner last changed
            h.from_value AS last_handoff_from,    -- previous owner, NULL when it was unowned
            h.source AS last_handoff_where,       -- source name, "operator" or "routing"
            h.actor AS last_handoff_actor,        -- who made it, when the tool says
            h.note AS last_handoff_note,          -- why, when someone said
            r.updated_at AS updated_at            -- when syncd last changed the request
        FROM requests r
        LEFT JOIN people p ON p.id = r.owner
        LEFT JOIN events h ON h.id = (SELECT max(x.id) FROM events x
                                      WHERE x.request_id = r.id AND x.kind = 'owner_changed');
        CREATE VIEW handoff_log AS                -- every handoff, oldest first
        SELECT
            e.id AS event_id,
            coalesce(e.source_at, e.at) AS happened_at,  -- source-side time when known
            e.at AS recorded_at,                  -- when syncd recorded it
            r.key AS request,                     -- "REQ-42"
            r.title AS title,
            e.from_value AS from_owner,           -- NULL: it was unowned
            coalesce(fp.name, e.from_value) AS from_name,
            e.to_value AS to_owner,               -- NULL: unassigned
            coalesce(tp.name, e.to_value) AS to_name,
            e.source AS "where",                  -- source name, "operator" or "routing"
            e.actor AS actor,                     -- who made the change, when the tool says
            e.note AS why,                        -- the operator's note or the routing rule
            (SELECT min(coalesce(a.source_at, a.at)) FROM events a
               WHERE a.request_id = e.request_id AND a.kind = 'accepted' AND a.id > e.id
                 AND NOT EXISTS (SELECT 1 FROM events n WHERE n.request_id = e.request_id
                                 AND n.kind = 'owner_changed' AND n.id > e.id AND n.id < a.id)
            ) AS accepted_at                      -- when the new owner accepted (NULL: not yet)
        FROM events e
        JOIN requests r ON r.id = e.request_id
        LEFT JOIN people fp ON fp.id = e.from_value
        LEFT JOIN people tp ON tp.id = e.to_value
        WHERE e.kind = 'owner_changed'
        ORDER BY happened_at, e.id
        """,
    ),
    (
        "0003_mail",
        """
        CREATE TABLE adapter_state (              -- what an adapter remembers beyond its cursor
            source TEXT NOT NULL,                 -- configured source name
            key TEXT NOT NULL,                    -- adapter-chosen, for email: "t:<root Message-ID>"
                                                  -- (a thread), "m:<Message-ID>" (the thread a
                                                  -- message belongs to), "u:<folder>/<uidvalidity>/<uid>"
            value TEXT NOT NULL,                  -- adapter-owned JSON
            PRIMARY KEY (source, key)
        ) WITHOUT ROWID;
        """,
    ),
    (
        "0006_routing",
        """
        ALTER TABLE links ADD COLUMN requester TEXT;  -- who asked, in the tool's namespace
                                                      -- (login, accountId, mail address)
        ALTER TABLE links ADD COLUMN labels TEXT;     -- JSON array: labels, Jira components,
                                                      -- as last seen (what routing rules test)
        CREATE TABLE absences (                   -- operator state: `syncd away` / `syncd back`
            person TEXT PRIMARY KEY,              -- person id
            since TEXT NOT NULL,                  -- when the absence was recorded
            until TEXT NOT NULL,                  -- it ends by itself then
            delegate TEXT,                        -- person id receiving handoffs meant for them
            move_open INTEGER NOT NULL DEFAULT 0, -- 1: their open requests move to the delegate too
            note TEXT,
            actor TEXT                            -- the operator who recorded it
        );
        CREATE TABLE routing_state (              -- what routing remembers across restarts
            key TEXT PRIMARY KEY,                 -- "rotation:<team id>", or "events" (the last
                                                  -- event the follow-through step has read)
            value TEXT,                           -- last person given work, or an event id
            updated_at TEXT NOT NULL
        );
        INSERT INTO routing_state (key, value, updated_at)
            SELECT 'events', coalesce(max(id), 0), strftime('%Y-%m-%dT%H:%M:%fZ', 'now') FROM events;
        CREATE TABLE handoffs (                   -- follow-through: the latest handoff per request
            request_id INTEGER PRIMARY KEY REFERENCES requests(id),
            event_id INTEGER NOT NULL,            -- its owner_changed event
            owner TEXT NOT NULL,                  -- the new owner, who is to accept it
            previous_owner TEXT,
            at TEXT NOT NULL,                     -- when it happened (source-side when known)
            accepted_at TEXT,                     -- NULL: awaiting acceptance
            accepted_by TEXT,
            accepted_how TEXT,                    -- "comment in jira", "operator", "handed on"...
            overdue_at TEXT,                      -- when it was found not accepted in time
            escalated_at TEXT                     -- when the escalation ran (once)
        );
        CREATE INDEX handoffs_open ON handoffs(accepted_at, overdue_at);
        CREATE TABLE touches (                    -- the latest thing each person did on a request
            request_id INTEGER NOT NULL REFERENCES requests(id),
            person TEXT NOT NULL,                 -- person id, or "kind:handle" when unmapped
            at TEXT NOT NULL,                     -- source-side time
            kind TEXT NOT NULL,                   -- comment|state|edit|reply|assign
            source TEXT NOT NULL,                 -- source name
            PRIMARY KEY (request_id, person)
        ) WITHOUT ROWID;
        """,
    ),
    (
        "0005_handoff_record",
        """
        -- Comment rows in the outbox (field = 'comment'): one per handoff and linked item;
        -- status 'unneeded' when the source's handoff_comment policy wants none.
        ALTER TABLE outbox ADD COLUMN event_id INTEGER;   -- the owner_changed event it tells of
        ALTER TABLE outbox ADD COLUMN posted_id TEXT;     -- the tool's id of the posted comment
        DROP INDEX outbox_one_pending;
        CREATE UNIQUE INDEX outbox_one_pending ON outbox(link_id, field)
            WHERE status = 'pending' AND field = 'owner';
        CREATE UNIQUE INDEX outbox_one_comment ON outbox(link_id, event_id)
            WHERE field = 'comment';
        CREATE TABLE comment_commands (           -- /assign commands read from comments
            source TEXT NOT NULL,                 -- configured source name
            comment_id TEXT NOT NULL,             -- the tool's comment id
            request_id INTEGER REFERENCES requests(id),
            ref TEXT,                             -- the item commented on
            at TEXT NOT NULL,                     -- when syncd read it
            source_at TEXT,                       -- when it was written
            actor TEXT,                           -- person id, or "kind:handle" when unmapped
            command TEXT NOT NULL,                -- the command line, bounded
            outcome TEXT NOT NULL,                -- handed_off | refused | nothing
            reason TEXT,                          -- why it was refused
            PRIMARY KEY (source, comment_id)
        );
        """,
    ),
    (
        "0004_quarantine",
        """
        -- One open row per quarantined item (source, ref): read badly again, it is updated;
        -- read cleanly again, it is released (and a 'released' event says so). `at` is when
        -- it was first quarantined. Rows without a ref (nothing to tell items apart) stay
        -- one per time.
        ALTER TABLE quarantine ADD COLUMN last_seen_at TEXT;
        ALTER TABLE quarantine ADD COLUMN times INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE quarantine ADD COLUMN released_at TEXT;
        UPDATE quarantine SET last_seen_at = at;
        CREATE INDEX quarantine_open ON quarantine(source, ref) WHERE released_at IS NULL;
        """,
    ),
    (
        "0002_identity",
        # Items join a request only by declaration (README "How items are linked"). ALTER
        # TABLE keeps /* */ comments in the stored schema, not "--" ones.
        """
        ALTER TABLE link_keys ADD COLUMN relation TEXT /* role "mention" (a relation, never
            a link): blocked_by|blocks|duplicate_of|parent|child|related|mention. Role
            "declared": a key this item declares to be the same work (it links) */;
        ALTER TABLE links ADD COLUMN via TEXT /* how the item joined its request:
            created (it made the request), declared, mention (the old rule, or any-mention),
            operator (syncd link), unlinked (syncd unlink made it a request of its own) */;
        ALTER TABLE links ADD COLUMN trusted INTEGER NOT NULL DEFAULT 1 /* 1: its author may
            declare identity. Under any-mention, only such items' mentions link */;
        UPDATE links SET via = CASE
            WHEN id = (SELECT min(l2.id) FROM links l2 WHERE l2.request_id = links.request_id)
            THEN 'created' ELSE 'mention' END;
        CREATE TABLE link_pins (                  -- an operator's say on one item, which text does not undo
            link_id INTEGER PRIMARY KEY REFERENCES links(id),
            held INTEGER NOT NULL DEFAULT 0,      -- 1: `syncd link` put it in its request, text never moves it
            ignored TEXT NOT NULL DEFAULT '[]',   -- JSON keys it was unlinked from: declarations of these
                                                  -- no longer link it (sticky unlink, split)
            actor TEXT,                           -- Unix user who decided
            note TEXT,
            at TEXT NOT NULL
        );
        CREATE TABLE merges (                     -- every merge of two requests, so it can be undone
            id INTEGER PRIMARY KEY,
            kept_id INTEGER NOT NULL,             -- the request that stayed
            gone_id INTEGER NOT NULL,             -- the request folded into it (its row is deleted)
            gone_key TEXT NOT NULL,
            gone_row TEXT NOT NULL,               -- JSON of the folded request's row at merge time
            link_ids TEXT NOT NULL,               -- JSON ids of the links that came with it
            event_ids TEXT NOT NULL,              -- JSON ids of its events, moved to kept_id
            via TEXT,                             -- the item whose declaration merged them, or "operator"
            actor TEXT,
            note TEXT,
            at TEXT NOT NULL,
            split_at TEXT,                        -- set when `syncd split` undid it
            split_by TEXT
        );
        CREATE INDEX merges_gone ON merges(gone_id);
        CREATE INDEX merges_kept ON merges(kept_id)
        """,
    ),
]
