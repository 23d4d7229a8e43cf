-- Jobs with live progress (docs/JOBS.md), shaped like seed 004 `jobs`,
-- in SQLite's storage classes (see 0001_schema.sql). Deviations as on
-- PostgreSQL: UUID ids, `user_id` is the tenant, `owner_id` the seed's
-- user, and the job's session and stream.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    type VARCHAR(50) NOT NULL,
    status VARCHAR(50) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    progress INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    owner_id VARCHAR(255),
    session_id TEXT REFERENCES sessions(id) ON DELETE SET NULL,
    -- Not a foreign key: the job outlives its stream's retention.
    stream_id TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT,
    failed_at TEXT
);

CREATE INDEX idx_jobs_user_id ON jobs(user_id, id DESC);
CREATE INDEX idx_jobs_status ON jobs(status);
CREATE INDEX idx_jobs_type ON jobs(type);
CREATE INDEX idx_jobs_created_at ON jobs(created_at DESC);
CREATE INDEX idx_jobs_failed ON jobs(user_id, type) WHERE status = 'failed';
