package sqlite

import (
	"context"
	"errors"
	"fmt"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// classify decides, once and by result code, whether an error from running
// an operation is permanent (retrying cannot fix it: the transaction is
// dead-lettered) and returns SQLite's name for the code. Everything that is
// not an SQLite error (a cancelled context, a closed database or connection)
// is transient, and so is every SQLite code that speaks of the database or
// the machine rather than of the operation: busy, locked, I/O, full,
// cannot open, protocol, interrupted, out of memory, read-only, corrupt.
func classify(ctx context.Context, err error) (code string, permanent bool) {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "", false
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return "", false
	}
	code = codeName(se.Code())
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_CONSTRAINT, // unique, not null, foreign key, check, …
		sqlite3.SQLITE_MISMATCH, // datatype mismatch (STRICT tables, rowid)
		sqlite3.SQLITE_TOOBIG,   // a value over the length limit
		sqlite3.SQLITE_RANGE,    // a bind index out of range: the statement and the values disagree
		sqlite3.SQLITE_ERROR:    // SQL error: no such table or column (the schema changed), generated column, …
		return code, true
	}
	return code, false
}

// codeNames names the result codes; extended codes not listed here are
// named by their primary code.
var codeNames = map[int]string{
	sqlite3.SQLITE_ERROR:                 "SQLITE_ERROR",
	sqlite3.SQLITE_INTERNAL:              "SQLITE_INTERNAL",
	sqlite3.SQLITE_PERM:                  "SQLITE_PERM",
	sqlite3.SQLITE_ABORT:                 "SQLITE_ABORT",
	sqlite3.SQLITE_BUSY:                  "SQLITE_BUSY",
	sqlite3.SQLITE_LOCKED:                "SQLITE_LOCKED",
	sqlite3.SQLITE_NOMEM:                 "SQLITE_NOMEM",
	sqlite3.SQLITE_READONLY:              "SQLITE_READONLY",
	sqlite3.SQLITE_INTERRUPT:             "SQLITE_INTERRUPT",
	sqlite3.SQLITE_IOERR:                 "SQLITE_IOERR",
	sqlite3.SQLITE_CORRUPT:               "SQLITE_CORRUPT",
	sqlite3.SQLITE_NOTFOUND:              "SQLITE_NOTFOUND",
	sqlite3.SQLITE_FULL:                  "SQLITE_FULL",
	sqlite3.SQLITE_CANTOPEN:              "SQLITE_CANTOPEN",
	sqlite3.SQLITE_PROTOCOL:              "SQLITE_PROTOCOL",
	sqlite3.SQLITE_EMPTY:                 "SQLITE_EMPTY",
	sqlite3.SQLITE_SCHEMA:                "SQLITE_SCHEMA",
	sqlite3.SQLITE_TOOBIG:                "SQLITE_TOOBIG",
	sqlite3.SQLITE_CONSTRAINT:            "SQLITE_CONSTRAINT",
	sqlite3.SQLITE_MISMATCH:              "SQLITE_MISMATCH",
	sqlite3.SQLITE_MISUSE:                "SQLITE_MISUSE",
	sqlite3.SQLITE_NOLFS:                 "SQLITE_NOLFS",
	sqlite3.SQLITE_AUTH:                  "SQLITE_AUTH",
	sqlite3.SQLITE_FORMAT:                "SQLITE_FORMAT",
	sqlite3.SQLITE_RANGE:                 "SQLITE_RANGE",
	sqlite3.SQLITE_NOTADB:                "SQLITE_NOTADB",
	sqlite3.SQLITE_CONSTRAINT_CHECK:      "SQLITE_CONSTRAINT_CHECK",
	sqlite3.SQLITE_CONSTRAINT_COMMITHOOK: "SQLITE_CONSTRAINT_COMMITHOOK",
	sqlite3.SQLITE_CONSTRAINT_DATATYPE:   "SQLITE_CONSTRAINT_DATATYPE",
	sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY: "SQLITE_CONSTRAINT_FOREIGNKEY",
	sqlite3.SQLITE_CONSTRAINT_FUNCTION:   "SQLITE_CONSTRAINT_FUNCTION",
	sqlite3.SQLITE_CONSTRAINT_NOTNULL:    "SQLITE_CONSTRAINT_NOTNULL",
	sqlite3.SQLITE_CONSTRAINT_PINNED:     "SQLITE_CONSTRAINT_PINNED",
	sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY: "SQLITE_CONSTRAINT_PRIMARYKEY",
	sqlite3.SQLITE_CONSTRAINT_ROWID:      "SQLITE_CONSTRAINT_ROWID",
	sqlite3.SQLITE_CONSTRAINT_TRIGGER:    "SQLITE_CONSTRAINT_TRIGGER",
	sqlite3.SQLITE_CONSTRAINT_UNIQUE:     "SQLITE_CONSTRAINT_UNIQUE",
	sqlite3.SQLITE_CONSTRAINT_VTAB:       "SQLITE_CONSTRAINT_VTAB",
}

func codeName(code int) string {
	if n, ok := codeNames[code]; ok {
		return n
	}
	if n, ok := codeNames[code&0xff]; ok {
		return n
	}
	return fmt.Sprintf("SQLITE_%d", code)
}

// IsTransient reports whether err, from InsertRows or any statement, is
// one that retrying later can fix (busy, locked, I/O, full, closed,
// cancelled), decided by SQLite's result code as classify does.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	_, permanent := classify(context.Background(), err)
	return !permanent
}
