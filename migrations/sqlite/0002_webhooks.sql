-- Outbound webhooks (Standard Webhooks): the same tables as the
-- PostgreSQL migration, in SQLite's storage classes (events is a JSON
-- array in TEXT; docs/SCHEMA.md).

CREATE TABLE webhooks (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    url VARCHAR(500) NOT NULL,
    -- A JSON array of strings.
    events TEXT NOT NULL,
    description TEXT,
    secret TEXT NOT NULL,
    secret_hash VARCHAR(255),
    is_active BOOLEAN DEFAULT 1,
    retry_count INTEGER DEFAULT 3 CHECK (retry_count BETWEEN 0 AND 20),
    timeout_seconds INTEGER DEFAULT 30 CHECK (timeout_seconds BETWEEN 1 AND 300),
    last_triggered TEXT,
    failure_count INTEGER DEFAULT 0,
    disabled_reason TEXT,
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    updated_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
);

CREATE INDEX idx_webhooks_user ON webhooks(user_id);

CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    msg_id VARCHAR(64) NOT NULL,
    replay INTEGER NOT NULL DEFAULT 0,
    event_type VARCHAR(100) NOT NULL,
    body TEXT NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_attempt_at TEXT,
    delivered_at TEXT,
    response_status INTEGER,
    last_error TEXT,
    UNIQUE (webhook_id, msg_id, replay)
);

-- Claims read each endpoint's due rows in order, never another's backlog.
CREATE INDEX idx_webhook_deliveries_due ON webhook_deliveries(webhook_id, next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX idx_webhook_deliveries_webhook ON webhook_deliveries(webhook_id, id);
CREATE INDEX idx_webhook_deliveries_created ON webhook_deliveries(webhook_id, created_at);
