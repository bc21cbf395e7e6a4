-- Countersign schema, part 6: the operator gate. When a project has a validation-webhook URL,
-- every new withdrawal is first POSTed there (WITHDRAW_REQUEST) and created only if the
-- operator answers code 0. NULL: no gate.

ALTER TABLE projects ADD COLUMN validation_url TEXT;
