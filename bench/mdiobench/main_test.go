package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the program when run() starts
// its echo servers, which it does by executing itself with -role.
func TestMain(m *testing.M) {
	if len(os.Args) == 5 && os.Args[1] == "-role" && os.Args[3] == "-sock" {
		serveRole(os.Args[2], os.Args[4])
		return
	}
	os.Exit(m.Run())
}

// TestQuick runs the benchmark briefly: it builds and starts mdiod,
// checks every reply and prints the table.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds mdiod")
	}
	var out bytes.Buffer
	rep, err := run(150*time.Millisecond, &out)
	if err != nil {
		t.Fatal(err)
	}
	if rep.mdiodRate <= 0 || rep.echoRate <= 0 || rep.batchedRate <= 0 || rep.mdiod8Rate <= 0 || rep.rssIdle <= 0 {
		t.Errorf("empty figures: %+v", rep)
	}
	if !strings.Contains(out.String(), "| pipelined mdio_read, 1 connection |") {
		t.Errorf("no table:\n%s", out.String())
	}
}
