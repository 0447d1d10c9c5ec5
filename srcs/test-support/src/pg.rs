//! A database of each test's own on the real PostgreSQL (user postgres,
//! trust authentication on 127.0.0.1, as the test servers are set up).

use bigdecimal::BigDecimal;
use common::db::PgSettings;
use diesel::pg::PgConnection;
use diesel::{sql_types, Connection, QueryableByName, RunQueryDsl};
use secrecy::SecretString;
use uuid::Uuid;

pub fn connect(port: u16, dbname: &str) -> PgConnection {
    let url = format!("host=127.0.0.1 port={port} user=postgres dbname={dbname} connect_timeout=5");
    PgConnection::establish(&url).unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// Settings for a service's config: this database on 127.0.0.1:`port`.
pub fn settings(port: u16, name: &str, pool_size: u32) -> PgSettings {
    PgSettings {
        host: "127.0.0.1".to_owned(),
        port,
        name: name.to_owned(),
        user: "postgres".to_owned(),
        password: SecretString::from(""),
        pool_size,
    }
}

/// Dropped (its sessions cut) when the value goes out of scope, also when
/// the test failed.
pub struct TestDb {
    pub name: String,
    pub port: u16,
}

impl TestDb {
    pub fn create(port: u16, prefix: &str) -> Self {
        let db = Self::named(port, prefix);
        db.create_now();
        db
    }

    /// Only a name: the database does not exist until [`TestDb::create_now`].
    pub fn named(port: u16, prefix: &str) -> Self {
        Self {
            name: crate::unique_name(prefix),
            port,
        }
    }

    pub fn create_now(&self) {
        self.admin(&format!("CREATE DATABASE {}", self.name));
    }

    pub fn conn(&self) -> PgConnection {
        connect(self.port, &self.name)
    }

    pub fn settings(&self, pool_size: u32) -> PgSettings {
        settings(self.port, &self.name, pool_size)
    }

    /// Makes the database refuse connections and cuts those it has: to a
    /// service this looks like PostgreSQL going down, while the other tests
    /// on the same server carry on.
    pub fn block(&self) {
        self.admin(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
            self.name
        ));
        self.admin(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            self.name
        ));
    }

    pub fn unblock(&self) {
        self.admin(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
            self.name
        ));
    }

    /// Runs `sql` on the server's `postgres` database.
    pub fn admin(&self, sql: &str) {
        diesel::sql_query(sql)
            .execute(&mut connect(self.port, "postgres"))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Ok(mut admin) = PgConnection::establish(&format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=5",
            self.port
        )) {
            let _ = diesel::sql_query(sql).execute(&mut admin);
        }
    }
}

/// One row of the billing worker's `orders` table.
pub type OrderRow = (Uuid, String, i32, BigDecimal);

/// (order_id, user_id, number_of_items, total_amount) of every row of
/// `orders`, in insertion order: what the worker's and the gateway's tests
/// read back to count orders in rows.
pub fn order_rows(conn: &mut PgConnection) -> Vec<OrderRow> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = sql_types::Uuid)]
        order_id: Uuid,
        #[diesel(sql_type = sql_types::Text)]
        user_id: String,
        #[diesel(sql_type = sql_types::Integer)]
        number_of_items: i32,
        #[diesel(sql_type = sql_types::Numeric)]
        total_amount: BigDecimal,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT order_id, user_id, number_of_items, total_amount FROM orders ORDER BY id",
    )
    .load(conn)
    .unwrap();
    rows.into_iter()
        .map(|r| (r.order_id, r.user_id, r.number_of_items, r.total_amount))
        .collect()
}
