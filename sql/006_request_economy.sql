-- 006: what the request economy needs (docs/request-economy.md). Additive only.

-- The last snapshot this pipeline wrote for the account, from a complete fetch: its date and the
-- profile's postsCount that day. ds-select-users carries them; ds-fetch-feeds compares today's
-- postsCount with them to know whether anything was created or deleted since.
ALTER TABLE ds_user_state ADD COLUMN IF NOT EXISTS last_snapshot_date DATE;
ALTER TABLE ds_user_state ADD COLUMN IF NOT EXISTS last_snapshot_posts INTEGER;

-- The run's requests by endpoint, from the fetching stages' end records.
ALTER TABLE snapshot_logs ADD COLUMN IF NOT EXISTS requests_get_profiles BIGINT;
ALTER TABLE snapshot_logs ADD COLUMN IF NOT EXISTS requests_get_author_feed BIGINT;
ALTER TABLE snapshot_logs ADD COLUMN IF NOT EXISTS requests_get_posts BIGINT;
