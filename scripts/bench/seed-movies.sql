-- Grows the movies table from :from to :target rows (ids :from+1 .. :target
-- after a TRUNCATE ... RESTART IDENTITY) with varied, reproducible titles:
-- two to four pseudo-words of 4-8 letters cut from md5 of the row number and
-- mapped onto 16 letters, so they read like words and their trigrams spread
-- the way real text's do. Run by scripts/bench.sh: psql -v from=N -v target=M.
INSERT INTO movies (title, description)
SELECT initcap(concat_ws(' ',
           substr(h, 1, 4 + i % 5),
           substr(h, 9, 4 + i / 5 % 5),
           CASE WHEN i % 2 = 0 THEN substr(h, 17, 4 + i / 25 % 5) END,
           CASE WHEN i % 5 = 0 THEN substr(h, 25, 4 + i / 125 % 5) END)),
       'A story of ' || substr(h, 33, 6) || ' and ' || substr(h, 41, 7) || ', ' || (1900 + i % 125)
FROM (
    SELECT i, translate(md5(i::text) || md5('x' || i), '0123456789abcdef', 'aeioubdfgklmnprs') AS h
    FROM generate_series(:from + 1, :target) AS i
    OFFSET 0 -- computed once per row, not once per use of h
) AS rows;
