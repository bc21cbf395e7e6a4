-- Countersign schema, part 2: people. Users with roles and withdrawal rights, TOTP, recovery
-- codes, invites, server-side sessions, the first-run setup token and the dev mailbox.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    email TEXT NOT NULL,
    -- lower-cased: emails are unique case-insensitively across the installation
    email_norm TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    withdrawal_rights INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL CHECK (status IN ('invited', 'active', 'removed')),
    password_hash TEXT,
    -- the confirmed TOTP secret (encrypted with the master key); NULL until enrolled
    totp_secret_enc TEXT,
    -- a secret shown during enrollment, not yet confirmed by a code
    totp_pending_enc TEXT,
    -- the last accepted TOTP time step: a code is accepted only for a later step
    totp_last_step BIGINT NOT NULL DEFAULT 0,
    -- bumped to end every session (and token) of the user at once
    session_generation BIGINT NOT NULL DEFAULT 0,
    failed_passwords BIGINT NOT NULL DEFAULT 0,
    failed_totp BIGINT NOT NULL DEFAULT 0,
    failures_since BIGINT,
    locked_until BIGINT,
    email_alerts INTEGER NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX users_by_project ON users (project_id, email_norm);

CREATE TABLE recovery_codes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL REFERENCES users(id),
    code_hash TEXT NOT NULL,
    used_at BIGINT
);
CREATE INDEX recovery_codes_by_user ON recovery_codes (user_id);

CREATE TABLE invites (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    created_by TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);

-- The cookie holds a random id; this table only its SHA-256.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    -- NULL for an anonymous session (it carries the sign-in form's CSRF token)
    user_id TEXT REFERENCES users(id),
    -- 'anon', 'password' (password accepted, second factor due), 'enroll' (must enroll TOTP), 'full'
    stage TEXT NOT NULL CHECK (stage IN ('anon', 'password', 'enroll', 'full')),
    generation BIGINT NOT NULL DEFAULT 0,
    csrf_token TEXT NOT NULL,
    -- where to go after sign-in
    return_to TEXT,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    absolute_expiry BIGINT NOT NULL,
    -- the last fresh TOTP verification (step-up)
    verified_at BIGINT,
    ip TEXT,
    user_agent TEXT,
    ended_at BIGINT
);
CREATE INDEX sessions_by_user ON sessions (user_id, ended_at);

CREATE TABLE setup_tokens (
    token_hash TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);

-- Mail kept for the built-in development mailbox when no SMTP server is configured.
CREATE TABLE dev_mailbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    to_addr TEXT NOT NULL,
    subject TEXT NOT NULL,
    text_body TEXT NOT NULL,
    html_body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX audit_by_project_time ON audit_log (project_id, created_at);
