-- The webhook outbox: each notification a commit causes, one row per (event, endpoint),
-- written in the same transaction as the commit that appends the audit event (a crash after
-- the commit cannot lose it; a fenced or conflicting commit writes none). Every runner on
-- the store delivers from it: a worker per endpoint claims the oldest due rows
-- (`claimed_by`, `claimed_until_ms` on the database's clock), POSTs them in id order and
-- marks each delivered or failed, so each notification goes to each endpoint once while a
-- claim is live; a runner that dies mid-claim leaves rows another runner claims once the
-- claim expired.
--
-- `endpoint` is the webhook URL as configured (it may carry credentials: it is never
-- logged as it is); `body` the JSON POSTed, whose `seq` (0 here) is the row's id when sent;
-- `seq` the audit event's seq in its run (NULL for events that are not audit events:
-- invalid-spec, spec-valid). Times are ms since the epoch on the database's clock.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    rollout_id BIGINT REFERENCES rollouts (id),
    seq BIGINT,
    endpoint TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_try_ms BIGINT NOT NULL,
    claimed_by BIGINT,
    claimed_until_ms BIGINT,
    delivered_ms BIGINT,
    failed_ms BIGINT,
    last_error TEXT
);

-- The claim: an endpoint's pending rows, oldest first.
CREATE INDEX outbox_pending ON outbox (endpoint, id)
    WHERE delivered_ms IS NULL AND failed_ms IS NULL;
-- Retention: delivered and failed rows by age.
CREATE INDEX outbox_delivered ON outbox (delivered_ms) WHERE delivered_ms IS NOT NULL;
CREATE INDEX outbox_failed ON outbox (failed_ms) WHERE failed_ms IS NOT NULL;
