-- `?title=` is a case-insensitive substring search (ILIKE '%...%'), which a
-- B-tree cannot serve; a trigram GIN index can, for patterns of 3+ characters.
-- pg_trgm is a trusted extension (PostgreSQL 13+), so the database owner may
-- create it without superuser rights.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX movies_title_trgm_idx ON movies USING gin (title gin_trgm_ops);
