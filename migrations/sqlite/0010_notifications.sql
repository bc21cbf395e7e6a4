-- Countersign schema, part 10: notification settings. Which events go to the project's Slack
-- channel (comma-separated: pending, outcomes, feature, lockouts), and when email last went
-- out for the project and last failed.

ALTER TABLE projects ADD COLUMN slack_events TEXT NOT NULL DEFAULT 'pending,outcomes,feature,lockouts';

CREATE TABLE email_status (
    project_id TEXT PRIMARY KEY REFERENCES projects(id),
    last_ok_at BIGINT,
    last_error_at BIGINT,
    last_error TEXT
);
