package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	dsn := filepath.Join(t.TempDir(), "t.db")
	for want := 1; want <= 2; want++ {
		out, err := run(dsn)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out, "row "+string(rune('0'+want))+": hello from ") {
			t.Fatalf("run %d: %q", want, out)
		}
	}
}
