//! Every SQL statement the service runs. Blocking: call from `web::block`.

use crate::models::{Movie, MovieChanges, MovieFilter, NewMovie};
use crate::schema::movies;
use diesel::dsl::{now, AsSelect, SqlTypeOf};
use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};

/// The listing's server-side cursor; one per connection at a time.
const LISTING_CURSOR: &str = "movies_listing";

type MovieColumns = SqlTypeOf<AsSelect<Movie, Pg>>;

/// The movies `filter` selects (title and `after_id`), in id order, with any
/// projection: the rows of a listing, or just their ids.
fn matching<'a, ST: 'a>(
    query: movies::BoxedQuery<'a, Pg, ST>,
    filter: &MovieFilter,
) -> movies::BoxedQuery<'a, Pg, ST> {
    let mut query = query.order(movies::id);
    if let Some(title) = &filter.title {
        query = query.filter(
            movies::title
                .ilike(format!("%{}%", escape_like(title)))
                .escape('\\'),
        );
    }
    // Keyset paging: the primary key index finds the first row at once,
    // whatever the depth (an OFFSET reads and discards every row before it).
    if let Some(after_id) = filter.after_id {
        query = query.filter(movies::id.gt(after_id));
    }
    query
}

/// The listing as one query: `filter` with its limit and offset.
fn page(filter: &MovieFilter) -> movies::BoxedQuery<'static, Pg, MovieColumns> {
    let mut query = matching(
        movies::table.select(Movie::as_select()).into_boxed(),
        filter,
    );
    if let Some(limit) = filter.limit {
        query = query.limit(limit);
    }
    if let Some(offset) = filter.offset {
        query = query.offset(offset);
    }
    query
}

/// The whole listing in memory. The API streams instead (`listing`); this is
/// the reference its bytes are tested against.
pub fn list(conn: &mut PgConnection, filter: &MovieFilter) -> QueryResult<Vec<Movie>> {
    page(filter).load(conn)
}

/// For a page with a limit: the id of its last movie if the page is full
/// (then there may be more, and the next page starts after it), else `None`.
/// Costs what the page's own offset costs; the listing asks only for pages
/// too long to know this from their rows before the headers go out.
pub fn last_id_of_full_page(
    conn: &mut PgConnection,
    filter: &MovieFilter,
) -> QueryResult<Option<i64>> {
    let Some(limit) = filter.limit.filter(|l| *l > 0) else {
        return Ok(None);
    };
    let skip = filter.offset.unwrap_or(0).saturating_add(limit - 1);
    matching(movies::table.select(movies::id).into_boxed(), filter)
        .offset(skip)
        .limit(1)
        .first(conn)
        .optional()
}

/// Opens the listing's cursor. Must run inside a transaction, which closes it.
pub fn open_listing(conn: &mut PgConnection, filter: &MovieFilter) -> QueryResult<()> {
    DeclareCursor(page(filter)).execute(conn).map(drop)
}

/// The next `rows` movies of the open listing; fewer at its end.
pub fn fetch_listing(conn: &mut PgConnection, rows: u32) -> QueryResult<Vec<Movie>> {
    // FETCH takes no bind parameters; `rows` is our own integer.
    diesel::sql_query(format!("FETCH FORWARD {rows} FROM {LISTING_CURSOR}")).load(conn)
}

/// `DECLARE ... CURSOR FOR <query>`, with the query's own bind parameters.
struct DeclareCursor<Q>(Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for DeclareCursor<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.unsafe_to_cache_prepared();
        out.push_sql("DECLARE ");
        out.push_identifier(LISTING_CURSOR)?;
        out.push_sql(" NO SCROLL CURSOR FOR ");
        self.0.walk_ast(out.reborrow())
    }
}

impl<Q> QueryId for DeclareCursor<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q> RunQueryDsl<PgConnection> for DeclareCursor<Q> {}

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
