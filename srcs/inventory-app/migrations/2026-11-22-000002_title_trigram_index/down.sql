DROP INDEX movies_title_trgm_idx;
-- Without CASCADE: if something else has come to use pg_trgm, the revert
-- fails (and rolls back) instead of silently dropping that too.
DROP EXTENSION pg_trgm;
