-- eva-hub schema for PostgreSQL.
--
-- Tables, column names, types and CHECK constraints follow seed 000.
-- docs/SCHEMA.md lists every deviation and the reason for it. In short:
-- ids are UUIDv7 supplied by the hub; rows the hub writes carry `seq` and
-- `client_msg_id` and have unique keys that make every write idempotent;
-- operators are named by their credential's subject, not a users row.

-- Tenants: the owners of sessions, API keys and credentials.
CREATE TABLE users (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    email VARCHAR(255) UNIQUE NOT NULL,
    -- Deviation: nullable. The hub authenticates with API keys and signed
    -- tokens; it never stores a password.
    password_hash VARCHAR(255),
    first_name VARCHAR(100),
    last_name VARCHAR(100),
    company VARCHAR(255),
    role VARCHAR(50) DEFAULT 'user' CHECK (role IN ('admin', 'operator', 'user')),
    subscription_tier VARCHAR(50) DEFAULT 'basic' CHECK (subscription_tier IN ('basic', 'professional', 'enterprise')),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    last_login TIMESTAMP WITH TIME ZONE,
    is_active BOOLEAN DEFAULT true,
    email_verified BOOLEAN DEFAULT false,
    api_quota_monthly INTEGER DEFAULT 10000,
    api_calls_used INTEGER DEFAULT 0,
    concurrent_sessions_limit INTEGER DEFAULT 5
);

CREATE TABLE api_keys (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key_hash VARCHAR(255) NOT NULL UNIQUE,
    name VARCHAR(100) NOT NULL,
    scopes TEXT[] DEFAULT ARRAY['eva:read'],
    last_used TIMESTAMP WITH TIME ZONE,
    expires_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    is_active BOOLEAN DEFAULT true
);

-- Avatars are defined by the avatar engine's own tooling; the hub keeps
-- the table so a deployment can hold them next to its sessions.
CREATE TABLE avatars (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID REFERENCES users(id) ON DELETE SET NULL,
    name VARCHAR(255) NOT NULL,
    description TEXT,
    avatar_type VARCHAR(50) DEFAULT 'standard' CHECK (avatar_type IN ('standard', 'custom', 'premium')),
    model_version VARCHAR(50) DEFAULT 'v1',
    appearance_config JSONB NOT NULL DEFAULT '{}',
    personality_config JSONB NOT NULL DEFAULT '{}',
    voice_config JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    is_public BOOLEAN DEFAULT false,
    is_active BOOLEAN DEFAULT true,
    training_status VARCHAR(50) DEFAULT 'ready' CHECK (training_status IN ('pending', 'training', 'ready', 'failed')),
    quality_score DECIMAL(3,2) DEFAULT 0.0
);

CREATE TABLE sessions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- Deviation: nullable and not a foreign key. A session may run without
    -- an avatar record; the id a backend gives is kept as given.
    avatar_id UUID,
    name VARCHAR(255),
    description TEXT,
    status VARCHAR(50) DEFAULT 'created' CHECK (status IN ('created', 'starting', 'active', 'paused', 'stopping', 'stopped', 'failed')),
    config JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    started_at TIMESTAMP WITH TIME ZONE,
    ended_at TIMESTAMP WITH TIME ZONE,
    total_duration_seconds INTEGER DEFAULT 0,
    participant_count INTEGER DEFAULT 0,
    questions_received INTEGER DEFAULT 0,
    operator_interventions INTEGER DEFAULT 0,
    quality_metrics JSONB DEFAULT '{}',
    error_count INTEGER DEFAULT 0,
    last_error TEXT
);

CREATE TABLE session_participants (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    participant_id VARCHAR(255) NOT NULL,
    participant_name VARCHAR(255),
    joined_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    left_at TIMESTAMP WITH TIME ZONE,
    questions_asked INTEGER DEFAULT 0,
    engagement_score DECIMAL(3,2),
    -- Deviation: one row per participant and session (a rejoin clears
    -- left_at), which makes the joined/left upserts idempotent.
    UNIQUE (session_id, participant_id)
);

CREATE TABLE session_state (
    session_id UUID PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    current_slide INTEGER DEFAULT 0,
    presentation_mode VARCHAR(50) DEFAULT 'auto',
    is_speaking BOOLEAN DEFAULT false,
    awaiting_questions BOOLEAN DEFAULT false,
    operator_connected BOOLEAN DEFAULT false,
    last_interaction TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    current_topic VARCHAR(255),
    conversation_context JSONB DEFAULT '{}',
    system_metrics JSONB DEFAULT '{}'
);

CREATE TABLE conversations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Deviation: the reference to sessions is checked once per batch by
    -- the hub, and the cascade is the trigger below (see
    -- eva_delete_session_rows): a per-row foreign-key check doubles the
    -- cost of a bulk insert.
    session_id UUID NOT NULL,
    participant_id VARCHAR(255),
    message_type VARCHAR(50) NOT NULL CHECK (message_type IN ('question', 'response', 'system', 'operator')),
    content TEXT NOT NULL,
    -- Deviation: 255, not 100. The speaker is a display name or subject,
    -- both of which the protocol allows up to 255 bytes.
    speaker VARCHAR(255),
    timestamp TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    confidence_score DECIMAL(3,2),
    response_time_ms INTEGER,
    context JSONB DEFAULT '{}',
    metadata JSONB DEFAULT '{}',
    -- Added: the event's position in the session stream (within its epoch).
    seq BIGINT NOT NULL,
    -- Added: the sender's frame id, the key that makes a resend idempotent.
    client_msg_id VARCHAR(64)
);

CREATE TABLE question_responses (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id UUID NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    question_text TEXT NOT NULL,
    response_text TEXT NOT NULL,
    intent_classification VARCHAR(100),
    entities_extracted JSONB DEFAULT '{}',
    knowledge_sources TEXT[],
    confidence_score DECIMAL(3,2) NOT NULL,
    response_time_ms INTEGER NOT NULL,
    operator_reviewed BOOLEAN DEFAULT false,
    quality_rating INTEGER CHECK (quality_rating BETWEEN 1 AND 5),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE TABLE performance_metrics (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Deviation: checked per batch, like conversations.session_id.
    session_id UUID,
    metric_type VARCHAR(100) NOT NULL,
    metric_value DECIMAL(10,4) NOT NULL,
    unit VARCHAR(50),
    timestamp TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    component VARCHAR(100),
    additional_data JSONB DEFAULT '{}'
);

CREATE TABLE system_alerts (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id UUID REFERENCES sessions(id) ON DELETE CASCADE,
    alert_type VARCHAR(100) NOT NULL,
    severity VARCHAR(20) DEFAULT 'info' CHECK (severity IN ('info', 'warning', 'error', 'critical')),
    title VARCHAR(255) NOT NULL,
    message TEXT NOT NULL,
    component VARCHAR(100),
    metadata JSONB DEFAULT '{}',
    acknowledged BOOLEAN DEFAULT false,
    -- Deviation: the acknowledging operator's subject, not a users row.
    acknowledged_by TEXT,
    acknowledged_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    resolved_at TIMESTAMP WITH TIME ZONE
);

CREATE TABLE operator_interventions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    -- Deviation: the operator's subject, not a users row.
    operator_id TEXT NOT NULL,
    intervention_type VARCHAR(50) NOT NULL CHECK (intervention_type IN ('takeover', 'suggestion', 'correction', 'emergency_stop')),
    trigger_reason VARCHAR(255),
    action_taken TEXT NOT NULL,
    duration_seconds INTEGER,
    effectiveness_rating INTEGER CHECK (effectiveness_rating BETWEEN 1 AND 5),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    ended_at TIMESTAMP WITH TIME ZONE,
    seq BIGINT NOT NULL,
    client_msg_id VARCHAR(64)
);

-- Deleting a session deletes its conversations (and with them their
-- question_responses) and its performance metrics, as the seed's ON
-- DELETE CASCADE does.
CREATE FUNCTION eva_delete_session_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM conversations WHERE session_id = OLD.id;
    DELETE FROM performance_metrics WHERE session_id = OLD.id;
    RETURN OLD;
END
$$;
CREATE TRIGGER sessions_delete_rows BEFORE DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION eva_delete_session_rows();

-- Seed 000 indexes, but for four that cost every insert and serve no
-- query: idx_conversations_session and idx_performance_metrics_session
-- (the composite indexes below start with session_id), and
-- idx_conversations_type and idx_performance_metrics_type (a handful of
-- distinct values; no plan uses them).
CREATE INDEX idx_users_email ON users(email);
CREATE INDEX idx_users_active ON users(is_active) WHERE is_active = true;
CREATE INDEX idx_api_keys_hash ON api_keys(key_hash);
CREATE INDEX idx_api_keys_user ON api_keys(user_id) WHERE is_active = true;
CREATE INDEX idx_sessions_user ON sessions(user_id);
CREATE INDEX idx_sessions_status ON sessions(status);
CREATE INDEX idx_sessions_created ON sessions(created_at);
CREATE INDEX idx_conversations_timestamp ON conversations(timestamp);
CREATE INDEX idx_performance_metrics_timestamp ON performance_metrics(timestamp);
CREATE INDEX idx_sessions_user_status ON sessions(user_id, status);
CREATE INDEX idx_conversations_session_timestamp ON conversations(session_id, timestamp);
CREATE INDEX idx_performance_session_type_timestamp ON performance_metrics(session_id, metric_type, timestamp);

-- Added: keyset paging, newest first, by time-ordered id.
CREATE INDEX idx_sessions_user_id ON sessions(user_id, id);
CREATE INDEX idx_conversations_session_id ON conversations(session_id, id);
CREATE INDEX idx_interventions_session_id ON operator_interventions(session_id, id);
CREATE INDEX idx_alerts_session_id ON system_alerts(session_id, id);
CREATE INDEX idx_question_responses_conversation ON question_responses(conversation_id);

-- Added: idempotency. A frame the same sender sends again (same
-- client_msg_id) never creates a second row, even across hub restarts.
-- The sender of a conversation row is participant_id for questions and
-- speaker otherwise.
CREATE UNIQUE INDEX uq_conversations_client_msg
    ON conversations(session_id, message_type, (COALESCE(participant_id, speaker)), client_msg_id)
    WHERE client_msg_id IS NOT NULL;
CREATE UNIQUE INDEX uq_interventions_client_msg
    ON operator_interventions(session_id, operator_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
