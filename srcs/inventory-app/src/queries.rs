//! Every SQL statement the service runs. Blocking: call from `web::block`.

use crate::models::{Movie, MovieChanges, MovieFilter, NewMovie};
use crate::schema::movies;
use diesel::dsl::now;
use diesel::pg::PgConnection;
use diesel::prelude::*;

pub fn list(conn: &mut PgConnection, filter: &MovieFilter) -> QueryResult<Vec<Movie>> {
    let mut query = movies::table
        .select(Movie::as_select())
        .order(movies::id)
        .into_boxed();
    if let Some(title) = &filter.title {
        query = query.filter(
            movies::title
                .ilike(format!("%{}%", escape_like(title)))
                .escape('\\'),
        );
    }
    if let Some(limit) = filter.limit {
        query = query.limit(limit);
    }
    if let Some(offset) = filter.offset {
        query = query.offset(offset);
    }
    query.load(conn)
}

pub fn find(conn: &mut PgConnection, id: i64) -> QueryResult<Movie> {
    movies::table
        .find(id)
        .select(Movie::as_select())
        .first(conn)
}

pub fn insert(conn: &mut PgConnection, movie: &NewMovie) -> QueryResult<Movie> {
    diesel::insert_into(movies::table)
        .values(movie)
        .returning(Movie::as_returning())
        .get_result(conn)
}

pub fn update(conn: &mut PgConnection, id: i64, changes: &MovieChanges) -> QueryResult<Movie> {
    // updated_at keeps the changeset non-empty, so a PUT of `{}` is valid SQL.
    diesel::update(movies::table.find(id))
        .set((changes, movies::updated_at.eq(now)))
        .returning(Movie::as_returning())
        .get_result(conn)
}

pub fn delete(conn: &mut PgConnection, id: i64) -> QueryResult<Movie> {
    diesel::delete(movies::table.find(id))
        .returning(Movie::as_returning())
        .get_result(conn)
}

pub fn delete_all(conn: &mut PgConnection) -> QueryResult<usize> {
    diesel::delete(movies::table).execute(conn)
}

/// A real round trip, for readiness.
pub fn ping(conn: &mut PgConnection) -> QueryResult<()> {
    diesel::sql_query("SELECT 1").execute(conn).map(drop)
}

/// Makes `%`, `_` and `\` in user input match themselves in a LIKE pattern
/// (the value is a bound parameter, so quotes need nothing).
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_like;

    #[test]
    fn like_metacharacters_are_escaped() {
        assert_eq!(escape_like(r"50%_off\'"), r"50\%\_off\\'");
        assert_eq!(escape_like("matrix"), "matrix");
    }
}
