-- PostgreSQL's audit head now moves once per INSERT statement (see the postgres migration of this
-- name). SQLite has no statement triggers, and its one writer appends in process, where the row
-- trigger of 0003 costs little: nothing changes here; the version stays the same on both.
SELECT 1;
