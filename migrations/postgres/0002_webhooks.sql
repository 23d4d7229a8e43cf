-- Outbound webhooks (Standard Webhooks): seed 000's `webhooks` table,
-- plus what delivering needs, and the deliveries themselves.

-- Endpoints. Seed 000's columns, plus `description`, the signing secret
-- itself (the Standard Webhooks scheme signs with it, so it cannot be
-- kept as a hash alone; `secret_hash` is its SHA-256, to confirm which
-- secret an endpoint has), why the hub disabled it, and `updated_at`.
CREATE TABLE webhooks (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    url VARCHAR(500) NOT NULL,
    events TEXT[] NOT NULL,
    description TEXT,
    secret TEXT NOT NULL,
    secret_hash VARCHAR(255),
    is_active BOOLEAN DEFAULT true,
    retry_count INTEGER DEFAULT 3 CHECK (retry_count BETWEEN 0 AND 20),
    timeout_seconds INTEGER DEFAULT 30 CHECK (timeout_seconds BETWEEN 1 AND 300),
    last_triggered TIMESTAMP WITH TIME ZONE,
    failure_count INTEGER DEFAULT 0,
    disabled_reason TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE INDEX idx_webhooks_user ON webhooks(user_id);

-- One row per event per endpoint (and per replay). `msg_id` is the
-- `webhook-id` header, the same for every attempt and replay; `body` is
-- the request body exactly as signed. A row is written in the same
-- transaction as the rows of the event it reports.
CREATE TABLE webhook_deliveries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id UUID NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    msg_id VARCHAR(64) NOT NULL,
    replay INTEGER NOT NULL DEFAULT 0,
    event_type VARCHAR(100) NOT NULL,
    body TEXT NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP WITH TIME ZONE NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    last_attempt_at TIMESTAMP WITH TIME ZONE,
    delivered_at TIMESTAMP WITH TIME ZONE,
    response_status INTEGER,
    last_error TEXT,
    UNIQUE (webhook_id, msg_id, replay)
);

-- Claims read each endpoint's due rows in order, never another's backlog.
CREATE INDEX idx_webhook_deliveries_due ON webhook_deliveries(webhook_id, next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX idx_webhook_deliveries_webhook ON webhook_deliveries(webhook_id, id);
CREATE INDEX idx_webhook_deliveries_created ON webhook_deliveries(webhook_id, created_at);
