package sqlite

import (
	"context"
	"database/sql"
)

// stmtCacheSize bounds the statements kept prepared across batches: a
// table's statements come in a dozen texts (an operation's, and the
// multi-row inserts of the sizes groupRows picks), so this holds those of
// a few dozen tables written at once.
const stmtCacheSize = 256

// stmtCache keeps statements of the write connection prepared across
// batches, where a batch's transaction would otherwise parse its
// statements anew: parsing a multi-row INSERT of 500 rows took a sixth of
// a batch's time. A batch's transaction holds the one write connection,
// so a statement it misses is prepared on its transaction and remembered,
// and prepared for good after the transaction ends (fill). Its methods
// are called under Store.writeMu only.
type stmtCache struct {
	db     *sql.DB
	stmts  map[string]*sql.Stmt
	order  []string // the texts in stmts, the oldest first
	missed []string
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, stmts: make(map[string]*sql.Stmt)}
}

// get returns the statement prepared for text, nil if there is none yet.
func (c *stmtCache) get(text string) *sql.Stmt {
	return c.stmts[text]
}

// on returns the statement for text on tx: the one kept prepared, or else
// prepared on tx now and noted for fill.
func (c *stmtCache) on(ctx context.Context, tx *sql.Tx, text string) (*sql.Stmt, error) {
	if kept := c.get(text); kept != nil {
		return tx.StmtContext(ctx, kept), nil
	}
	st, err := tx.PrepareContext(ctx, text)
	if err != nil {
		return nil, err
	}
	c.miss(text)
	return st, nil
}

// miss notes that a batch prepared text itself, for fill.
func (c *stmtCache) miss(text string) {
	c.missed = append(c.missed, text)
}

// fill prepares what batches missed, once the write connection is free.
// A statement that does not prepare (its table is gone) is left out: the
// next batch that needs it prepares it on its transaction and meets the
// error there.
func (c *stmtCache) fill(ctx context.Context) {
	for _, text := range c.missed {
		if _, ok := c.stmts[text]; ok {
			continue
		}
		st, err := c.db.PrepareContext(ctx, text)
		if err != nil {
			continue
		}
		if len(c.order) == stmtCacheSize {
			c.stmts[c.order[0]].Close()
			delete(c.stmts, c.order[0])
			c.order = c.order[1:]
		}
		c.stmts[text] = st
		c.order = append(c.order, text)
	}
	c.missed = c.missed[:0]
}

// reset closes every statement: the schema changed, or the store closes.
func (c *stmtCache) reset() {
	for _, st := range c.stmts {
		st.Close()
	}
	clear(c.stmts)
	c.order, c.missed = nil, nil
}
