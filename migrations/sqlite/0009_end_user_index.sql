-- Countersign schema, part 8: the approval pages show the end user's latest withdrawals
-- next to the one being decided; this index yields them newest first without a sort.

CREATE INDEX withdrawals_by_end_user ON withdrawals (project_id, end_user_reference, id);
