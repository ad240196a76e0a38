"""Every query of the tracker."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from shared.addresses import unusable_on
from shared.db import Connection
from shared.events import (
    ActionView,
    AutoPause,
    Counters,
    DeliveryDeferred,
    DeliveryFailed,
    FinalDelivery,
    HistoryEntry,
    MessageRef,
    Outcome,
    RunCancelled,
    RunEvent,
    RunPaused,
    RunResumed,
    RunStarted,
    TargetingCompleted,
)

from .autopause import Attempts
from .outcome import is_complete, outcome
from .reports import Recorded, Report, detail_of, kind_of, once_each


async def record_runs(pool: asyncpg.Pool, batch: Sequence[RunEvent]) -> None:
    """Record the starts, targeting totals, cancellations, pauses and resumes of a batch."""
    await record_run_started(pool, [e for e in batch if isinstance(e, RunStarted)])
    await record_targeting(pool, [e for e in batch if isinstance(e, TargetingCompleted)])
    await record_cancellations(pool, [e for e in batch if isinstance(e, RunCancelled)])
    await record_pauses(pool, [e for e in batch if isinstance(e, RunPaused | RunResumed)])


async def record_run_started(pool: asyncpg.Pool, runs: Sequence[RunStarted]) -> None:
    async with pool.acquire() as connection, connection.transaction():
        await connection.executemany(
            """INSERT INTO tracker.runs (run_id, broadcast_id, tenant_id, requested_by, name,
                                         purpose, auto_pause, resends_failures_of,
                                         created_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT (run_id) DO UPDATE
               SET requested_by = excluded.requested_by, name = excluded.name,
                   purpose = excluded.purpose, auto_pause = excluded.auto_pause,
                   resends_failures_of = excluded.resends_failures_of,
                   created_by = excluded.created_by""",
            [
                (
                    r.run_id,
                    r.broadcast_id,
                    r.tenant_id,
                    r.requested_by,
                    r.name,
                    r.purpose,
                    r.settings.auto_pause.model_dump()
                    if r.settings.auto_pause and r.purpose == "broadcast"
                    else None,
                    r.resends_failures_of,
                    r.created_by,
                )
                for r in runs
            ],
        )
        # A preview's failure may have arrived before its run.started (another topic): it is
        # reported by broadcast.previewed, not left as a follow-up action.
        await connection.execute(
            "DELETE FROM tracker.actions WHERE run_id = ANY($1::uuid[])",
            [r.run_id for r in runs if r.purpose != "broadcast"],
        )
        resends = [r for r in runs if r.resends_failures_of is not None]
        # The previous run's failures were all recorded before targeting accepted the resend
        # (it waits for the completion): every action it concerns exists by now. An action
        # resolved before (sent again, failed again, open once more) is left open, as the
        # resend leaves its message out (ActionClosed).
        await connection.execute(
            """UPDATE tracker.actions a
               SET state = 'resent', resolved_by = t.requested_by, resolved_at = now()
               FROM unnest($1::uuid[], $2::text[], $3::boolean[])
                    AS t(run_id, requested_by, include_unknown),
                    tracker.messages m
               WHERE a.run_id = t.run_id AND a.state = 'open' AND a.resolution IS NULL
                 AND m.recipient_id = a.recipient_id
                 AND m.reason IS DISTINCT FROM 'no_contact'
                 AND (t.include_unknown OR m.reason IS DISTINCT FROM 'unknown_outcome')""",
            [r.resends_failures_of for r in resends],
            [r.requested_by for r in resends],
            [r.include_unknown for r in resends],
        )
        # Their messages may have come first (another topic).
        await connection.execute(_RESENT_NO_CONTACT, [r.run_id for r in resends])


# The `no_contact` actions of the runs that the given runs ($1) resend to the failures, whose
# contract has a message in that resend: it had an address by then, and was sent again.
_RESENT_NO_CONTACT = """
    UPDATE tracker.actions a
    SET state = 'resent', resolved_by = r.requested_by, resolved_at = now()
    FROM tracker.runs r, tracker.messages failed, tracker.messages sent
    WHERE r.run_id = ANY($1::uuid[]) AND r.resends_failures_of = a.run_id
      AND a.state = 'open' AND a.resolution IS NULL
      AND failed.recipient_id = a.recipient_id AND failed.reason = 'no_contact'
      AND sent.run_id = r.run_id AND sent.contract_id = failed.contract_id"""


async def record_cancellations(pool: asyncpg.Pool, runs: Sequence[RunCancelled]) -> None:
    await pool.executemany(
        """INSERT INTO tracker.runs (run_id, broadcast_id, tenant_id, cancel_requested)
           VALUES ($1, $2, $3, true)
           ON CONFLICT (run_id) DO UPDATE SET cancel_requested = true""",
        [(r.run_id, r.broadcast_id, r.tenant_id) for r in runs],
    )


async def record_pauses(pool: asyncpg.Pool, changes: Sequence[RunPaused | RunResumed]) -> None:
    """In the order they came: a pause and its resume may share a batch."""
    for change in changes:
        await pool.execute(
            """INSERT INTO tracker.runs (run_id, broadcast_id, tenant_id, paused)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (run_id) DO UPDATE
               SET paused = excluded.paused,
                   resumes = tracker.runs.resumes
                             + (tracker.runs.paused AND NOT excluded.paused)::int""",
            change.run_id,
            change.broadcast_id,
            change.tenant_id,
            isinstance(change, RunPaused),
        )


@dataclass(frozen=True)
class Watched:
    """A running broadcast run that pauses itself over `policy`, not yet asked to pause in
    this stretch (`resumes` names each pause), with what its window holds: `failed` of the
    `tried` attempts of the last `policy.window_seconds`, seen by every tracker instance."""

    run_id: UUID
    broadcast_id: UUID
    tenant_id: str
    resumes: int
    policy: AutoPause
    tried: int
    failed: int


# The longest window a tenant may choose (AutoPause.window_seconds): older seconds can go.
_WINDOW_KEPT_SECONDS = 3600


async def add_attempts(pool: asyncpg.Pool, second: int, attempts: Mapping[UUID, Attempts]) -> None:
    """Add each run's attempts at `second` to its window of the current stretch, and drop the
    seconds no window reaches any more. The runs' rows exist: their outcomes, recorded
    first, made them."""
    # One statement per batch: the old seconds of these runs go in the same one.
    await pool.execute(
        """WITH too_old AS (
               DELETE FROM tracker.failure_window
               WHERE run_id = ANY($1::uuid[]) AND at_second <= $4 - $5::int)
           INSERT INTO tracker.failure_window AS w (run_id, resumes, at_second, tried, failed)
           SELECT t.run_id, r.resumes, $4, t.tried, t.failed
           FROM unnest($1::uuid[], $2::int[], $3::int[]) AS t(run_id, tried, failed)
                JOIN tracker.runs r USING (run_id)
           ON CONFLICT (run_id, resumes, at_second) DO UPDATE
           SET tried = w.tried + excluded.tried, failed = w.failed + excluded.failed""",
        list(attempts),
        [a.tried for a in attempts.values()],
        [a.failed for a in attempts.values()],
        second,
        _WINDOW_KEPT_SECONDS,
    )


async def watched(pool: asyncpg.Pool, run_ids: Iterable[UUID], now: int) -> list[Watched]:
    """The given runs that watch themselves, with their window as it is at `now` (seconds)."""
    rows = await pool.fetch(
        """SELECT r.run_id, r.broadcast_id, r.tenant_id, r.resumes, r.auto_pause,
                  coalesce(sum(w.tried), 0)::int AS tried,
                  coalesce(sum(w.failed), 0)::int AS failed
           FROM tracker.runs r
                LEFT JOIN tracker.failure_window w
                  ON w.run_id = r.run_id AND w.resumes = r.resumes
                 AND w.at_second > $2 - (r.auto_pause->>'window_seconds')::int
           WHERE r.run_id = ANY($1::uuid[]) AND r.state = 'running' AND NOT r.paused
             AND r.purpose = 'broadcast' AND r.auto_pause IS NOT NULL
             AND NOT r.cancel_requested
             AND NOT EXISTS (SELECT FROM tracker.auto_pauses a
                             WHERE a.run_id = r.run_id AND a.resumes = r.resumes)
           GROUP BY r.run_id""",
        list(run_ids),
        now,
    )
    return [
        Watched(
            r["run_id"],
            r["broadcast_id"],
            r["tenant_id"],
            r["resumes"],
            AutoPause.model_validate(r["auto_pause"]),
            r["tried"],
            r["failed"],
        )
        for r in rows
    ]


@dataclass(frozen=True)
class AutoPauseAsked:
    """A pause the tracker asked for: one per run and stretch between resumes."""

    run_id: UUID
    resumes: int
    broadcast_id: UUID
    tenant_id: str
    detail: str


async def record_auto_pause(pool: asyncpg.Pool, run: Watched, detail: str) -> AutoPauseAsked:
    """Record the pause, not published yet; asking again in the same stretch changes nothing."""
    await pool.execute(
        """INSERT INTO tracker.auto_pauses (run_id, resumes, broadcast_id, tenant_id, detail)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
        run.run_id,
        run.resumes,
        run.broadcast_id,
        run.tenant_id,
        detail,
    )
    return AutoPauseAsked(run.run_id, run.resumes, run.broadcast_id, run.tenant_id, detail)


async def unpublished_auto_pauses(
    pool: asyncpg.Pool, older_than: float, limit: int
) -> list[AutoPauseAsked]:
    """The oldest `limit` pauses asked more than `older_than` seconds ago and still not
    published."""
    rows = await pool.fetch(
        """SELECT run_id, resumes, broadcast_id, tenant_id, detail FROM tracker.auto_pauses
           WHERE NOT published AND asked_at < now() - make_interval(secs => $1)
           ORDER BY asked_at LIMIT $2""",
        older_than,
        limit,
    )
    return [AutoPauseAsked(**dict(r)) for r in rows]


async def mark_auto_pause_published(pool: asyncpg.Pool, pause: AutoPauseAsked) -> None:
    await pool.execute(
        "UPDATE tracker.auto_pauses SET published = true WHERE run_id = $1 AND resumes = $2",
        pause.run_id,
        pause.resumes,
    )


async def record_targeting(pool: asyncpg.Pool, totals: Sequence[TargetingCompleted]) -> None:
    await pool.executemany(
        """INSERT INTO tracker.runs (run_id, broadcast_id, tenant_id, contracts_targeted,
                                     messages_targeted)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (run_id) DO UPDATE
           SET contracts_targeted = excluded.contracts_targeted,
               messages_targeted = excluded.messages_targeted""",
        [(t.run_id, t.broadcast_id, t.tenant_id, t.contracts, t.messages) for t in totals],
    )


_STATES = {
    "delivery.delivered": "delivered",
    "delivery.failed": "failed",
    "delivery.cancelled": "cancelled",
}


async def record_deliveries(
    pool: asyncpg.Pool, events: Sequence[FinalDelivery]
) -> tuple[set[UUID], list[FinalDelivery]]:
    """Record each message's final state once; counters move only for states new to us, or
    for an unknown outcome the dispatcher corrected.

    Returns the runs concerned and the events recorded now (copies left out)."""
    unique = list({e.recipient_id: e for e in events}.values())
    if not unique:
        return set(), []
    async with pool.acquire() as connection, connection.transaction():
        found = await connection.fetchrow(
            """
            WITH given AS (
                SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                                     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
                    AS t(recipient_id, run_id, broadcast_id, tenant_id, contract_id, channel,
                         address, state, reason, detail)),
            -- A delivery whose hard bounce came first (a replay) is a failure: the bounce
            -- was recorded, and counted, by record_reports.
            incoming AS (
                SELECT g.recipient_id, g.run_id, g.broadcast_id, g.tenant_id, g.contract_id,
                       g.channel, g.address,
                       CASE WHEN b.detail IS NULL THEN g.state ELSE 'failed' END AS state,
                       CASE WHEN b.detail IS NULL THEN g.reason ELSE 'bounced' END AS reason,
                       coalesce(b.detail, g.detail) AS detail
                FROM given g LEFT JOIN LATERAL (
                    SELECT r.detail FROM tracker.reports r
                    WHERE g.state = 'delivered' AND r.recipient_id = g.recipient_id
                      AND r.kind = 'hard_bounce' LIMIT 1) b ON true),
            previous AS (
                -- LIMIT 1 (it is the key) keeps this one index probe per message: as a join
                -- or `= ANY($1)`, the planner scans the table whole until it has about
                -- 100,000 rows (bench/README.md, "PostgreSQL per message").
                SELECT p.recipient_id, p.state
                FROM incoming i CROSS JOIN LATERAL (
                    SELECT m.recipient_id, m.state FROM tracker.messages m
                    WHERE m.recipient_id = i.recipient_id LIMIT 1) p),
            inserted AS (
                INSERT INTO tracker.messages (recipient_id, run_id, tenant_id, contract_id,
                                              channel, address, state, reason, detail)
                SELECT recipient_id, run_id, tenant_id, contract_id, channel, address, state,
                       reason, detail
                FROM incoming
                -- A final state replaces "waiting", never another final state, except an
                -- unknown outcome: the dispatcher settled a claim whose holder looked dead,
                -- then the holder reported the provider's answer (a correction).
                ON CONFLICT (recipient_id) DO UPDATE
                SET state = excluded.state, reason = excluded.reason, detail = excluded.detail,
                    waiting_for = NULL, due_at = NULL, updated_at = now()
                WHERE tracker.messages.state = 'waiting'
                   OR (tracker.messages.state = 'failed'
                       AND tracker.messages.reason = 'unknown_outcome'
                       AND excluded.state <> 'cancelled'
                       AND excluded.reason IS DISTINCT FROM 'unknown_outcome')
                RETURNING recipient_id, run_id, tenant_id, state),
            actions AS (
                INSERT INTO tracker.actions (recipient_id, run_id, tenant_id)
                SELECT recipient_id, run_id, tenant_id FROM inserted i
                WHERE state = 'failed' AND NOT EXISTS (
                    SELECT 1 FROM tracker.runs r
                    WHERE r.run_id = i.run_id AND r.purpose <> 'broadcast')
                ON CONFLICT (recipient_id) DO NOTHING),
            -- A failure corrected to delivered needs nobody to act on it any more.
            closed AS (
                DELETE FROM tracker.actions a
                USING inserted i JOIN previous p USING (recipient_id)
                WHERE a.recipient_id = i.recipient_id AND a.state = 'open'
                  AND p.state = 'failed' AND i.state = 'delivered'),
            counted AS (
            INSERT INTO tracker.runs AS r (run_id, broadcast_id, tenant_id, delivered, failed,
                                           cancelled)
            SELECT i.run_id, min(c.broadcast_id::text)::uuid, min(i.tenant_id),
                   count(*) FILTER (WHERE i.state = 'delivered'),
                   count(*) FILTER (WHERE i.state = 'failed')
                       - count(*) FILTER (WHERE p.state = 'failed'),
                   count(*) FILTER (WHERE i.state = 'cancelled')
            FROM inserted i JOIN incoming c USING (recipient_id)
                 LEFT JOIN previous p USING (recipient_id)
            GROUP BY i.run_id
            ON CONFLICT (run_id) DO UPDATE
            SET delivered = r.delivered + excluded.delivered, failed = r.failed + excluded.failed,
                cancelled = r.cancelled + excluded.cancelled
            RETURNING r.resends_failures_of IS NOT NULL AS resend)
            SELECT ARRAY(SELECT recipient_id FROM inserted) AS recorded,
                   EXISTS (SELECT FROM counted WHERE resend) AS resend
            """,
            [e.recipient_id for e in unique],
            [e.run_id for e in unique],
            [e.broadcast_id for e in unique],
            [e.tenant_id for e in unique],
            [e.contract_id for e in unique],
            [e.channel for e in unique],
            [e.address for e in unique],
            [_STATES[e.type] for e in unique],
            [e.reason if isinstance(e, DeliveryFailed) else None for e in unique],
            [e.detail if isinstance(e, DeliveryFailed) else None for e in unique],
        )
        assert found is not None  # a SELECT without FROM: always one row
        # Only for a batch that recorded messages of a resend (the runs row, locked by the
        # upsert above, says so): else one more statement a batch that finds nothing. A resend
        # whose start comes after its messages is handled by record_run_started.
        if found["resend"]:
            await connection.execute(_RESENT_NO_CONTACT, list({e.run_id for e in unique}))
    recorded = set(found["recorded"])
    return {e.run_id for e in unique}, [e for e in unique if e.recipient_id in recorded]


@dataclass(frozen=True)
class ReportsApplied:
    """The runs a batch of reports concerned, and the reports new to the tracker."""

    run_ids: set[UUID]
    recorded: list[Recorded]


async def _known_runs(connection: Connection, events: Sequence[MessageRef]) -> None:
    """A row for each run these events concern, before the run's start is known to us (its
    messages may come first)."""
    await connection.execute(
        """INSERT INTO tracker.runs (run_id, broadcast_id, tenant_id)
           SELECT DISTINCT * FROM unnest($1::uuid[], $2::uuid[], $3::text[])
           ON CONFLICT (run_id) DO NOTHING""",
        [e.run_id for e in events],
        [e.broadcast_id for e in events],
        [e.tenant_id for e in events],
    )


async def record_reports(pool: asyncpg.Pool, reports: Sequence[Report]) -> ReportsApplied:
    """Record each report once per message and kind, and apply what is new: a hard bounce
    moves a delivered message to failed (reason `bounced`, an action for a broadcast run,
    the completed run's outcome judged again); every report is counted on its run. A copy
    changes nothing. A hard bounce for a message not recorded yet is applied when its delivery
    comes (record_deliveries)."""
    unique = once_each(list(reports))
    if not unique:
        return ReportsApplied(set(), [])
    async with pool.acquire() as connection, connection.transaction():
        await _known_runs(connection, unique)
        rows = await connection.fetch(
            _RECORD_REPORTS,
            [e.recipient_id for e in unique],
            [kind_of(e) for e in unique],
            [e.run_id for e in unique],
            [e.tenant_id for e in unique],
            [e.channel for e in unique],
            [e.source for e in unique],
            [detail_of(e) for e in unique],
            [e.reported_at for e in unique],
        )
        # A completed run whose messages a hard bounce moved is judged again.
        judged = await connection.fetch(
            """SELECT run_id, delivered, failed, cancel_requested FROM tracker.runs
               WHERE run_id = ANY($1::uuid[]) AND state = 'completed' FOR UPDATE""",
            list({r["run_id"] for r in rows if r["moved"]}),
        )
        await connection.executemany(
            "UPDATE tracker.runs SET outcome = $2 WHERE run_id = $1",
            [
                (r["run_id"], outcome(r["delivered"], r["failed"], r["cancel_requested"]))
                for r in judged
            ],
        )
    return ReportsApplied(
        {e.run_id for e in unique}, [Recorded(r["channel"], r["kind"]) for r in rows]
    )


# $1..$8: one report per (recipient_id, kind). Returns the reports new to the tracker, and
# whether each moved its message from delivered to failed.
_RECORD_REPORTS = """
    WITH recorded AS (
        INSERT INTO tracker.reports (recipient_id, kind, run_id, tenant_id, channel, source,
                                     detail, reported_at)
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[],
                             $6::text[], $7::text[], $8::timestamptz[])
        ON CONFLICT (recipient_id, kind) DO NOTHING
        RETURNING recipient_id, kind, run_id, channel, detail),
    -- A message still waiting, or already failed or cancelled, keeps its state.
    moved AS (
        UPDATE tracker.messages m
        SET state = 'failed', reason = 'bounced', detail = r.detail, updated_at = now()
        FROM recorded r
        WHERE r.kind = 'hard_bounce' AND m.recipient_id = r.recipient_id
          AND m.state = 'delivered'
        RETURNING m.recipient_id, m.run_id, m.tenant_id),
    actions AS (
        INSERT INTO tracker.actions (recipient_id, run_id, tenant_id)
        SELECT recipient_id, run_id, tenant_id FROM moved i
        WHERE EXISTS (SELECT 1 FROM tracker.runs r
                      WHERE r.run_id = i.run_id AND r.purpose = 'broadcast')
        ON CONFLICT (recipient_id) DO NOTHING),
    -- A follow-up's message bounced: the action it resolved needs somebody again.
    reopened AS (
        UPDATE tracker.actions a SET state = 'open'
        FROM moved i WHERE a.follow_up_run = i.run_id AND a.state = 'sent'),
    counted AS (
        UPDATE tracker.runs u
        SET hard_bounced = u.hard_bounced + c.hard, soft_bounced = u.soft_bounced + c.soft,
            complained = u.complained + c.complaints, confirmed = u.confirmed + c.confirmed,
            delivered = u.delivered - c.moved, failed = u.failed + c.moved
        FROM (SELECT r.run_id,
                     count(*) FILTER (WHERE r.kind = 'hard_bounce') AS hard,
                     count(*) FILTER (WHERE r.kind = 'soft_bounce') AS soft,
                     count(*) FILTER (WHERE r.kind = 'complaint') AS complaints,
                     count(*) FILTER (WHERE r.kind = 'confirmed') AS confirmed,
                     count(m.recipient_id) AS moved
              FROM recorded r LEFT JOIN moved m
                   ON m.recipient_id = r.recipient_id AND r.kind = 'hard_bounce'
              GROUP BY r.run_id) c
        WHERE u.run_id = c.run_id)
    SELECT r.run_id, r.channel, r.kind,
           EXISTS (SELECT 1 FROM moved m WHERE m.recipient_id = r.recipient_id
                   AND r.kind = 'hard_bounce') AS moved
    FROM recorded r"""


async def record_deferrals(pool: asyncpg.Pool, events: Sequence[DeliveryDeferred]) -> set[UUID]:
    """Messages on their way: waiting, unless their final state is already known."""
    latest = list({e.recipient_id: e for e in events}.values())
    if not latest:
        return set()
    async with pool.acquire() as connection, connection.transaction():
        await _known_runs(connection, latest)
        await connection.execute(
            """INSERT INTO tracker.messages AS m (recipient_id, run_id, tenant_id, contract_id,
                                                 channel, address, state, waiting_for, due_at,
                                                 detail)
               SELECT t.recipient_id, t.run_id, t.tenant_id, t.contract_id, t.channel,
                      t.address, 'waiting', t.waiting_for, t.due_at, t.detail
               FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                           $6::text[], $7::text[], $8::timestamptz[], $9::text[])
                    AS t(recipient_id, run_id, tenant_id, contract_id, channel, address,
                         waiting_for, due_at, detail)
               ON CONFLICT (recipient_id) DO UPDATE
               SET waiting_for = excluded.waiting_for, due_at = excluded.due_at,
                   detail = excluded.detail, updated_at = now()
               WHERE m.state = 'waiting'""",
            [e.recipient_id for e in latest],
            [e.run_id for e in latest],
            [e.tenant_id for e in latest],
            [e.contract_id for e in latest],
            [e.channel for e in latest],
            [e.address for e in latest],
            [e.waiting_for for e in latest],
            [e.due_at for e in latest],
            [e.detail for e in latest],
        )
    return {e.run_id for e in latest}


async def _breakdowns(
    pool: asyncpg.Pool, run_ids: Sequence[UUID], contracts_of: Sequence[UUID]
) -> dict[UUID, dict[str, dict[str, int]]]:
    """Per run: waiting messages by what they wait for, failed ones by reason, and, for the
    runs of `contracts_of`, the contracts reached and not reached (the one definition is the
    view's; counting them reads every message of the run)."""
    rows = await pool.fetch(
        """SELECT run_id, state, coalesce(waiting_for, reason, 'unspecified') AS what,
                  count(*) AS n
           FROM tracker.messages
           WHERE run_id = ANY($1::uuid[]) AND state IN ('waiting', 'failed')
           GROUP BY 1, 2, 3
           UNION ALL
           SELECT v.run_id, 'contracts', k.what, k.n
           FROM tracker.run_counters_v1 v
           CROSS JOIN LATERAL (VALUES ('reached', v.contracts_reached),
                                      ('not_reached', v.contracts_not_reached)) AS k(what, n)
           WHERE v.run_id = ANY($2::uuid[])""",
        list(run_ids),
        list(contracts_of),
    )
    found: dict[UUID, dict[str, dict[str, int]]] = {}
    for r in rows:
        found.setdefault(r["run_id"], {}).setdefault(r["state"], {})[r["what"]] = r["n"]
    return found


@dataclass(frozen=True)
class RunView:
    run_id: UUID
    broadcast_id: UUID
    tenant_id: str
    requested_by: str | None
    counters: Counters
    outcome: Outcome | None
    purpose: str
    created_by: str | None


def _view(row: asyncpg.Record, details: dict[str, dict[str, int]]) -> RunView:
    waiting = details.get("waiting", {})
    contracts = details.get("contracts", {})
    return RunView(
        run_id=row["run_id"],
        broadcast_id=row["broadcast_id"],
        tenant_id=row["tenant_id"],
        requested_by=row["requested_by"],
        counters=Counters(
            contracts_targeted=row["contracts_targeted"],
            messages_targeted=row["messages_targeted"],
            delivered=row["delivered"],
            failed=row["failed"],
            cancelled=row["cancelled"],
            pending_retry=waiting.get("retry", 0) + waiting.get("throttled", 0),
            waiting_window=waiting.get("send_window", 0),
            paused=waiting.get("paused", 0),
            failed_by_reason=details.get("failed", {}),
            contracts_reached=contracts.get("reached", 0),
            contracts_not_reached=contracts.get("not_reached", 0),
            hard_bounced=row["hard_bounced"],
            soft_bounced=row["soft_bounced"],
            complained=row["complained"],
            confirmed=row["confirmed"],
        ),
        outcome=row["outcome"],
        purpose=row["purpose"],
        created_by=row["created_by"],
    )


async def _views(
    pool: asyncpg.Pool,
    rows: Sequence[asyncpg.Record],
    count_contracts: Iterable[UUID] | None = None,
) -> list[RunView]:
    """The runs of `rows` with their breakdowns; their contracts counted for the runs of
    `count_contracts` (default: all), left at 0 for the others."""
    if not rows:  # the usual answer of unpublished_completions, after every batch
        return []
    run_ids = [r["run_id"] for r in rows]
    counted = run_ids if count_contracts is None else list(count_contracts)
    details = await _breakdowns(pool, run_ids, counted)
    return [_view(r, details.get(r["run_id"], {})) for r in rows]


_COLUMNS = """run_id, broadcast_id, tenant_id, requested_by, contracts_targeted,
              messages_targeted, delivered, failed, cancelled, cancel_requested, outcome,
              purpose, created_by, hard_bounced, soft_bounced, complained, confirmed"""


@dataclass(frozen=True)
class Completed:
    """A broadcast run completed now: how long it took and how many messages it had."""

    seconds: float
    messages: int


async def complete_finished(pool: asyncpg.Pool, run_ids: Iterable[UUID]) -> list[Completed]:
    """Mark completed every given run whose total is known and whose messages are all final."""
    async with pool.acquire() as connection, connection.transaction():
        rows = await connection.fetch(
            f"""SELECT {_COLUMNS} FROM tracker.runs
                WHERE run_id = ANY($1::uuid[]) AND state = 'running'
                  AND requested_by IS NOT NULL
                FOR UPDATE""",  # noqa: S608 -- constant column list
            list(run_ids),
        )
        done = [
            r
            for r in rows
            if is_complete(r["messages_targeted"], r["delivered"] + r["failed"] + r["cancelled"])
        ]
        if not done:  # every batch but a run's last
            return []
        completed = await connection.fetch(
            """WITH judged_no_more AS (  -- a completed run's failure window goes with it
                   DELETE FROM tracker.failure_window WHERE run_id = ANY($1::uuid[]))
               UPDATE tracker.runs r
               SET state = 'completed', outcome = t.outcome, completed_at = now()
               FROM unnest($1::uuid[], $2::text[]) AS t(run_id, outcome)
               WHERE r.run_id = t.run_id
               RETURNING r.purpose, r.messages_targeted,
                         extract(epoch FROM r.completed_at - r.started_at)::float8 AS seconds""",
            [r["run_id"] for r in done],
            [outcome(r["delivered"], r["failed"], r["cancel_requested"]) for r in done],
        )
    return [
        Completed(r["seconds"], r["messages_targeted"])
        for r in completed
        if r["purpose"] == "broadcast"
    ]


async def unpublished_completions(pool: asyncpg.Pool) -> list[RunView]:
    rows = await pool.fetch(
        f"""SELECT {_COLUMNS} FROM tracker.runs
            WHERE state = 'completed' AND NOT completion_published"""  # noqa: S608
    )
    return await _views(pool, rows)


async def mark_completion_published(pool: asyncpg.Pool, run_id: UUID) -> None:
    await pool.execute(
        "UPDATE tracker.runs SET completion_published = true WHERE run_id = $1", run_id
    )


async def running(
    pool: asyncpg.Pool, run_ids: Iterable[UUID], count_contracts: Iterable[UUID]
) -> list[RunView]:
    """The given broadcast runs still running; their contracts counted for those of
    `count_contracts` only (0 for the others: see `progress.Recounts`)."""
    rows = await pool.fetch(
        f"""SELECT {_COLUMNS} FROM tracker.runs
            WHERE run_id = ANY($1::uuid[]) AND state = 'running'
              AND purpose = 'broadcast'""",  # noqa: S608
        list(run_ids),
    )
    return await _views(pool, rows, count_contracts)


async def announced_broadcasts(pool: asyncpg.Pool, run_ids: Iterable[UUID]) -> list[RunView]:
    """The given broadcast runs whose completion was announced already."""
    rows = await pool.fetch(
        f"""SELECT {_COLUMNS} FROM tracker.runs
            WHERE run_id = ANY($1::uuid[]) AND state = 'completed' AND completion_published
              AND purpose = 'broadcast'""",  # noqa: S608
        list(run_ids),
    )
    return await _views(pool, rows)


@dataclass(frozen=True)
class ReportRates:
    """The highest hard-bounce and complaint rates of any tenant, over the broadcast runs
    started in the window, among tenants with at least the minimum of accepted messages."""

    hard_bounce: float
    complaint: float


async def worst_report_rates(pool: asyncpg.Pool, window_hours: float, minimum: int) -> ReportRates:
    row = await pool.fetchrow(
        """SELECT coalesce(max(hard::float8 / accepted), 0) AS hard_bounce,
                  coalesce(max(complaints::float8 / accepted), 0) AS complaint
           FROM (SELECT sum(delivered + hard_bounced) AS accepted, sum(hard_bounced) AS hard,
                        sum(complained) AS complaints
                 FROM tracker.runs
                 WHERE purpose = 'broadcast'
                   AND started_at > now() - make_interval(hours => $1::int)
                 GROUP BY tenant_id) per_tenant
           WHERE accepted >= greatest($2, 1)""",
        int(window_hours),
        minimum,
    )
    assert row is not None  # an aggregate without GROUP BY: always one row
    return ReportRates(row["hard_bounce"], row["complaint"])


async def preview_result(pool: asyncpg.Pool, run_id: UUID) -> asyncpg.Record | None:
    """The one message of a preview run: its state, reason and detail."""
    return await pool.fetchrow(
        "SELECT address, state, reason, detail FROM tracker.messages WHERE run_id = $1 LIMIT 1",
        run_id,
    )


_ACTION_COLUMNS = """a.action_id, r.broadcast_id, a.run_id, m.contract_id, m.channel, m.address,
                     m.reason, m.detail, a.state, a.created_at, a.resolved_by, a.resolved_at"""


async def list_actions(
    pool: asyncpg.Pool,
    tenant_id: str,
    broadcast_id: UUID | None,
    state: str | None,
    limit: int,
) -> list[ActionView]:
    rows = await pool.fetch(
        f"""SELECT {_ACTION_COLUMNS}
            FROM tracker.actions a
            JOIN tracker.messages m USING (recipient_id)
            JOIN tracker.runs r ON r.run_id = a.run_id
            WHERE a.tenant_id = $1
              AND ($2::uuid IS NULL OR r.broadcast_id = $2)
              AND ($3::text IS NULL OR a.state = $3)
            ORDER BY a.action_id DESC LIMIT $4""",  # noqa: S608 -- constant column list
        tenant_id,
        broadcast_id,
        state,
        limit,
    )
    return [ActionView(**dict(r)) for r in rows]


@dataclass(frozen=True)
class Resolution:
    """The action after the command. `request_id` and `resolution` are the ones that resolved
    it last (None while it never was); `follow_up_address` is where a send goes."""

    action: ActionView
    recipient_id: UUID
    request_id: str | None
    resolution: str | None
    follow_up_address: str | None


class AddressNeeded(Exception):
    """ "send" on the action of a contract that had no address (`no_contact`) names none."""


class AddressUnusable(Exception):
    """ "send" names an address its message's channel cannot use (a phone number for an
    email); the reason, in a few words."""


async def resolve_action(
    pool: asyncpg.Pool,
    tenant_id: str,
    action_id: int,
    resolution: str,
    resolved_by: str,
    request_id: str,
    follow_up_run: UUID,
    address: str | None,
) -> Resolution | None:
    """Resolve an open action; replayed by the request that resolved it, or resolved already,
    it is returned unchanged. None when the tenant has no such action; AddressNeeded when a
    send has nowhere to go."""
    async with pool.acquire() as connection, connection.transaction():
        found = await connection.fetchrow(
            """SELECT a.state, a.resolved_request, m.address, m.channel
               FROM tracker.actions a JOIN tracker.messages m USING (recipient_id)
               WHERE a.action_id = $1 AND a.tenant_id = $2 FOR UPDATE OF a""",
            action_id,
            tenant_id,
        )
        if found is None:
            return None
        # A replay must not send again, even when the action is open again after its
        # follow-up failed.
        if found["state"] == "open" and found["resolved_request"] != request_id:
            if resolution == "send" and not (address or found["address"]):
                raise AddressNeeded(action_id)
            why = address and unusable_on(found["channel"], address)
            if resolution == "send" and why:
                raise AddressUnusable(why)
            await connection.execute(
                """UPDATE tracker.actions a
                   SET state = $2, resolution = $3, resolved_by = $4, resolved_at = now(),
                       resolved_request = $7,
                       follow_up_run = CASE WHEN $3 = 'send' THEN $5::uuid END,
                       follow_up_address = CASE WHEN $3 = 'send' THEN coalesce($6, m.address) END
                   FROM tracker.messages m
                   WHERE a.action_id = $1 AND m.recipient_id = a.recipient_id""",
                action_id,
                "sending" if resolution == "send" else "ignored",
                resolution,
                resolved_by,
                follow_up_run,
                address,
                request_id,
            )
        row = await connection.fetchrow(
            f"""SELECT {_ACTION_COLUMNS}, a.recipient_id, a.resolved_request, a.resolution,
                       a.follow_up_address
                FROM tracker.actions a JOIN tracker.messages m USING (recipient_id)
                JOIN tracker.runs r ON r.run_id = a.run_id
                WHERE a.action_id = $1""",  # noqa: S608
            action_id,
        )
    assert row is not None
    fields = dict(row)
    return Resolution(
        recipient_id=fields.pop("recipient_id"),
        request_id=fields.pop("resolved_request"),
        resolution=fields.pop("resolution"),
        follow_up_address=fields.pop("follow_up_address"),
        action=ActionView(**fields),
    )


async def settle_follow_ups(pool: asyncpg.Pool, run_ids: Iterable[UUID]) -> None:
    """An action whose message was sent again is sent once delivered, open again if not."""
    await pool.execute(
        """UPDATE tracker.actions a
           SET state = CASE WHEN m.state = 'delivered' THEN 'sent' ELSE 'open' END
           FROM tracker.messages m
           WHERE a.follow_up_run = ANY($1::uuid[]) AND m.run_id = a.follow_up_run
             AND a.state = 'sending' AND m.state IN ('delivered', 'failed', 'cancelled')""",
        list(run_ids),
    )


async def contract_history(
    pool: asyncpg.Pool, tenant_id: str, contract_id: str, limit: int
) -> list[HistoryEntry]:
    """The contract's newest `limit` messages, oldest first."""
    rows = await pool.fetch(
        """SELECT broadcast_id, run_id, broadcast_name, channel, address, state, reason, at
           FROM (SELECT r.broadcast_id, m.run_id, r.name AS broadcast_name, m.channel,
                        m.address, m.state, m.reason, m.updated_at AS at, m.recipient_id
                 FROM tracker.messages m JOIN tracker.runs r USING (run_id)
                 WHERE m.tenant_id = $1 AND m.contract_id = $2
                   AND r.purpose NOT IN ('preview', 'notice')
                 ORDER BY m.updated_at DESC, m.recipient_id DESC LIMIT $3) newest
           ORDER BY at, recipient_id""",
        tenant_id,
        contract_id,
        limit,
    )
    return [HistoryEntry(**dict(r)) for r in rows]


@dataclass(frozen=True)
class Running:
    """Broadcast runs started and not completed; the age of the oldest one not paused, by
    size class (see TrackerMetrics.size_class)."""

    count: int
    oldest: dict[bool, float]


async def running_broadcasts(pool: asyncpg.Pool, large: int) -> Running:
    rows = await pool.fetch(
        """SELECT coalesce(messages_targeted, 0) > $1 AS large, count(*) AS n,
                  max(extract(epoch FROM now() - started_at))
                      FILTER (WHERE NOT paused)::float8 AS oldest
           FROM tracker.runs WHERE state = 'running' AND purpose = 'broadcast'
           GROUP BY 1""",
        large,
    )
    return Running(sum(r["n"] for r in rows), {r["large"]: r["oldest"] or 0.0 for r in rows})


async def broadcast_run(
    pool: asyncpg.Pool, tenant_id: str, broadcast_id: UUID, run_id: UUID | None
) -> UUID | None:
    """`run_id` when it is a run of the tenant's broadcast; without one, the broadcast's
    latest run. None when the tracker knows no such run."""
    found: UUID | None = await pool.fetchval(
        """SELECT run_id FROM tracker.runs
           WHERE tenant_id = $1 AND broadcast_id = $2 AND purpose = 'broadcast'
             AND ($3::uuid IS NULL OR run_id = $3)
           ORDER BY started_at DESC, run_id LIMIT 1""",
        tenant_id,
        broadcast_id,
        run_id,
    )
    return found


async def messages_page(
    pool: asyncpg.Pool, run_id: UUID, state: str | None, after: UUID | None, limit: int
) -> list[asyncpg.Record]:
    """Up to `limit` messages of the run in recipient id order, after `after`."""
    return await pool.fetch(
        """SELECT m.recipient_id, m.contract_id, m.channel, m.address, m.state, m.reason,
                  m.detail, m.updated_at, m.due_at, r.reported_at AS confirmed_at
           FROM tracker.messages m
           LEFT JOIN tracker.reports r
                  ON r.recipient_id = m.recipient_id AND r.kind = 'confirmed'
           WHERE m.run_id = $1 AND ($2::text IS NULL OR m.state = $2)
             AND ($3::uuid IS NULL OR m.recipient_id > $3)
           ORDER BY m.recipient_id LIMIT $4""",
        run_id,
        state,
        after,
        limit,
    )
