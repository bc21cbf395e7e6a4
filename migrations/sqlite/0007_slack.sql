-- Countersign schema, part 7: the project's Slack channel (an incoming-webhook URL).
-- The URL is a credential (anyone holding it can post to the channel), so it is stored only
-- encrypted with the master key (`url_enc`, see src/crypto.rs) next to a masked form for the
-- page (`url_hint`, e.g. `https://hooks.slack.com/services/T…/…`). `webhook_id` changes on
-- every connect or replace, so the outcome of a send made to an earlier URL never lands on
-- the status of a new one. Disconnecting deletes the row. Messages themselves are `slack`
-- jobs in the outbox (`jobs`), with their attempts in `delivery_attempts`.

CREATE TABLE slack_webhooks (
    project_id TEXT PRIMARY KEY REFERENCES projects(id),
    webhook_id TEXT NOT NULL,
    url_enc TEXT NOT NULL,
    url_hint TEXT NOT NULL,
    connected_at BIGINT NOT NULL,
    last_ok_at BIGINT,
    last_error_at BIGINT,
    last_error TEXT
);
