-- 007: a backfill spread over several runs (docs/request-economy.md, "Progressive backfill").
-- Additive only. While backfill_cursor is set the account's history is incomplete: no snapshot.

-- Where the next run continues the history: the getAuthorFeed cursor after the last page stored
-- (every post older than it is still to fetch). NULL when no backfill is in progress.
ALTER TABLE ds_user_state ADD COLUMN IF NOT EXISTS backfill_cursor TEXT;
-- When the backfill's first run selected the account (its asOf).
ALTER TABLE ds_user_state ADD COLUMN IF NOT EXISTS backfill_started_at TIMESTAMPTZ;
-- The asOf of the last run that stored part of it: everything newer than the cursor and older
-- than this was fetched; the next run's window reaches back at least to here.
ALTER TABLE ds_user_state ADD COLUMN IF NOT EXISTS backfill_covered_to TIMESTAMPTZ;
-- (backfill_posts, from 002, counts the posts stored so far while a backfill is in progress.)

-- Backfills that stopped at the run's limit, from ds-fetch-feeds' end record: not failures.
ALTER TABLE snapshot_logs ADD COLUMN IF NOT EXISTS backfills_partial INTEGER;
