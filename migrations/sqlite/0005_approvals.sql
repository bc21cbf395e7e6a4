-- Countersign schema, part 5: approvals. Votes on pending withdrawals, approval tiers,
-- email-link tokens, admin-API claims, and per-user outcome alerts.
-- Same conventions as 0001: ids TEXT, decimals TEXT, times BIGINT epoch ms, booleans INTEGER.

-- Targets for the composite foreign keys below: a vote names its withdrawal together with
-- that withdrawal's project and initiator, and its voter together with the voter's project,
-- so the schema itself proves both copies true.
CREATE UNIQUE INDEX withdrawals_vote_key ON withdrawals (id, project_id, initiator_id);
CREATE UNIQUE INDEX users_vote_key ON users (id, project_id);

-- One row per person per withdrawal. The schema refuses a second vote by the same user
-- (UNIQUE), a vote by the initiator (CHECK against the proven initiator copy) and a vote
-- from another project's user (both foreign keys share project_id).
CREATE TABLE withdrawal_votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    withdrawal_id BIGINT NOT NULL,
    project_id TEXT NOT NULL,
    initiator_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('approve', 'decline')),
    -- the voter's role when voting: an over-limit withdrawal needs an owner among its approvers
    voter_role TEXT NOT NULL CHECK (voter_role IN ('owner', 'member')),
    channel TEXT NOT NULL CHECK (channel IN ('web', 'bulk', 'email', 'admin_api')),
    note TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    FOREIGN KEY (withdrawal_id, project_id, initiator_id) REFERENCES withdrawals (id, project_id, initiator_id),
    FOREIGN KEY (user_id, project_id) REFERENCES users (id, project_id),
    UNIQUE (withdrawal_id, user_id),
    CHECK (user_id <> initiator_id)
);

-- "At or above min_base_amount (base currency), N distinct approvers", per scope. The
-- highest tier a withdrawal reaches applies.
CREATE TABLE approval_tiers (
    project_id TEXT NOT NULL REFERENCES projects(id),
    scope TEXT NOT NULL CHECK (scope IN ('api', 'dashboard')),
    min_base_amount TEXT NOT NULL,
    approvers BIGINT NOT NULL CHECK (approvers BETWEEN 1 AND 10),
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, scope, min_base_amount)
);

-- Links in approval emails: the token's SHA-256 only, bound to one withdrawal and one user,
-- single use; void once the withdrawal is decided (checked on use) or past expires_at.
CREATE TABLE approval_links (
    token_hash TEXT PRIMARY KEY,
    withdrawal_id BIGINT NOT NULL REFERENCES withdrawals(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX approval_links_by_withdrawal ON approval_links (withdrawal_id, user_id);

-- Admin API: PENDING -> PROCESSING claims a withdrawal for one admin until claimed_until.
ALTER TABLE withdrawals ADD COLUMN claimed_by TEXT;
ALTER TABLE withdrawals ADD COLUMN claimed_until BIGINT;

-- Email about the outcome of withdrawals the user initiated.
ALTER TABLE users ADD COLUMN outcome_alerts INTEGER NOT NULL DEFAULT 1;
