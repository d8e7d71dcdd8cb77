package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tickbox-fw/tickbox/services/ctl/hub"
)

// fakeSource answers as a hub would, from canned replies.
type fakeSource struct {
	mu       sync.Mutex
	services []string
	down     map[string]string // service -> connect error
	replies  map[string]func(args map[string]any) (hub.Reply, error)
	calls    []string
}

func newFake(services ...string) *fakeSource {
	return &fakeSource{services: services, down: map[string]string{}, replies: map[string]func(map[string]any) (hub.Reply, error){}}
}

// set makes service answer command with result 0 and args.
func (f *fakeSource) set(service, command string, args any) {
	b, err := json.Marshal(args)
	if err != nil {
		panic(err)
	}
	f.setRaw(service, command, hub.Reply{Arguments: b})
}

func (f *fakeSource) setRaw(service, command string, r hub.Reply) {
	f.setFunc(service, command, func(map[string]any) (hub.Reply, error) { return r, nil })
}

func (f *fakeSource) setFunc(service, command string, fn func(map[string]any) (hub.Reply, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies[service+" "+command] = fn
}

func (f *fakeSource) setDown(service, why string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if why == "" {
		delete(f.down, service)
	} else {
		f.down[service] = why
	}
}

func (f *fakeSource) Services() []string { return f.services }

func (f *fakeSource) ServicesGet(ctx context.Context) []hub.ServiceState {
	var out []hub.ServiceState
	for _, s := range f.services {
		st := hub.ServiceState{Service: s, Socket: "/run/" + s + "/control.sock"}
		if _, err := f.Command(ctx, s, "status-get", nil); err != nil {
			st.Error = err.Error()
		} else {
			st.Up, st.PID, st.Uptime, st.Version = true, 100, 3723, "v1.2.3"
			st.Status = map[string]any{"pid": 100.0, "uptime": 3723.0}
		}
		out = append(out, st)
	}
	return out
}

func (f *fakeSource) Command(ctx context.Context, service, command string, args map[string]any) (hub.Reply, error) {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf("%s %s %v", service, command, args))
	why, isDown := f.down[service]
	fn := f.replies[service+" "+command]
	f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return hub.Reply{}, err
	}
	if isDown {
		return hub.Reply{}, fmt.Errorf("%s: dial unix /run/%s/control.sock: %s", service, service, why)
	}
	if command == "status-get" && fn == nil {
		return hub.Reply{Arguments: json.RawMessage(`{"pid":100,"uptime":3723}`)}, nil
	}
	if fn == nil {
		return hub.Reply{Result: 2, Text: "'" + command + "' command not supported."}, nil
	}
	return fn(args)
}

func (f *fakeSource) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

var errHung = errors.New("hung")

// healthy is a fake of a box whose four daemons all answer.
func healthy() *fakeSource {
	f := newFake("ptpd", "mctpd", "mdiod", "appliance")
	f.set("ptpd", "instances-get", map[string]any{"instances": []any{
		map[string]any{"name": "ptp1", "module": "ptp", "state": "slave", "selected": true, "offset-ns": -12.5, "freq-adj-ppb": 1204.113, "path-delay-ns": 512.0, "master": "0011:22ff:fe33:4455", "alarms": []any{}},
		map[string]any{"name": "ntp1", "module": "ntp", "state": "listening", "selected": false, "offset-ns": 0.0, "freq-adj-ppb": 0.0, "path-delay-ns": 0.0, "master": "", "alarms": []any{"no-sync"}},
	}})
	f.set("mctpd", "endpoints-get", map[string]any{"eid": 8, "uuid": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "bridge": false,
		"bindings": []any{map[string]any{"name": "serial:/dev/ttyS1", "mtu": 64, "default": true, "forward-to": ""}}, "types": []any{0, 5}})
	f.set("mctpd", "routes-get", map[string]any{"local": 8, "routes": []any{
		map[string]any{"first": 9, "last": 20, "binding": "serial:/dev/ttyS1", "default": false},
		map[string]any{"first": 0, "last": 255, "binding": "serial:/dev/ttyS1", "default": true},
	}})
	f.set("mctpd", "stats-get", map[string]any{
		"mctp":  map[string]any{"packets-in": 10, "packets-out": 11, "messages-in": 4, "messages-out": 5, "packets-forwarded": 0, "send-waits": 0, "drops": map[string]any{"bad-header": 2, "no-route": 1}, "bindings": map[string]any{}},
		"demux": map[string]any{"in": 5, "out": 4, "delivered": 4, "drop-short": 0, "drop-no-client": 3, "overflows": 0, "clients": map[string]any{}},
	})
	f.set("mdiod", "hw-info-get", map[string]any{"ports": []any{
		map[string]any{"port": "A", "phy": 1, "backend": "sim:88e1512", "phy_id": "0x01410dd1"},
		map[string]any{"port": "B", "phy": 2, "backend": "sim:generic100", "phy_id": "0x20005c90"},
	}})
	f.set("mdiod", "links-get", map[string]any{"ports": []any{
		map[string]any{"port": "A", "phy": 1, "link": true, "speed": 1000, "duplex": "full", "changes": 1},
		map[string]any{"port": "B", "phy": 2, "link": false, "speed": 0, "duplex": "half", "changes": 0},
	}, "events": 1})
	f.setFunc("mdiod", "phy_status", func(args map[string]any) (hub.Reply, error) {
		st := map[string]any{"link": false, "speed": 0, "duplex": "half", "role": ""}
		if args["phy"] == int64(1) {
			st = map[string]any{"link": true, "speed": 1000, "duplex": "full", "role": "master", "autoneg": true}
		}
		b, _ := json.Marshal(st)
		return hub.Reply{Arguments: b}, nil
	})
	f.set("mdiod", "events-get", map[string]any{"events": []any{
		map[string]any{"seq": 1, "time": "2026-01-02T03:04:05Z", "port": "A", "link": true, "msg": "link up 1000MBit (master)"},
	}, "last-seq": 1})
	f.set("appliance", "events-get", map[string]any{"events": []any{
		map[string]any{"id": 1, "time": "2026-01-02T03:04:06Z", "kind": "insert", "interface": "eth0", "index": 2, "state": "up", "delivery": map[string]any{"/run/ptpd/control": "sent"}},
	}})
	return f
}

// clock is a settable clock for the history.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
