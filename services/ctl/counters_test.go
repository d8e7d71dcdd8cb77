package ctl

import (
	"context"
	"reflect"
	"testing"
)

func TestRequestCounters(t *testing.T) {
	ctx := context.Background()
	d := NewRegistry(Options{Name: "testd"})
	d.MustRegister(
		&Command{Name: "ok", Handler: func(context.Context, *Call) Result { return OK("", nil) }},
		&Command{Name: "busy", Handler: func(context.Context, *Call) Result { return Result{Code: Conflict} }},
		&Command{Name: "odd", Handler: func(context.Context, *Call) Result { return Result{Code: 42} }},
		&Command{Name: "num", Params: []Param{{Name: "n", Type: Int, Required: true}},
			Handler: func(context.Context, *Call) Result { return OK("", nil) }},
	)
	steps := []struct {
		front Front
		name  string
		in    Input
	}{
		{FrontKea, "ok", Input{}},
		{FrontKea, "ok", Input{}},
		{FrontKea, "nosuch", Input{}},
		{FrontIPC, "num", Input{Named: map[string]any{"n": "x"}}}, // bind error
		{FrontIPC, "busy", Input{}},
		{FrontConsole, "odd", Input{}},
		{FrontInternal, "ok", Input{}},
		{Front(200), "ok", Input{}}, // out of range: counted as internal
	}
	for _, s := range steps {
		in := s.in
		in.Front = s.front
		d.Invoke(ctx, s.name, in, nil)
	}
	d.Count(FrontDgram, Unsupported)
	want := map[string]map[string]uint64{
		"kea":      {"success": 2, "error": 0, "unsupported": 1},
		"ipc":      {"success": 0, "error": 1, "conflict": 1},
		"console":  {"success": 0, "error": 0, "other": 1},
		"internal": {"success": 2, "error": 0},
		"dgram":    {"success": 0, "error": 0, "unsupported": 1},
	}
	if got := d.Requests(); !reflect.DeepEqual(got, want) {
		t.Errorf("Requests() = %v\nwant %v", got, want)
	}
	st := d.Status()
	if !reflect.DeepEqual(st["requests"], want) {
		t.Errorf("status-get requests = %v", st["requests"])
	}
	// No server runs this registry: no connection counts.
	if _, ok := st["connections"]; ok {
		t.Errorf("status-get reports connections without a server: %v", st)
	}
}

func TestCodeAndFrontNames(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{Success.String(), "success"},
		{Error.String(), "error"},
		{Unsupported.String(), "unsupported"},
		{Empty.String(), "empty"},
		{Conflict.String(), "conflict"},
		{Code(-1).String(), "other"},
		{Code(5).String(), "other"},
		{FrontKea.String(), "kea"},
		{FrontHTTP.String(), "http"},
		{FrontIPC.String(), "ipc"},
		{FrontDgram.String(), "dgram"},
		{FrontConsole.String(), "console"},
		{FrontInternal.String(), "internal"},
		{Front(99).String(), "unknown"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// BenchmarkRunCounted measures Run with its request count, the hot path
// every front end takes.
func BenchmarkRunCounted(b *testing.B) {
	d := NewRegistry(Options{Name: "testd"})
	c := &Command{Name: "ok", Handler: func(context.Context, *Call) Result { return OK("", nil) }}
	d.MustRegister(c)
	ctx := context.Background()
	in := Input{Front: FrontKea}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d.Run(ctx, c, in, nil)
		}
	})
}

// BenchmarkCount measures the request count alone.
func BenchmarkCount(b *testing.B) {
	d := NewRegistry(Options{Name: "testd"})
	b.ReportAllocs()
	for b.Loop() {
		d.Count(FrontKea, Success)
	}
}
