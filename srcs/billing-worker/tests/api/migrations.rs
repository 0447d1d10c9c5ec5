//! The embedded migrations and the insert they serve.

use crate::support::{test_db, OrdersDb};
use bigdecimal::BigDecimal;
use billing_worker::store::{insert_orders, NewOrder};
use billing_worker::MIGRATIONS;
use diesel::prelude::*;
use diesel_migrations::MigrationHarness;
use std::str::FromStr;
use uuid::Uuid;

fn has_orders_table(conn: &mut PgConnection) -> bool {
    #[derive(QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    diesel::sql_query("SELECT to_regclass('public.orders') IS NOT NULL AS exists")
        .get_result::<Exists>(conn)
        .unwrap()
        .exists
}

#[test]
fn migrations_go_up_down_and_up_again() {
    let db = test_db();
    let mut conn = db.conn();
    assert!(!has_orders_table(&mut conn));
    conn.run_pending_migrations(MIGRATIONS).unwrap();
    assert!(has_orders_table(&mut conn));
    conn.revert_all_migrations(MIGRATIONS).unwrap();
    assert!(!has_orders_table(&mut conn));
    conn.run_pending_migrations(MIGRATIONS).unwrap();
    assert!(has_orders_table(&mut conn));
}

fn new_order(id: Uuid, user: &str) -> NewOrder {
    NewOrder {
        order_id: id,
        user_id: user.to_owned(),
        number_of_items: 2,
        total_amount: BigDecimal::from_str("5.25").unwrap(),
    }
}

#[test]
fn inserting_is_idempotent_on_the_order_id() {
    let db = test_db();
    let mut conn = db.conn();
    conn.run_pending_migrations(MIGRATIONS).unwrap();

    let a = Uuid::new_v4();
    let b = Uuid::new_v4();
    // A duplicate inside one batch, too.
    let first = insert_orders(
        &mut conn,
        &[new_order(a, "a"), new_order(b, "b"), new_order(a, "a")],
    )
    .unwrap();
    assert_eq!(first.len(), 2);
    let again = insert_orders(&mut conn, &[new_order(a, "a"), new_order(b, "b")]).unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(db.count(), 2);
}

#[test]
fn the_table_enforces_what_validation_promises() {
    let db = test_db();
    let mut conn = db.conn();
    conn.run_pending_migrations(MIGRATIONS).unwrap();
    let mut zero_items = new_order(Uuid::new_v4(), "z");
    zero_items.number_of_items = 0;
    let err = insert_orders(&mut conn, &[zero_items]).unwrap_err();
    assert!(billing_worker::store::is_row_rejection(&err), "{err}");
    let mut negative = new_order(Uuid::new_v4(), "n");
    negative.total_amount = BigDecimal::from_str("-1").unwrap();
    assert!(insert_orders(&mut conn, &[negative]).is_err());
    assert_eq!(db.count(), 0);
}
