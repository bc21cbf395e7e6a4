-- Countersign schema, part 8: the Withdrawal Confirmation feature's enable and disable
-- requests (seed 000) and their email confirmation links.
-- projects.withdrawal_confirmation stays the one flag that new withdrawals read; a request
-- changes it only when its every link is confirmed.

CREATE TABLE confirmation_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id TEXT NOT NULL REFERENCES projects(id),
    kind TEXT NOT NULL CHECK (kind IN ('enable', 'disable')),
    requested_by TEXT NOT NULL REFERENCES users(id),
    -- disable only: the other person with withdrawal rights who must confirm too
    approver_id TEXT REFERENCES users(id),
    status TEXT NOT NULL CHECK (status IN ('open', 'completed', 'cancelled', 'expired')),
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    closed_at BIGINT,
    closed_by TEXT,
    CHECK (kind = 'enable' OR (approver_id IS NOT NULL AND approver_id <> requested_by))
);
-- At most one request in progress per project.
CREATE UNIQUE INDEX confirmation_one_open ON confirmation_requests (project_id) WHERE status = 'open';

-- One link per addressee: the primary account email (enable), or the requester and the
-- approver (disable). Only the token's SHA-256 is kept.
CREATE TABLE confirmation_links (
    token_hash TEXT PRIMARY KEY,
    request_id BIGINT NOT NULL REFERENCES confirmation_requests(id),
    role TEXT NOT NULL CHECK (role IN ('primary', 'requester', 'approver')),
    email TEXT NOT NULL,
    -- the user who must be signed in to confirm (disable links); NULL for the primary email
    user_id TEXT REFERENCES users(id),
    confirmed_at BIGINT,
    UNIQUE (request_id, role)
);
