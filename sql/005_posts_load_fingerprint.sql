-- 005: fingerprints of each post's stored values and of its URI (ds-load writes them;
-- stages/load/post_fingerprint.hpp), so a daily run reads 16 bytes per stored post instead of the
-- row to find what changed, and which stored row a changed post is. Additive: nullable columns (no
-- table rewrite; NULL on every existing row, which ds-load compares by value and fingerprints on
-- its next run), a trigger function and a trigger.
ALTER TABLE posts ADD COLUMN IF NOT EXISTS load_fp BIGINT;
ALTER TABLE posts ADD COLUMN IF NOT EXISTS load_uri_fp BIGINT;

-- A fingerprint is trusted only while the row still holds the values it was computed from. Any
-- writer that changes them without writing a new fingerprint (the original program's upsert, a
-- hand-made fix, ds-load marking a post deleted) drops it, so that row is compared by value.
CREATE OR REPLACE FUNCTION ds_posts_forget_load_fp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.load_fp := NULL;
  RETURN NEW;
END
$$;

-- The WHEN clause is evaluated without calling the function, so updates that do not qualify (all
-- of ds-load's, and any that leaves the values alone) cost almost nothing; inserts are not
-- concerned (a row inserted without a fingerprint has none). CREATE TRIGGER has no IF NOT EXISTS.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'posts'::regclass AND tgname = 'ds_posts_forget_load_fp') THEN
    CREATE TRIGGER ds_posts_forget_load_fp BEFORE UPDATE ON posts FOR EACH ROW
      WHEN ((OLD.uri, OLD.did, OLD.likes, OLD.replies, OLD.quotes, OLD.reposts, OLD."createdAt", OLD.sort_at,
             OLD.deleted_at IS NULL)
            IS DISTINCT FROM
            (NEW.uri, NEW.did, NEW.likes, NEW.replies, NEW.quotes, NEW.reposts, NEW."createdAt", NEW.sort_at,
             NEW.deleted_at IS NULL)
            AND NEW.load_fp IS NOT DISTINCT FROM OLD.load_fp)
      EXECUTE FUNCTION ds_posts_forget_load_fp();
  END IF;
END
$$;
