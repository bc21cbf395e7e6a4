-- Countersign schema, part 12: the indexes the worker and /metrics use to find work in
-- motion hold only that work. A withdrawal leaves `withdrawals_in_flight` when it reaches a
-- final status and a job leaves `jobs_queued` when it is done or dead, so both indexes stay
-- as small as the work in flight (not the history), and a final status change or a finished
-- job writes no entry into them. The predicates are spelled with OR, not IN: SQLite uses a
-- partial index only for a query whose WHERE clause contains one of the predicate's terms
-- as written (`status = 'pending'`), and the queries in src/db/monitoring.rs repeat it.

DROP INDEX withdrawals_expiry;
CREATE INDEX withdrawals_in_flight ON withdrawals (status, expires_at)
    WHERE status = 'pending' OR status = 'approved' OR status = 'processing';

DROP INDEX jobs_due;
CREATE INDEX jobs_queued ON jobs (run_at) WHERE status = 'queued';
