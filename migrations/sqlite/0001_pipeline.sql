-- Countersign schema, part 1: projects, API keys, balances and their ledger, limits,
-- withdrawals, the audit log, the job outbox and its delivery attempts.
-- Portable through sqlx `Any`: ids and amounts TEXT (canonical decimals), times BIGINT epoch
-- milliseconds, booleans INTEGER 0/1. migrations/postgres/ holds the same schema.

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    primary_email TEXT NOT NULL,
    base_currency TEXT NOT NULL,
    callback_url TEXT,
    webhook_secret_enc TEXT NOT NULL,
    withdrawal_confirmation INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    key_hash TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    secret_enc TEXT NOT NULL,
    can_withdraw INTEGER NOT NULL DEFAULT 1,
    revoked_at BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE balances (
    project_id TEXT NOT NULL REFERENCES projects(id),
    currency TEXT NOT NULL,
    available TEXT NOT NULL,
    held TEXT NOT NULL,
    version BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, currency)
);

-- Every movement of a balance, with the balance after it: the balance at any past instant is
-- the last entry before it (one index probe), and the sum of entries equals the balance.
CREATE TABLE ledger_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('credit', 'hold', 'release', 'debit')),
    amount TEXT NOT NULL,
    withdrawal_id BIGINT,
    available_after TEXT NOT NULL,
    held_after TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX ledger_by_balance ON ledger_entries (project_id, currency, created_at);

-- currency '*' is the base-currency default of a scope.
CREATE TABLE limits (
    project_id TEXT NOT NULL REFERENCES projects(id),
    scope TEXT NOT NULL CHECK (scope IN ('api', 'dashboard')),
    currency TEXT NOT NULL,
    per_operation TEXT,
    per_hour TEXT,
    per_day TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, scope, currency)
);

-- Running totals per calendar bucket ('h<epoch hour>' / 'd<epoch day>'): checking a limit
-- reads two rows whatever the history.
CREATE TABLE limit_usage (
    project_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    currency TEXT NOT NULL,
    bucket TEXT NOT NULL,
    amount TEXT NOT NULL,
    base_amount TEXT NOT NULL,
    PRIMARY KEY (project_id, scope, currency, bucket)
);

CREATE TABLE withdrawals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id TEXT NOT NULL REFERENCES projects(id),
    foreign_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('api', 'dashboard')),
    initiator_kind TEXT NOT NULL CHECK (initiator_kind IN ('api_key', 'user')),
    initiator_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    network TEXT NOT NULL,
    amount TEXT NOT NULL,
    fee TEXT NOT NULL,
    address TEXT NOT NULL,
    tag TEXT,
    end_user_reference TEXT,
    base_currency TEXT NOT NULL,
    base_value TEXT NOT NULL,
    rate TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'processing', 'confirmed', 'declined', 'cancelled')),
    initial_status TEXT NOT NULL,
    requirement TEXT NOT NULL,
    usage_hour TEXT NOT NULL,
    usage_day TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    txid TEXT,
    address_id BIGINT NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (project_id, foreign_id)
);
CREATE INDEX withdrawals_by_project ON withdrawals (project_id, id);
CREATE INDEX withdrawals_expiry ON withdrawals (status, expires_at);
CREATE INDEX withdrawals_by_address ON withdrawals (project_id, address);

-- The project's address book: the seeds' `crypto_address.id`, and whether an address was
-- ever paid before.
CREATE TABLE payout_addresses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    address TEXT NOT NULL,
    tag TEXT NOT NULL DEFAULT '',
    first_used_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    UNIQUE (project_id, currency, address, tag)
);

-- The timeline of each withdrawal: every transition, who made it, when.
CREATE TABLE withdrawal_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    withdrawal_id BIGINT NOT NULL REFERENCES withdrawals(id),
    from_status TEXT,
    to_status TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
CREATE INDEX withdrawal_events_by_withdrawal ON withdrawal_events (withdrawal_id, id);

-- Append-only, hash-chained per project (audit_heads holds each chain's tip).
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    details TEXT NOT NULL,
    ip TEXT,
    user_agent TEXT,
    created_at BIGINT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    UNIQUE (project_id, seq)
);

CREATE TABLE audit_heads (
    project_id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);

-- The outbox: callbacks, payouts and other side effects, written in the transaction that
-- causes them, claimed with a lease, retried with backoff, dead after their deadline.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    project_id TEXT,
    withdrawal_id BIGINT,
    dedupe_key TEXT UNIQUE,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'done', 'dead')),
    attempts BIGINT NOT NULL DEFAULT 0,
    run_at BIGINT NOT NULL,
    deadline BIGINT,
    lease_until BIGINT,
    lease_owner TEXT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX jobs_due ON jobs (status, run_at);
CREATE INDEX jobs_by_withdrawal ON jobs (withdrawal_id);

CREATE TABLE delivery_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id BIGINT NOT NULL REFERENCES jobs(id),
    attempt BIGINT NOT NULL,
    attempted_at BIGINT NOT NULL,
    status_code BIGINT,
    error TEXT,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX delivery_attempts_by_job ON delivery_attempts (job_id, id);

-- The sandbox payout rail's own book: one row per idempotency key, so a retried submission
-- returns the first one's txid and never pays twice.
CREATE TABLE sandbox_payouts (
    idempotency_key TEXT PRIMARY KEY,
    txid TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount TEXT NOT NULL,
    address TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('confirm', 'fail')),
    submitted_at BIGINT NOT NULL,
    submissions BIGINT NOT NULL DEFAULT 1
);
