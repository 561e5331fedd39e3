// Package sqlgen builds the SQL both stores run against the user's tables:
// one builder, parameterised by the database's dialect.
//
// A Dialect is the syntax in which PostgreSQL's and SQLite's statements
// differ: numbered parameters ($1) or ? ones, identifiers quoted with or
// without their NUL bytes (PostgreSQL's names cannot hold one, and
// pgx.Identifier drops them), and the literal of false. Its values are
// Postgres and SQLite. Both databases take the same INSERT … ON CONFLICT
// (key) DO UPDATE SET … = excluded.… for an upsert.
//
// A Builder is a store's dialect with what the store does with column
// values: how it binds a canonical value (PostgreSQL's store sends the
// value's text, SQLite's the form SQLite stores), and, for reads, what it
// selects of a column, what a filter compares it by, the type a filter's
// parameter is cast to, and whether an IN list is one array parameter
// (PostgreSQL) or a parameter per value (SQLite). From these it builds:
//
//   - the statement of an operation of a transaction: BindWrite checks the
//     operation against its table and binds its values and key (a Write),
//     WriteSQL writes its INSERT, upsert, UPDATE, DELETE, or the SELECT 1
//     of an update without values (Exists);
//   - multi-row inserts (Insert), which SQLite's store uses for runs of
//     inserts and both stores' bulk paths for one row or many, with
//     BindRows binding a bulk insert's rows;
//   - the reads of rows: Get by key and Query with filters, order and
//     limit, run by the store's ScanFunc.
//
// Every value is a bind parameter, never SQL text; every identifier comes
// from the catalog and is quoted by the dialect. The stores keep what is
// theirs alone: PostgreSQL's merge of insert runs into one INSERT …
// SELECT FROM unnest() of text arrays, its COPY and its pipelines; SQLite's
// statement cache; each one's bookkeeping statements (spool_applied, dead
// letters, the fence) and migrations.
package sqlgen
