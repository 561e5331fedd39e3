package txn

import "testing"

func TestLSN(t *testing.T) {
	t.Parallel()
	cases := map[string]LSN{"0/0": 0, "0/1": 1, "16/B374D848": 0x16B374D848, "FFFFFFFF/FFFFFFFF": ^LSN(0), "1/0": 1 << 32}
	for s, want := range cases {
		got, err := ParseLSN(s)
		if err != nil || got != want {
			t.Errorf("ParseLSN(%q) = %v, %v; want %v", s, got, err, want)
		}
		if got.String() != s {
			t.Errorf("%v.String() = %q, want %q", want, got.String(), s)
		}
	}
	for _, bad := range []string{"", "/", "1/", "/1", "0x1/2", "1/2/3", "100000000/0", "G/0", "-1/0", "1 /0"} {
		if _, err := ParseLSN(bad); err == nil {
			t.Errorf("ParseLSN(%q) succeeded", bad)
		}
	}
	a, _ := ParseLSN("0/FFFFFFFF")
	b, _ := ParseLSN("1/0")
	if a.Compare(b) != -1 || b.Compare(a) != 1 || a.Compare(a) != 0 {
		t.Error("0/FFFFFFFF must sort before 1/0")
	}
}

func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF", "1/", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLSN(s)
		if err != nil {
			return
		}
		back, err := ParseLSN(l.String())
		if err != nil || back != l {
			t.Fatalf("%q → %v → %q → %v, %v", s, l, l.String(), back, err)
		}
	})
}

func TestStateReached(t *testing.T) {
	t.Parallel()
	cases := []struct {
		s, want State
		ok      bool
	}{
		{Queued, Queued, true}, {Queued, Applied, false}, {Applied, Applied, true},
		{Replicated, Applied, true}, {Applied, Replicated, false}, {Failed, Replicated, true},
		{Replicated, Failed, false},
	}
	for _, c := range cases {
		if got := c.s.Reached(c.want); got != c.ok {
			t.Errorf("%s.Reached(%s) = %v, want %v", c.s, c.want, got, c.ok)
		}
	}
}
