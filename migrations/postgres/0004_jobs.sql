-- Jobs with live progress (docs/JOBS.md), shaped like seed 004 `jobs`.
-- Deviations: `id` is the hub's UUID; `user_id` is the tenant, as in
-- every hub table (seed 004's user is the job's `owner_id`); the job's
-- presentation session and the session whose stream carries its events.
CREATE TABLE jobs (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    type VARCHAR(50) NOT NULL,
    status VARCHAR(50) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    progress INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    owner_id VARCHAR(255),
    session_id UUID REFERENCES sessions(id) ON DELETE SET NULL,
    -- Not a foreign key: the job outlives its stream's retention.
    stream_id UUID NOT NULL,
    metadata JSONB NOT NULL DEFAULT '{}',
    result JSONB,
    error JSONB,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    started_at TIMESTAMP WITH TIME ZONE,
    completed_at TIMESTAMP WITH TIME ZONE,
    failed_at TIMESTAMP WITH TIME ZONE
);

CREATE INDEX idx_jobs_user_id ON jobs(user_id, id DESC);
CREATE INDEX idx_jobs_status ON jobs(status);
CREATE INDEX idx_jobs_type ON jobs(type);
CREATE INDEX idx_jobs_created_at ON jobs(created_at DESC);
CREATE INDEX idx_jobs_failed ON jobs(user_id, type) WHERE status = 'failed';
