-- Inbound vendor events (docs/INGEST.md): the session a vendor's
-- conversation belongs to, and every event received, once (seed 001
-- `processed_webhook_events`).

-- The vendor's id for the conversation this session presents (a Tavus
-- conversation id, a HeyGen streaming session id, a LiveKit room name).
-- Unique, so an inbound event maps to one session.
ALTER TABLE sessions ADD COLUMN external_id VARCHAR(255);
CREATE UNIQUE INDEX idx_sessions_external_id ON sessions(external_id) WHERE external_id IS NOT NULL;

CREATE TABLE processed_webhook_events (
    id UUID PRIMARY KEY,
    -- tavus, heygen, livekit or generic.
    source VARCHAR(20) NOT NULL,
    conversation_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    -- The event as received (event_hash hashes its canonical JSON).
    event_data JSONB NOT NULL,
    -- Lowercase hex SHA-256 of the canonical event: a redelivery is found
    -- by it and stored once.
    event_hash TEXT NOT NULL UNIQUE,
    -- The session the conversation maps to; NULL when none did.
    session_id UUID,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    processing_duration_ms INTEGER
);

CREATE INDEX idx_webhook_events_conversation_id ON processed_webhook_events(conversation_id);
CREATE INDEX idx_webhook_events_type ON processed_webhook_events(event_type);
CREATE INDEX idx_webhook_events_processed_at ON processed_webhook_events(processed_at);
