-- Secret URLs of the iCalendar feed (GET /api/v1/calendar.ics?feed=SECRET): calendar apps
-- cannot send a bearer header, so a feed secret stands in for one on that route alone. Only its
-- SHA-256 is kept, as for operators' tokens; a revoked feed stays listed, with who revoked it.
CREATE TABLE calendar_feeds (
    id INTEGER PRIMARY KEY,
    secret_sha256 TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_by TEXT
);
