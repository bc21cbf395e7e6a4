-- Countersign schema, part 11: when the settings page last sent a Slack test message, so that
-- at most one goes out per project every few seconds, whichever instance takes the click.

ALTER TABLE slack_webhooks ADD COLUMN last_test_at BIGINT;
