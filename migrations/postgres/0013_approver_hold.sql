-- Countersign schema, part 13: when a person who gained withdrawal rights while Withdrawal
-- Confirmation was on may first approve or decline.
-- NULL: no hold (rights held before the feature was on, or granted while it was off).
-- See `withdrawals.new_approver_hold_hours` and src/service/team.rs.

ALTER TABLE users ADD COLUMN approver_from BIGINT;
