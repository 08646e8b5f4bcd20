-- The audit head moves once per INSERT statement, to the last row it appended, instead of once per
-- row. A batch of requests appends all its entries in one statement (src/server/store/audit.rs),
-- under the append lock that the batches of every replica wait for; sixteen upserts of the one
-- head row there (and sixteen dead versions of it) were time every other replica waited.
DROP TRIGGER audit_head_follows ON audit_log;
DROP FUNCTION audit_head_follow();
CREATE FUNCTION audit_head_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_head (id, seq, hash)
    SELECT 1, seq, hash FROM appended ORDER BY seq DESC LIMIT 1
    ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash;
    RETURN NULL;
END;
$$;
CREATE TRIGGER audit_head_follows AFTER INSERT ON audit_log
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION audit_head_follow();
