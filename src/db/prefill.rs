//! Bulk history for benchmarks: `countersign dev prefill` inserts confirmed withdrawals (and
//! their timeline rows) as if a merchant had been running for a while, oldest first (one a
//! second up to now), so intake and list speed can be measured against a large table.

use super::{Db, DbError};

const CHUNK: u64 = 100_000;

pub async fn withdrawals(db: &Db, project_id: &str, count: u64, now: i64) -> Result<(), DbError> {
    let mut done = 0;
    let run = crate::crypto::random_token::<6>().unwrap_or_default();
    while done < count {
        let n = CHUNK.min(count - done);
        let mut tx = db.begin().await?;
        sqlx::query(
            "INSERT INTO withdrawals (project_id, foreign_id, fingerprint, scope, initiator_kind, initiator_id,
                currency, network, amount, fee, address, tag, end_user_reference, base_currency, base_value, rate,
                status, initial_status, requirement, usage_hour, usage_day, error, txid, address_id, expires_at,
                created_at, updated_at)
             WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < $1)
             SELECT $2, 'prefill-' || $3 || '-' || ($4 + n), 'prefill', 'api', 'api_key', 'prefill',
                'SBX', 'sandbox', '0.001', '0', 'sbx_prefill', NULL, 'user-' || (n % 1000), 'EUR', '0.001', '1',
                'confirmed', 'approved', '{\"approvals\":0,\"owner_required\":false,\"reasons\":[]}', 'h0', 'd0', '',
                'prefill' || ($4 + n), 0, NULL, $5 - ($6 - $4 - n) * 1000, $5 - ($6 - $4 - n) * 1000
             FROM seq",
        )
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .bind(project_id)
        .bind(&run)
        .bind(i64::try_from(done).unwrap_or(i64::MAX))
        .bind(now)
        .bind(i64::try_from(count).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        done += n;
    }
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO withdrawal_events (withdrawal_id, from_status, to_status, actor_kind, actor_id, note, created_at)
         SELECT id, 'processing', 'confirmed', 'system', '', 'prefill', created_at FROM withdrawals
         WHERE project_id = $1 AND fingerprint = 'prefill'",
    )
    .bind(project_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
