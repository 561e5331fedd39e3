package main

import "testing"

func TestParseCommandStats(t *testing.T) {
	info := "# Commandstats\r\n" +
		"cmdstat_xack:calls=4,usec=20,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_evalsha:calls=2,usec=300,usec_per_call=150.00,rejected_calls=0,failed_calls=1\r\n"
	got, err := parseCommandStats(info)
	if err != nil {
		t.Fatal(err)
	}
	want := redisCommands{"xack": {calls: 4, usec: 20}, "evalsha": {calls: 2, usec: 300}}
	if len(got) != len(want) || got["xack"] != want["xack"] || got["evalsha"] != want["evalsha"] {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, err := parseCommandStats("cmdstat_get:calls=x,usec=1\r\n"); err == nil {
		t.Fatal("a count that is not a number parsed")
	}
}
