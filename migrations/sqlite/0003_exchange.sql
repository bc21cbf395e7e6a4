-- Countersign schema, part 3: withdrawals with exchange, exchange quotes, executed exchanges,
-- and ledger entries for conversions between a project's balances.
-- Same conventions as 0001: decimals as TEXT, times as BIGINT epoch milliseconds.

-- A withdrawal with exchange keeps `currency`/`amount`/`fee` as the payout (what the address
-- receives, in the payout currency); the debited balance and the conversion, fixed at
-- creation, are recorded here. All NULL for a plain withdrawal.
ALTER TABLE withdrawals ADD COLUMN source_currency TEXT;
ALTER TABLE withdrawals ADD COLUMN source_amount TEXT;
ALTER TABLE withdrawals ADD COLUMN exchange_rate TEXT;
ALTER TABLE withdrawals ADD COLUMN exchange_fee TEXT;
ALTER TABLE withdrawals ADD COLUMN exchange_id BIGINT;
-- When the rates used at creation were fetched (every withdrawal is valued then).
ALTER TABLE withdrawals ADD COLUMN rates_at BIGINT;

-- Every conversion: a withdrawal's (executed when its payout confirms) or a quote's (executed
-- by make-exchange). Its id is the `exchange` transaction id in callbacks. A quote can be
-- executed once: quote_id is unique.
CREATE TABLE exchanges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id TEXT NOT NULL REFERENCES projects(id),
    kind TEXT NOT NULL CHECK (kind IN ('quote', 'withdrawal')),
    quote_id TEXT UNIQUE,
    from_currency TEXT NOT NULL,
    to_currency TEXT NOT NULL,
    from_amount TEXT NOT NULL,
    to_amount TEXT NOT NULL,
    rate TEXT NOT NULL,
    fee TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX exchanges_by_project ON exchanges (project_id, id);

-- Quotes from /exchange/create-quota: a fixed price for a short time.
CREATE TABLE exchange_quotes (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    from_currency TEXT NOT NULL,
    to_currency TEXT NOT NULL,
    request_currency TEXT NOT NULL,
    request_amount TEXT NOT NULL,
    from_amount TEXT NOT NULL,
    to_amount TEXT NOT NULL,
    rate TEXT NOT NULL,
    reverse_rate TEXT NOT NULL,
    fee TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    exchange_id BIGINT,
    created_at BIGINT NOT NULL
);

-- Ledger entries gain two kinds (a conversion takes from one balance and adds to another)
-- and a reference to the exchange. SQLite cannot change a CHECK constraint in place, so the
-- table is rebuilt with the same rows and ids.
CREATE TABLE ledger_entries_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('credit', 'hold', 'release', 'debit', 'exchange_out', 'exchange_in')),
    amount TEXT NOT NULL,
    withdrawal_id BIGINT,
    available_after TEXT NOT NULL,
    held_after TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    exchange_id BIGINT
);
INSERT INTO ledger_entries_new (id, project_id, currency, kind, amount, withdrawal_id, available_after, held_after, created_at)
    SELECT id, project_id, currency, kind, amount, withdrawal_id, available_after, held_after, created_at FROM ledger_entries;
DROP TABLE ledger_entries;
ALTER TABLE ledger_entries_new RENAME TO ledger_entries;
CREATE INDEX ledger_by_balance ON ledger_entries (project_id, currency, created_at);
