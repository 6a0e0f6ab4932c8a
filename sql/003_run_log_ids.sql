-- 003: snapshot_logs ids that stay unique while the original program (explicit id = COUNT(*)+1) may
-- still write rows beside us: a new id is the sequence's next value, moved past max(id) if needed.
-- Additive: a function and a new default for the column 002 gave a sequence default; no data changes.

-- Serialised by a short session advisory lock (key 7238254874803859303, ASCII "dsrunlog") held only
-- inside the function, so two callers never read the same max(id) and both jump to it. The lock is
-- released before returning, so it never waits on another run's open transaction.
CREATE OR REPLACE FUNCTION ds_next_snapshot_log_id() RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v bigint;
  m bigint;
BEGIN
  PERFORM pg_advisory_lock(7238254874803859303);
  BEGIN
    v := nextval('snapshot_logs_id_seq');
    -- A fresh snapshot per statement (READ COMMITTED): sees rows the original committed meanwhile.
    SELECT COALESCE(max(id), 0) INTO m FROM snapshot_logs;
    IF v <= m THEN
      PERFORM setval('snapshot_logs_id_seq', m);
      v := nextval('snapshot_logs_id_seq');
    END IF;
  EXCEPTION WHEN OTHERS THEN
    PERFORM pg_advisory_unlock(7238254874803859303);
    RAISE;
  END;
  PERFORM pg_advisory_unlock(7238254874803859303);
  RETURN v::integer;
END
$$;

ALTER TABLE snapshot_logs ALTER COLUMN id SET DEFAULT ds_next_snapshot_log_id();
