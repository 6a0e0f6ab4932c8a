-- 002: what the new pipeline records beside the original schema. Additive only: new nullable
-- columns, a new table, a sequence default; the website's queries see the same tables and rows.

-- The key the API pages by (least(createdAt, indexedAt)); NULL on rows the original wrote, which
-- readers treat as "createdAt".
ALTER TABLE posts ADD COLUMN IF NOT EXISTS sort_at TIMESTAMPTZ;
-- Set when a complete feed of a refreshed window no longer returns the post; cleared if it comes
-- back. Deleted posts stop counting in totals but stay in the table.
ALTER TABLE posts ADD COLUMN IF NOT EXISTS deleted_at TIMESTAMPTZ;
CREATE INDEX IF NOT EXISTS idx_posts_did_sort_at ON posts(did, sort_at);

-- Per-user pipeline state. backfilled_at is the "full history fetched" marker: a user without it
-- gets a full backfill, whatever posts the original left in the table.
CREATE TABLE IF NOT EXISTS ds_user_state (
    did VARCHAR(255) PRIMARY KEY REFERENCES users(did) ON DELETE CASCADE,
    backfilled_at TIMESTAMPTZ,
    backfill_posts INTEGER
);

-- Run ids from a sequence instead of COUNT(*)+1, starting after the rows already there.
CREATE SEQUENCE IF NOT EXISTS snapshot_logs_id_seq OWNED BY snapshot_logs.id;
SELECT setval('snapshot_logs_id_seq', COALESCE((SELECT max(id) FROM snapshot_logs), 0) + 1, false)
 WHERE (SELECT last_value FROM snapshot_logs_id_seq) <= COALESCE((SELECT max(id) FROM snapshot_logs), 0)
    OR NOT (SELECT is_called FROM snapshot_logs_id_seq);
ALTER TABLE snapshot_logs ALTER COLUMN id SET DEFAULT nextval('snapshot_logs_id_seq');

-- The run's counters, from the stages' end records, and why a run failed.
ALTER TABLE snapshot_logs ADD COLUMN IF NOT EXISTS users_selected INTEGER;
ALTER TABLE snapshot_logs ADD COLUMN IF NOT EXISTS users_gone INTEGER;
ALTER TABLE snapshot_logs ADD COLUMN IF NOT EXISTS users_failed INTEGER;
ALTER TABLE snapshot_logs ADD COLUMN IF NOT EXISTS posts_loaded BIGINT;
ALTER TABLE snapshot_logs ADD COLUMN IF NOT EXISTS api_requests BIGINT;
ALTER TABLE snapshot_logs ADD COLUMN IF NOT EXISTS api_retries BIGINT;
ALTER TABLE snapshot_logs ADD COLUMN IF NOT EXISTS bad_lines INTEGER;
ALTER TABLE snapshot_logs ADD COLUMN IF NOT EXISTS error TEXT;
ALTER TABLE snapshot_logs ADD COLUMN IF NOT EXISTS shard TEXT;
