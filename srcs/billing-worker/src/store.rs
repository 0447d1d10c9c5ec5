//! Writing orders. Every insert is idempotent on `order_id`, so storing a
//! redelivered message again is a no-op rather than a second row.

use crate::schema::orders;
use bigdecimal::BigDecimal;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = orders)]
pub struct NewOrder {
    pub order_id: Uuid,
    pub user_id: String,
    pub number_of_items: i32,
    pub total_amount: BigDecimal,
}

/// PostgreSQL takes at most 65,535 bind parameters per statement; at four per
/// row this keeps any configured batch size well under that limit.
const MAX_ROWS_PER_STATEMENT: usize = 10_000;

/// Inserts `rows` in one transaction, skipping order ids already stored.
/// Returns the order ids that were new, so the caller can tell stored orders
/// from duplicates.
pub fn insert_orders(conn: &mut PgConnection, rows: &[NewOrder]) -> QueryResult<Vec<Uuid>> {
    conn.transaction(|conn| {
        let mut inserted = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(MAX_ROWS_PER_STATEMENT) {
            let ids: Vec<Uuid> = diesel::insert_into(orders::table)
                .values(chunk)
                .on_conflict(orders::order_id)
                .do_nothing()
                .returning(orders::order_id)
                .get_results(conn)?;
            inserted.extend(ids);
        }
        Ok(inserted)
    })
}

/// True when the database refused a row for what it holds (a constraint the
/// shared validation does not know about), as opposed to being unavailable.
/// Such a row can never be stored, so retrying it would block the queue.
pub fn is_row_rejection(err: &DieselError) -> bool {
    matches!(
        err,
        DieselError::DatabaseError(
            DatabaseErrorKind::CheckViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::ExclusionViolation
                | DatabaseErrorKind::RestrictViolation,
            _,
        ) | DieselError::SerializationError(_)
    )
}

/// `SELECT 1`: is the database answering?
pub fn ping(conn: &mut PgConnection) -> QueryResult<()> {
    diesel::sql_query("SELECT 1").execute(conn).map(|_| ())
}
