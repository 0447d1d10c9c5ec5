use crate::schema::movies;
use diesel::prelude::*;
use serde::Serialize;

/// A movie as the API shows it.
/// `QueryableByName` serves the listing's `FETCH` from a cursor.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, QueryableByName, Selectable, Serialize)]
#[diesel(table_name = movies, check_for_backend(diesel::pg::Pg))]
pub struct Movie {
    pub id: i64,
    pub title: String,
    pub description: String,
}

/// A validated POST body.
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = movies)]
pub struct NewMovie {
    pub title: String,
    pub description: String,
}

/// A validated PUT body: `None` keeps the stored value.
#[derive(Debug, Clone, Default, PartialEq, Eq, AsChangeset)]
#[diesel(table_name = movies)]
pub struct MovieChanges {
    pub title: Option<String>,
    pub description: Option<String>,
}

/// A validated `GET /api/movies` query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MovieFilter {
    /// Case-insensitive substring of the title, taken literally.
    pub title: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    /// Keyset paging: only movies with a larger id. With `offset` too, the
    /// offset counts from there.
    pub after_id: Option<i64>,
}
