-- Run through pgwarden and directly; the two outputs must be byte-identical.
\set VERBOSITY verbose
\pset null '(null)'
CREATE TEMP TABLE t(id int PRIMARY KEY, name text, note text, amount numeric(12,2), at timestamptz);
INSERT INTO t SELECT g, 'name ' || g, repeat('xy', g % 40), g * 1.25, '2024-01-01 00:00+00'::timestamptz + g * interval '1 hour'
  FROM generate_series(1, 2000) g;
SELECT * FROM t WHERE id % 97 = 0 ORDER BY id;
SELECT count(*), sum(amount), min(at), max(length(note)) FROM t;
\d t
SELECT 'ünïcödé ✓' AS text, E'tab\there' AS escaped, NULL AS nothing, ''::text AS empty;
SELECT 1/0;
SELECT * FROM no_such_table;
INSERT INTO t VALUES (1, 'dup');
DO $$ BEGIN RAISE NOTICE 'notice from DO: %', 42; RAISE WARNING 'a warning'; END $$;
BEGIN;
UPDATE t SET name = 'changed' WHERE id <= 10;
SAVEPOINT s1;
DELETE FROM t WHERE id = 1;
ROLLBACK TO s1;
SELECT count(*) FROM t WHERE name = 'changed';
COMMIT;
BEGIN;
SELECT broken syntax here;
SELECT 'after error in transaction';
ROLLBACK;
PREPARE p(int) AS SELECT id, name FROM t WHERE id = $1;
EXECUTE p(5);
EXECUTE p(6);
DEALLOCATE p;
COPY (SELECT id, name FROM t WHERE id <= 20 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER);
COPY t (id, name) FROM STDIN;
5001	copied one
5002	copied two
\.
SELECT id, name FROM t WHERE id > 5000 ORDER BY id;
SELECT repeat('z', 100000) = repeat('z', 100000) AS big_equal, length(string_agg(name, ',')) FROM t;
SELECT generate_series(1, 3) AS s \gset pre_
\echo :pre_s
SHOW server_encoding;
SET application_name = 'pgwarden-it';
SHOW application_name;
;
SELECT 'done' AS status;
