package jsonval

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

// decodeStd decodes one value as encoding/json does into an any with
// UseNumber: what Read must give.
func decodeStd(s string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

func read(s string) (any, error) {
	return Read(jsontext.NewDecoder(strings.NewReader(s)))
}

// Read gives what encoding/json gives for every kind of value.
func TestReadMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		`null`, `true`, `false`, `0`, `-1.5e300`, `9007199254740993`, `""`, `"a\"\\\u00e9\u2028"`,
		`[]`, `{}`, `[1,"x",null,true,{"a":[{}]}]`, `{"":1,"k":{"n":[1,2,[3]]},"s":"v"}`,
		` { "spaced" : [ 1 , 2 ] } `,
	} {
		want, err := decodeStd(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := read(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %#v, want %#v", s, got, want)
		}
	}
}

// Read fails on what is not JSON.
func TestReadRefuses(t *testing.T) {
	t.Parallel()
	for _, s := range []string{``, `{`, `[1,`, `{"a":}`, `{"a" 1}`, `tru`, `"\x"`, `{1:2}`} {
		if v, err := read(s); err == nil {
			t.Errorf("%q read as %#v without an error", s, v)
		}
	}
}

// FuzzRead: what encoding/json reads, Read reads the same from what
// encoding/json writes of it; nothing panics.
func FuzzRead(f *testing.F) {
	for _, s := range []string{`{"a":[1,"x",null,true,{"b":-2.5e-7}]}`, `"\u00e9\ud83d\ude00"`, `[[],{}]`, `12345678901234567890`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		read(s) //nolint:errcheck // any input: it must not panic
		v, err := decodeStd(s)
		if err != nil {
			return
		}
		p, err := json.Marshal(v)
		if err != nil {
			t.Skip("encoding/json cannot write it back:", err)
		}
		want, err := decodeStd(string(p))
		if err != nil {
			t.Fatalf("encoding/json cannot read %s back: %v", p, err)
		}
		got, err := read(string(p))
		if err != nil {
			t.Fatalf("Read(%s): %v", p, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Read(%s): got %#v, want %#v", p, got, want)
		}
	})
}

// BenchmarkRows reads a telemetry batch, 500 rows of NDJSON, with Read and
// with encoding/json's Decoder, its floor until now.
func BenchmarkRows(b *testing.B) {
	var body bytes.Buffer
	for i := range 500 {
		fmt.Fprintf(&body, `{"station":"station-%d","taken_at":"2026-12-06T21:00:00.%06dZ","temp_c":%d.5,"humidity":%d.25}`+"\n", i%50, i, i%40, i%100)
	}
	b.Run("reader=jsonval", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			dec := jsontext.NewDecoder(bytes.NewReader(body.Bytes()), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
			for n := 0; ; n++ {
				if _, err := Read(dec); errors.Is(err, io.EOF) {
					if n != 500 {
						b.Fatalf("%d rows", n)
					}
					break
				} else if err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("reader=encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			dec := json.NewDecoder(bufio.NewReader(bytes.NewReader(body.Bytes())))
			dec.UseNumber()
			for n := 0; ; n++ {
				var v any
				if err := dec.Decode(&v); errors.Is(err, io.EOF) {
					if n != 500 {
						b.Fatalf("%d rows", n)
					}
					break
				} else if err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
