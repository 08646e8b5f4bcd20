-- The chain head follows every append inside the same statement, so it can never lag the log
-- and an append costs one round trip fewer.
CREATE TRIGGER audit_head_follows AFTER INSERT ON audit_log
BEGIN
    INSERT INTO audit_head (id, seq, hash) VALUES (1, NEW.seq, NEW.hash)
    ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash;
END;
