//! Writing orders. Every insert is idempotent on `order_id`, so storing a
//! redelivered message again is a no-op rather than a second row. A message
//! whose `order_id` is stored already *with other content* (an
//! `Idempotency-Key` reused with another body) is told apart, so the caller
//! can dead-letter it instead of dropping it silently.

use crate::schema::orders;
use bigdecimal::BigDecimal;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use std::collections::{HashMap, HashSet};
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

/// What became of one row of [`store_orders`].
#[derive(Debug, Clone, PartialEq)]
pub enum RowOutcome {
    /// A new order, stored now.
    Inserted,
    /// The very same order was stored before (a redelivery or a retry).
    Duplicate,
    /// Another order is stored under this `order_id`; this row was not
    /// stored. Holds the stored one.
    Conflict(NewOrder),
}

/// Inserts `rows` in one transaction, like [`insert_orders`], and says for
/// each row (in order) whether it was new, a duplicate of the stored order,
/// or in conflict with it. Of two rows with one id in a batch, the first wins.
pub fn store_orders(conn: &mut PgConnection, rows: &[NewOrder]) -> QueryResult<Vec<RowOutcome>> {
    conn.transaction(|conn| {
        let inserted = insert_orders(conn, rows)?;
        let mut fresh: HashSet<Uuid> = inserted.into_iter().collect();
        let seen: Vec<bool> = rows.iter().map(|r| fresh.remove(&r.order_id)).collect();
        let others: Vec<Uuid> = rows
            .iter()
            .zip(&seen)
            .filter(|(_, new)| !**new)
            .map(|(r, _)| r.order_id)
            .collect();
        let stored = load(conn, &others)?;
        Ok(rows
            .iter()
            .zip(seen)
            .map(|(row, new)| match (new, stored.get(&row.order_id)) {
                (true, _) => RowOutcome::Inserted,
                (false, Some(s)) if same_order(s, row) => RowOutcome::Duplicate,
                (false, Some(s)) => RowOutcome::Conflict(s.clone()),
                // Not inserted yet not found: only a concurrent delete could
                // do that, and nothing deletes orders.
                (false, None) => RowOutcome::Duplicate,
            })
            .collect())
    })
}

fn same_order(a: &NewOrder, b: &NewOrder) -> bool {
    a.user_id == b.user_id
        && a.number_of_items == b.number_of_items
        && a.total_amount == b.total_amount
}

/// The stored orders among `ids`.
fn load(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<HashMap<Uuid, NewOrder>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, String, i32, BigDecimal)> = orders::table
        .filter(orders::order_id.eq_any(ids))
        .select((
            orders::order_id,
            orders::user_id,
            orders::number_of_items,
            orders::total_amount,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(order_id, user_id, number_of_items, total_amount)| {
            (
                order_id,
                NewOrder {
                    order_id,
                    user_id,
                    number_of_items,
                    total_amount,
                },
            )
        })
        .collect())
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
