package telemetry_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/spoolgw/spool/internal/store/sqlite"
	"github.com/spoolgw/spool/internal/telemetry"
)

// Example wires a telemetry lane the way spool serve does: a store that
// implements telemetry.Inserter, the catalog's tables, the routes on the
// HTTP mux; Start after the store is open, Stop after HTTP intake stopped
// and before the store closes.
func Example() {
	dir, _ := os.MkdirTemp("", "spool-example-")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "spool.db"), nil)
	if err != nil {
		panic(err)
	}
	defer st.Close()
	if err := st.Exec(ctx, `create table readings (id uuid primary key, sensor text not null, value real,
		taken_at timestamptz not null default current_timestamp)`); err != nil {
		panic(err)
	}
	cat, _ := st.Catalog(ctx)

	lanes, _ := telemetry.ParseLanes("readings:20000") // --telemetry-table readings:20000
	tel, err := telemetry.New(telemetry.Config{
		Lanes:    lanes,
		Tables:   cat.Table, // spool serve passes gw.Table
		Inserter: st,
		Dir:      filepath.Join(dir, "telemetry"),
	})
	if err != nil {
		panic(err)
	}
	if err := tel.Start(ctx); err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	tel.Routes(mux)
	srv := httptest.NewServer(mux)

	res, err := http.Post(srv.URL+"/v1/ingest/readings", "application/x-ndjson",
		strings.NewReader("{\"sensor\":\"t1\",\"value\":21.5}\n{\"sensor\":\"t2\",\"value\":19.0}\n"))
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	fmt.Print(res.StatusCode, " ", string(body))

	srv.Close()
	tel.Stop() // flushes the ring into the table
	ls := tel.Status()[0]
	fmt.Println(ls.Table, "rows written:", ls.Writer.RowsWritten)
	// Output:
	// 202 {"accepted":2,"dropped":0}
	// readings rows written: 2
}
