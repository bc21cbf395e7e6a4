-- Countersign schema, part 4: indexes for the withdrawals list and the dashboard. A listing is
-- per project, newest first by id (keyset pagination), optionally narrowed by status,
-- currency, destination address or creation date. Each of the first three (and status with
-- currency) has an index that yields rows already in id order, so a page reads about one
-- page of rows however large the table. A date range is found through the date index (see
-- src/db/withdrawal_list.rs for when that is cheaper than walking ids).

CREATE INDEX withdrawals_by_status ON withdrawals (project_id, status, id);
CREATE INDEX withdrawals_by_currency ON withdrawals (project_id, currency, id);
CREATE INDEX withdrawals_by_status_currency ON withdrawals (project_id, status, currency, id);
CREATE INDEX withdrawals_by_created ON withdrawals (project_id, created_at, id);

-- Replaces (project_id, address) with the same columns plus id, so that "this address,
-- newest first" needs no sort.
DROP INDEX withdrawals_by_address;
CREATE INDEX withdrawals_by_address ON withdrawals (project_id, address, id);
