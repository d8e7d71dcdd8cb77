package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// mdioRead is a representative schema: required ranged ints, an optional
// int with a default.
func mdioRead(got *Args) *Command {
	return &Command{
		Name:    "mdio_read",
		Comment: "read a PHY register",
		Params: []Param{
			{Name: "phy", Type: Int, Required: true, Ranged: true, Min: 1, Max: 3},
			{Name: "address", Type: Int, Required: true, Ranged: true, Min: 0, Max: 31},
			{Name: "page", Type: Int, Default: int64(-1), Ranged: true, Min: -1, Max: 255},
		},
		Handler: func(_ context.Context, c *Call) Result {
			*got = c.Args
			return OK("", map[string]any{"result": 31049})
		},
	}
}

func TestParamBinding(t *testing.T) {
	tests := []struct {
		name    string
		in      Input
		wantErr string // substring; "" means success
		phy     int64
		addr    int64
		page    int64
		given   bool // page given
	}{
		{name: "positional", in: Input{Positional: []string{"1", "1"}}, phy: 1, addr: 1, page: -1},
		{name: "hex", in: Input{Positional: []string{"0x3", "0x1f", "0x10"}}, phy: 3, addr: 31, page: 16, given: true},
		{name: "named strings", in: Input{Named: map[string]any{"phy": "2", "address": "0x01"}}, phy: 2, addr: 1, page: -1},
		{name: "json numbers", in: Input{Named: map[string]any{"phy": json.Number("1"), "address": json.Number("4"), "page": json.Number("0")}}, phy: 1, addr: 4, page: 0, given: true},
		{name: "mixed", in: Input{Positional: []string{"1"}, Named: map[string]any{"address": "2"}}, phy: 1, addr: 2, page: -1},
		{name: "missing", in: Input{Positional: []string{"1"}}, wantErr: "parameter 'address' is missing"},
		{name: "missing all", in: Input{}, wantErr: "parameter 'phy' is missing"},
		{name: "out of range", in: Input{Positional: []string{"4", "1"}}, wantErr: "parameter 'phy' out of range: 4 not in 1..3"},
		{name: "negative out of range", in: Input{Positional: []string{"1", "-1"}}, wantErr: "parameter 'address' out of range"},
		{name: "not a number", in: Input{Positional: []string{"one", "1"}}, wantErr: `parameter 'phy' must be an integer, got "one"`},
		{name: "float for int", in: Input{Named: map[string]any{"phy": json.Number("1.5"), "address": json.Number("1")}}, wantErr: "parameter 'phy' must be an integer"},
		{name: "string type for int json", in: Input{Named: map[string]any{"phy": true, "address": json.Number("1")}}, wantErr: "parameter 'phy' must be an integer, got boolean"},
		{name: "too big", in: Input{Positional: []string{"99999999999999999999", "1"}}, wantErr: "does not fit in 64 bits"},
		{name: "extra positional", in: Input{Positional: []string{"1", "1", "0", "7"}}, wantErr: `unexpected parameter "7": takes at most 3`},
		{name: "extra named", in: Input{Positional: []string{"1", "1"}, Named: map[string]any{"bogus": "1"}}, wantErr: "parameter 'bogus' is not supported"},
		{name: "given twice", in: Input{Positional: []string{"1", "1"}, Named: map[string]any{"phy": "1"}}, wantErr: "parameter 'phy' is given twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRegistry(Options{Logger: quietLogger()})
			var got Args
			r.MustRegister(mdioRead(&got))
			res := r.Invoke(context.Background(), "mdio_read", tc.in, nil)
			if tc.wantErr != "" {
				if res.Code != Error || !strings.Contains(res.Text, tc.wantErr) {
					t.Fatalf("got %+v, want error containing %q", res, tc.wantErr)
				}
				if got.cmd != nil {
					t.Fatal("handler ran on invalid input")
				}
				return
			}
			if res.Code != Success {
				t.Fatalf("got %+v", res)
			}
			if got.Int("phy") != tc.phy || got.Int("address") != tc.addr || got.Int("page") != tc.page {
				t.Fatalf("phy=%d address=%d page=%d", got.Int("phy"), got.Int("address"), got.Int("page"))
			}
			if got.Given("page") != tc.given {
				t.Fatalf("Given(page)=%v want %v", got.Given("page"), tc.given)
			}
		})
	}
}

func TestParamTypes(t *testing.T) {
	tests := []struct {
		p       Param
		raw     any
		want    any
		wantErr string
	}{
		{Param{Name: "b", Type: Bool}, "yes", true, ""},
		{Param{Name: "b", Type: Bool}, "OFF", false, ""},
		{Param{Name: "b", Type: Bool}, true, true, ""},
		{Param{Name: "b", Type: Bool}, json.Number("1"), true, ""},
		{Param{Name: "b", Type: Bool}, "maybe", nil, "must be a boolean"},
		{Param{Name: "f", Type: Float}, "0.25", 0.25, ""},
		{Param{Name: "f", Type: Float}, json.Number("-3e2"), -300.0, ""},
		{Param{Name: "f", Type: Float}, "NaN", nil, "must be a number"},
		{Param{Name: "f", Type: Float, Ranged: true, Min: 0, Max: 1}, "1.5", nil, "out of range: 1.5 not in 0..1"},
		{Param{Name: "s", Type: String}, "abc", "abc", ""},
		{Param{Name: "s", Type: String}, json.Number("12"), "12", ""},
		{Param{Name: "s", Type: String}, map[string]any{}, nil, "must be a string, got map"},
		{Param{Name: "s", Type: String, Ranged: true, Max: 3}, "abcd", nil, "too long: 4 bytes, at most 3"},
		{Param{Name: "s", Type: String, Choices: []string{"local", "ptp"}}, "pps", nil, "must be one of local|ptp"},
		{Param{Name: "s", Type: String, Choices: []string{"local", "ptp"}}, "ptp", "ptp", ""},
		{Param{Name: "i", Type: Int}, "-0x10", int64(-16), ""},
		{Param{Name: "i", Type: Int}, "0b101", int64(5), ""},
		{Param{Name: "i", Type: Int}, " 42 ", int64(42), ""},
		{Param{Name: "i", Type: Int}, []any{}, nil, "must be an integer, got list"},
	}
	for _, tc := range tests {
		got, err := tc.p.Convert(tc.raw)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s %v: err %v, want %q", tc.p.Type, tc.raw, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s %v: got %#v, %v; want %#v", tc.p.Type, tc.raw, got, err, tc.want)
		}
	}
}

func TestRestParam(t *testing.T) {
	r := NewRegistry(Options{Logger: quietLogger()})
	var got Args
	r.MustRegister(&Command{
		Name: "block_clock",
		Params: []Param{
			{Name: "block", Type: Bool, Required: true},
			{Name: "clocks", Type: String, Rest: true},
		},
		Handler: func(_ context.Context, c *Call) Result { got = c.Args; return OK("", nil) },
	})
	res := r.Invoke(context.Background(), "block_clock", Input{Positional: []string{"1", "phc0", "system"}}, nil)
	if res.Code != Success || !got.Bool("block") || !reflect.DeepEqual(got.Rest(), []string{"phc0", "system"}) {
		t.Fatalf("res %+v rest %v", res, got.Rest())
	}
	res = r.Invoke(context.Background(), "block_clock", Input{Named: map[string]any{"block": false, "clocks": []any{"a", json.Number("2")}}}, nil)
	if res.Code != Success || got.Bool("block") || !reflect.DeepEqual(got.Rest(), []string{"a", "2"}) {
		t.Fatalf("res %+v rest %v", res, got.Rest())
	}
	res = r.Invoke(context.Background(), "block_clock", Input{Named: map[string]any{"block": true, "clocks": map[string]any{}}}, nil)
	if res.Code != Error || !strings.Contains(res.Text, "parameter 'clocks' must be a list of strings") {
		t.Fatalf("res %+v", res)
	}
}

func TestRegisterRules(t *testing.T) {
	h := func(context.Context, *Call) Result { return OK("", nil) }
	tests := []struct {
		name    string
		cmd     *Command
		wantErr string
	}{
		{"ok", &Command{Name: "x", Handler: h}, ""},
		{"nil handler", &Command{Name: "y"}, "nil handler"},
		{"empty name", &Command{Handler: h}, "no name"},
		{"space in name", &Command{Name: "a b", Handler: h}, "reserved character"},
		{"equals in name", &Command{Name: "a=b", Handler: h}, "reserved character"},
		{"bad alias", &Command{Name: "ok", Aliases: []string{"a b"}, Handler: h}, "reserved character"},
		{"alias clashes", &Command{Name: "ok", Aliases: []string{"list-commands"}, Handler: h}, "already registered"},
		{"alias repeats name", &Command{Name: "ok", Aliases: []string{"ok"}, Handler: h}, "already registered"},
		{"duplicate", &Command{Name: "list-commands", Handler: h}, "already registered"},
		{"dup param", &Command{Name: "z", Handler: h, Params: []Param{{Name: "a"}, {Name: "a"}}}, "duplicate name"},
		{"rest not last", &Command{Name: "z", Handler: h, Params: []Param{{Name: "a", Rest: true}, {Name: "b"}}}, "must be last"},
		{"bad default", &Command{Name: "z", Handler: h, Params: []Param{{Name: "a", Type: Int, Default: "x"}}}, "default of \"a\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRegistry(Options{Logger: quietLogger()})
			err := r.Register(tc.cmd)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if err := r.Register(tc.cmd); !errors.Is(err, ErrDuplicate) {
					t.Fatalf("second register: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestListCommands(t *testing.T) {
	r := NewRegistry(Options{Logger: quietLogger()})
	h := func(context.Context, *Call) Result { return OK("", nil) }
	r.MustRegister(&Command{Name: "zeta", Handler: h}, &Command{Name: "alpha", Handler: h}, &Command{Name: "mid", Handler: h})
	res := r.Invoke(context.Background(), "list-commands", Input{}, nil)
	// Every registry lists the common commands next to its own.
	want := []any{"alpha", "build-report", "commands-get", "config-get", "list-commands", "mid", "shutdown", "status-get", "version-get", "zeta"}
	if res.Code != Success || !reflect.DeepEqual(res.Args, want) {
		t.Fatalf("got %+v", res)
	}
	if err := r.Deregister("list-commands"); !errors.Is(err, ErrBuiltin) {
		t.Fatalf("deregister list-commands: %v", err)
	}
	if err := r.Deregister("mid"); err != nil {
		t.Fatal(err)
	}
	if err := r.Deregister("mid"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deregister twice: %v", err)
	}
	res = r.Invoke(context.Background(), "mid", Input{}, nil)
	if res.Code != Unsupported || res.Text != "'mid' command not supported." {
		t.Fatalf("got %+v", res)
	}
	names := r.Names()
	if !sort.StringsAreSorted(names) || len(names) != len(want)-1 {
		t.Fatalf("names %v", names)
	}
}

func TestDaemonCommands(t *testing.T) {
	d := NewRegistry(Options{
		Name:    "testd",
		Version: "1.2.3",
		Logger:  quietLogger(),
		Config:  func() any { return map[string]any{"interface": "eth0"} },
		Status:  func() map[string]any { return map[string]any{"instances": 2} },
	})
	ctx := context.Background()
	res := d.Invoke(ctx, "version-get", Input{}, nil)
	ext, _ := res.Args.(map[string]any)["extended"].(string)
	if res.Code != Success || res.Text != "1.2.3" || !strings.Contains(ext, "go: go1.") || !strings.Contains(ext, "testd 1.2.3") {
		t.Fatalf("version-get %+v", res)
	}
	res = d.Invoke(ctx, "build-report", Input{}, nil)
	if res.Code != Success || !strings.Contains(res.Text, "go: ") {
		t.Fatalf("build-report %+v", res)
	}
	res = d.Invoke(ctx, "status-get", Input{}, nil)
	st := res.Args.(map[string]any)
	if st["pid"] != os.Getpid() || st["instances"] != 2 || st["uptime"] == nil || st["reload"] == nil || st["reloads"] != 0 {
		t.Fatalf("status-get %+v", st)
	}
	// goroutines is the process's count: it follows goroutines started
	// and ended here.
	g0, ok := st["goroutines"].(int)
	if !ok || g0 < 1 {
		t.Fatalf("status-get goroutines %#v", st["goroutines"])
	}
	const extra = 20
	release := make(chan struct{})
	var started sync.WaitGroup
	for range extra {
		started.Add(1)
		go func() { started.Done(); <-release }()
	}
	started.Wait()
	goroutines := func() int {
		return d.Invoke(ctx, "status-get", Input{}, nil).Args.(map[string]any)["goroutines"].(int)
	}
	// The extra ones and the test's own are running.
	if g1 := goroutines(); g1 < extra+1 {
		t.Errorf("goroutines %d with %d extra running", g1, extra)
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for g2 := goroutines(); g2 >= extra; g2 = goroutines() {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines still %d after the %d extra ended (%d before)", g2, extra, g0)
		}
		time.Sleep(10 * time.Millisecond)
	}
	res = d.Invoke(ctx, "config-get", Input{}, nil)
	if !reflect.DeepEqual(res.Args, map[string]any{"interface": "eth0"}) {
		t.Fatalf("config-get %+v", res)
	}
	select {
	case <-d.ShutdownRequested():
		t.Fatal("shutdown before request")
	default:
	}
	res = d.Invoke(ctx, "shutdown", Input{}, nil)
	if res.Code != Success || res.Text != "Shutting down." {
		t.Fatalf("shutdown %+v", res)
	}
	<-d.ShutdownRequested()
	// A second shutdown must not panic on the closed channel.
	d.Invoke(ctx, "shutdown", Input{}, nil)
	for _, n := range []string{"version-get", "status-get", "build-report", "config-get", "shutdown"} {
		if err := d.Deregister(n); !errors.Is(err, ErrBuiltin) {
			t.Errorf("deregister %s: %v", n, err)
		}
	}
}

func TestUsage(t *testing.T) {
	var a Args
	c := mdioRead(&a)
	if got, want := c.ShortUsage(), "mdio_read phy address [page] - read a PHY register"; got != want {
		t.Fatalf("short usage %q, want %q", got, want)
	}
	long := c.LongUsage()
	for _, want := range []string{"usage: mdio_read phy address [page]", "--phy=INT", "required", "range 1..3", "default -1"} {
		if !strings.Contains(long, want) {
			t.Errorf("long usage lacks %q:\n%s", want, long)
		}
	}
}

func TestAnyArgs(t *testing.T) {
	r := NewRegistry(Options{Logger: quietLogger()})
	r.MustRegister(&Command{Name: "echo", AnyArgs: true, Handler: func(_ context.Context, c *Call) Result {
		return OK("", c.Args.Any())
	}})
	res := r.Invoke(context.Background(), "echo", Input{Positional: []string{"a"}, Named: map[string]any{"n": json.Number("7"), "f": json.Number("1.5")}}, nil)
	want := map[string]any{"0": "a", "n": int64(7), "f": 1.5}
	if !reflect.DeepEqual(res.Args, want) {
		t.Fatalf("got %#v", res.Args)
	}
}

func TestAliases(t *testing.T) {
	r := NewRegistry(Options{Logger: quietLogger()})
	var got []string
	r.MustRegister(&Command{
		Name:    "selectinstance",
		Aliases: []string{"instance-select"},
		Params:  []Param{{Name: "instance", Type: String, Required: true}},
		Handler: func(_ context.Context, c *Call) Result {
			got = append(got, c.Args.String("instance"))
			return OK("", nil)
		},
	})
	ctx := context.Background()
	r.Invoke(ctx, "selectinstance", Input{Positional: []string{"ptp1"}}, nil)
	r.Invoke(ctx, "instance-select", Input{Named: map[string]any{"instance": "ptp2"}}, nil)
	if !reflect.DeepEqual(got, []string{"ptp1", "ptp2"}) {
		t.Fatalf("handler saw %v", got)
	}
	if res := r.Invoke(ctx, "instance-select", Input{}, nil); res.Code != Error || !strings.Contains(res.Text, "parameter 'instance' is missing") {
		t.Fatalf("alias does not share the schema: %+v", res)
	}
	if names := r.Names(); !reflect.DeepEqual(names, []string{"build-report", "commands-get", "config-get", "instance-select", "list-commands",
		"selectinstance", "shutdown", "status-get", "version-get"}) {
		t.Fatalf("names %v", names)
	}
	// list-commands, the six common commands and selectinstance.
	if cs := r.Commands(); len(cs) != 8 {
		t.Fatalf("Commands lists %d, want 8 (aliases once)", len(cs))
	}
	if err := r.Deregister("instance-select"); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Lookup("selectinstance"); ok {
		t.Fatal("deregistering an alias left the command's name")
	}
}

// TestIgnoreExtraArgs: Kea's common commands take any arguments and
// ignore them; a command with IgnoreExtraArgs still checks the
// parameters it has; other commands stay strict.
func TestIgnoreExtraArgs(t *testing.T) {
	d := NewRegistry(Options{Name: "testd", Version: "1.2.3", Logger: quietLogger(),
		Config: func() any { return map[string]any{"k": "v"} }})
	var seen Args
	d.MustRegister(
		&Command{Name: "lax", IgnoreExtraArgs: true, Params: []Param{{Name: "n", Type: Int}},
			Handler: func(_ context.Context, c *Call) Result { seen = c.Args; return OK("", nil) }},
		&Command{Name: "strict", Handler: func(context.Context, *Call) Result { return OK("", nil) }},
	)
	extra := Input{Positional: []string{"x", "y"}, Named: map[string]any{"bogus": json.Number("1"), "service": []any{"dhcp4"}}}
	tests := []struct {
		name    string
		cmd     string
		in      Input
		wantErr string // "" means success
		n       int64  // lax: the bound parameter
	}{
		{name: "list-commands", cmd: "list-commands", in: extra},
		{name: "version-get", cmd: "version-get", in: extra},
		{name: "build-report", cmd: "build-report", in: extra},
		{name: "status-get", cmd: "status-get", in: extra},
		{name: "config-get", cmd: "config-get", in: extra},
		{name: "config-get named only", cmd: "config-get", in: Input{Named: map[string]any{"x": nil}}},
		{name: "shutdown stays strict", cmd: "shutdown", in: Input{Named: map[string]any{"exit-value": json.Number("1")}}, wantErr: "shutdown: parameter 'exit-value' is not supported"},
		{name: "strict named", cmd: "strict", in: Input{Named: map[string]any{"x": "1"}}, wantErr: "strict: parameter 'x' is not supported"},
		{name: "strict positional", cmd: "strict", in: Input{Positional: []string{"1"}}, wantErr: `strict: unexpected parameter "1": takes at most 0`},
		{name: "lax keeps its parameter", cmd: "lax", in: Input{Named: map[string]any{"n": json.Number("7"), "bogus": 1}}, n: 7},
		{name: "lax positional then extra", cmd: "lax", in: Input{Positional: []string{"5", "6", "7"}}, n: 5},
		{name: "lax still checks its parameter", cmd: "lax", in: Input{Named: map[string]any{"n": "abc", "bogus": 1}}, wantErr: `lax: parameter 'n' must be an integer, got "abc"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			named := len(tc.in.Named)
			seen = Args{}
			res := d.Invoke(context.Background(), tc.cmd, tc.in, nil)
			if len(tc.in.Named) != named {
				t.Errorf("the caller's arguments were changed: %v", tc.in.Named)
			}
			if tc.wantErr != "" {
				if res.Code != Error || res.Text != tc.wantErr {
					t.Fatalf("got %+v, want error %q", res, tc.wantErr)
				}
				return
			}
			if res.Code != Success {
				t.Fatalf("got %+v", res)
			}
			if tc.cmd == "lax" && seen.Int("n") != tc.n {
				t.Errorf("n = %d, want %d", seen.Int("n"), tc.n)
			}
		})
	}
	if res := d.Invoke(context.Background(), "config-get", extra, nil); !reflect.DeepEqual(res.Args, map[string]any{"k": "v"}) {
		t.Errorf("config-get with extra arguments: %+v", res)
	}
}

// TestLinkVersion: the version and build time the image build links in
// win over the build information.
func TestLinkVersion(t *testing.T) {
	defer func(v, b string) { linkVersion, linkBuildTime = v, b }(linkVersion, linkBuildTime)
	linkVersion, linkBuildTime = "", ""
	if v := BuildVersion(); v == "" || strings.Contains(BuildReport("x", v), "built:") {
		t.Fatalf("without a link-time version: %q, report %q", v, BuildReport("x", v))
	}
	linkVersion, linkBuildTime = "v1.2.3-4-gabcdef0", "2026-12-07T13:00:00Z"
	if v := BuildVersion(); v != "v1.2.3-4-gabcdef0" {
		t.Fatalf("BuildVersion = %q", v)
	}
	r := NewRegistry(Options{Name: "x"})
	res := r.Invoke(context.Background(), "version-get", Input{}, nil)
	ext, _ := res.Args.(map[string]any)["extended"].(string)
	if res.Text != "v1.2.3-4-gabcdef0" || !strings.HasPrefix(ext, "x v1.2.3-4-gabcdef0\nbuilt: 2026-12-07T13:00:00Z\n") {
		t.Fatalf("version-get = %q, extended %q", res.Text, ext)
	}
}
