-- eva-hub schema for SQLite, the embedded default.
--
-- The same tables, columns and CHECK constraints as the PostgreSQL schema
-- (migrations/postgres), in SQLite's storage classes: UUIDs are TEXT
-- (lowercase, hyphenated), timestamps TEXT in RFC 3339 UTC with
-- microseconds (so they sort as text), JSON and the scopes array TEXT,
-- decimals REAL, booleans INTEGER 0/1. docs/SCHEMA.md has the details.

CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    email VARCHAR(255) UNIQUE NOT NULL,
    password_hash VARCHAR(255),
    first_name VARCHAR(100),
    last_name VARCHAR(100),
    company VARCHAR(255),
    role VARCHAR(50) DEFAULT 'user' CHECK (role IN ('admin', 'operator', 'user')),
    subscription_tier VARCHAR(50) DEFAULT 'basic' CHECK (subscription_tier IN ('basic', 'professional', 'enterprise')),
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    updated_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    last_login TEXT,
    is_active BOOLEAN DEFAULT 1,
    email_verified BOOLEAN DEFAULT 0,
    api_quota_monthly INTEGER DEFAULT 10000,
    api_calls_used INTEGER DEFAULT 0,
    concurrent_sessions_limit INTEGER DEFAULT 5
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key_hash VARCHAR(255) NOT NULL UNIQUE,
    name VARCHAR(100) NOT NULL,
    -- A JSON array of strings.
    scopes TEXT DEFAULT '["eva:read"]',
    last_used TEXT,
    expires_at TEXT,
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    is_active BOOLEAN DEFAULT 1
);

CREATE TABLE avatars (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT REFERENCES users(id) ON DELETE SET NULL,
    name VARCHAR(255) NOT NULL,
    description TEXT,
    avatar_type VARCHAR(50) DEFAULT 'standard' CHECK (avatar_type IN ('standard', 'custom', 'premium')),
    model_version VARCHAR(50) DEFAULT 'v1',
    appearance_config TEXT NOT NULL DEFAULT '{}',
    personality_config TEXT NOT NULL DEFAULT '{}',
    voice_config TEXT NOT NULL DEFAULT '{}',
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    updated_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    is_public BOOLEAN DEFAULT 0,
    is_active BOOLEAN DEFAULT 1,
    training_status VARCHAR(50) DEFAULT 'ready' CHECK (training_status IN ('pending', 'training', 'ready', 'failed')),
    quality_score REAL DEFAULT 0.0
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    avatar_id TEXT,
    name VARCHAR(255),
    description TEXT,
    status VARCHAR(50) DEFAULT 'created' CHECK (status IN ('created', 'starting', 'active', 'paused', 'stopping', 'stopped', 'failed')),
    config TEXT NOT NULL DEFAULT '{}',
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    started_at TEXT,
    ended_at TEXT,
    total_duration_seconds INTEGER DEFAULT 0,
    participant_count INTEGER DEFAULT 0,
    questions_received INTEGER DEFAULT 0,
    operator_interventions INTEGER DEFAULT 0,
    quality_metrics TEXT DEFAULT '{}',
    error_count INTEGER DEFAULT 0,
    last_error TEXT
);

CREATE TABLE session_participants (
    id TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    participant_id VARCHAR(255) NOT NULL,
    participant_name VARCHAR(255),
    joined_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    left_at TEXT,
    questions_asked INTEGER DEFAULT 0,
    engagement_score REAL,
    UNIQUE (session_id, participant_id)
);

CREATE TABLE session_state (
    session_id TEXT PRIMARY KEY NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    current_slide INTEGER DEFAULT 0,
    presentation_mode VARCHAR(50) DEFAULT 'auto',
    is_speaking BOOLEAN DEFAULT 0,
    awaiting_questions BOOLEAN DEFAULT 0,
    operator_connected BOOLEAN DEFAULT 0,
    last_interaction TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    current_topic VARCHAR(255),
    conversation_context TEXT DEFAULT '{}',
    system_metrics TEXT DEFAULT '{}'
);

CREATE TABLE conversations (
    id TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    participant_id VARCHAR(255),
    message_type VARCHAR(50) NOT NULL CHECK (message_type IN ('question', 'response', 'system', 'operator')),
    content TEXT NOT NULL,
    speaker VARCHAR(255),
    timestamp TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    confidence_score REAL,
    response_time_ms INTEGER,
    context TEXT DEFAULT '{}',
    metadata TEXT DEFAULT '{}',
    seq INTEGER NOT NULL,
    client_msg_id VARCHAR(64)
);

CREATE TABLE question_responses (
    id TEXT PRIMARY KEY NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    question_text TEXT NOT NULL,
    response_text TEXT NOT NULL,
    intent_classification VARCHAR(100),
    entities_extracted TEXT DEFAULT '{}',
    -- A JSON array of strings.
    knowledge_sources TEXT,
    confidence_score REAL NOT NULL,
    response_time_ms INTEGER NOT NULL,
    operator_reviewed BOOLEAN DEFAULT 0,
    quality_rating INTEGER CHECK (quality_rating BETWEEN 1 AND 5),
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
);

CREATE TABLE performance_metrics (
    id TEXT PRIMARY KEY NOT NULL,
    session_id TEXT REFERENCES sessions(id) ON DELETE CASCADE,
    metric_type VARCHAR(100) NOT NULL,
    metric_value REAL NOT NULL,
    unit VARCHAR(50),
    timestamp TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    component VARCHAR(100),
    additional_data TEXT DEFAULT '{}'
);

CREATE TABLE system_alerts (
    id TEXT PRIMARY KEY NOT NULL,
    session_id TEXT REFERENCES sessions(id) ON DELETE CASCADE,
    alert_type VARCHAR(100) NOT NULL,
    severity VARCHAR(20) DEFAULT 'info' CHECK (severity IN ('info', 'warning', 'error', 'critical')),
    title VARCHAR(255) NOT NULL,
    message TEXT NOT NULL,
    component VARCHAR(100),
    metadata TEXT DEFAULT '{}',
    acknowledged BOOLEAN DEFAULT 0,
    acknowledged_by TEXT,
    acknowledged_at TEXT,
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    resolved_at TEXT
);

CREATE TABLE operator_interventions (
    id TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    operator_id TEXT NOT NULL,
    intervention_type VARCHAR(50) NOT NULL CHECK (intervention_type IN ('takeover', 'suggestion', 'correction', 'emergency_stop')),
    trigger_reason VARCHAR(255),
    action_taken TEXT NOT NULL,
    duration_seconds INTEGER,
    effectiveness_rating INTEGER CHECK (effectiveness_rating BETWEEN 1 AND 5),
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    ended_at TEXT,
    seq INTEGER NOT NULL,
    client_msg_id VARCHAR(64)
);

CREATE INDEX idx_users_active ON users(is_active) WHERE is_active = 1;
CREATE INDEX idx_api_keys_user ON api_keys(user_id) WHERE is_active = 1;
CREATE INDEX idx_sessions_status ON sessions(status);
CREATE INDEX idx_sessions_created ON sessions(created_at);
CREATE INDEX idx_sessions_user_status ON sessions(user_id, status);
CREATE INDEX idx_sessions_user_id ON sessions(user_id, id);
CREATE INDEX idx_conversations_timestamp ON conversations(timestamp);
CREATE INDEX idx_conversations_session_timestamp ON conversations(session_id, timestamp);
CREATE INDEX idx_conversations_session_id ON conversations(session_id, id);
CREATE INDEX idx_question_responses_conversation ON question_responses(conversation_id);
CREATE INDEX idx_performance_metrics_timestamp ON performance_metrics(timestamp);
CREATE INDEX idx_performance_session_type_timestamp ON performance_metrics(session_id, metric_type, timestamp);
CREATE INDEX idx_interventions_session_id ON operator_interventions(session_id, id);
CREATE INDEX idx_alerts_session_id ON system_alerts(session_id, id);

CREATE UNIQUE INDEX uq_conversations_client_msg
    ON conversations(session_id, message_type, COALESCE(participant_id, speaker), client_msg_id)
    WHERE client_msg_id IS NOT NULL;
CREATE UNIQUE INDEX uq_interventions_client_msg
    ON operator_interventions(session_id, operator_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
