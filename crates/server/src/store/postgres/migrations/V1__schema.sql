-- callwatch's store on PostgreSQL: the same tables as SQLite's (sqlite.rs).
CREATE TABLE calls (
    call_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    team TEXT NOT NULL,
    state INTEGER NOT NULL,
    started_ms BIGINT NOT NULL,
    ended_ms BIGINT NOT NULL DEFAULT 0,
    audio_s DOUBLE PRECISION NOT NULL DEFAULT 0,
    alerts INTEGER NOT NULL DEFAULT 0,
    score DOUBLE PRECISION,
    reason TEXT NOT NULL DEFAULT '',
    scorecard BYTEA
);
CREATE INDEX calls_started ON calls (started_ms DESC);
CREATE TABLE transcript (
    call_id TEXT NOT NULL,
    channel INTEGER NOT NULL,
    utterance_id BIGINT NOT NULL,
    start_s DOUBLE PRECISION NOT NULL,
    end_s DOUBLE PRECISION NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (call_id, channel, utterance_id)
);
-- seq is the cursor: one global order for every node's appends.
CREATE TABLE feed (
    seq BIGSERIAL PRIMARY KEY,
    call_id TEXT NOT NULL,
    team TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    severity INTEGER,
    rule_id TEXT,
    kind TEXT NOT NULL,
    -- -1 for events not about an alert (call start and end), so the
    -- unique key below holds for them too.
    alert_id BIGINT NOT NULL,
    body BYTEA NOT NULL,
    CONSTRAINT feed_once UNIQUE (call_id, kind, alert_id)
);
CREATE TABLE audit (
    seq BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    call_id TEXT NOT NULL,
    peer TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at_ms);
CREATE FUNCTION audit_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_update();
