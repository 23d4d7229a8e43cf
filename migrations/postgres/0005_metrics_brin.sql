-- Performance metrics are appended in time order (each row's time is when
-- its report arrived), so the time index is a BRIN index: a few bytes per
-- range of table pages instead of a B-tree entry per row. It serves the
-- time-range reads (the retention task's delete, dashboards over a time
-- window) and costs next to nothing per insert, where the B-tree was a
-- third of a bulk insert's time (docs/SCHEMA.md, deviation 12).
DROP INDEX IF EXISTS idx_performance_metrics_timestamp;
CREATE INDEX idx_performance_metrics_timestamp ON performance_metrics
    USING brin (timestamp) WITH (autosummarize = on);
