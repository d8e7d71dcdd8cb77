package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// The decoders below read the arguments of daemons' replies leniently:
// the arguments must be a JSON object, and every field is taken only
// when it has the expected type. A field that is missing or mistyped
// is left at its zero value; nothing a daemon sends can make the page
// fail to render.

// maxItems bounds every list taken from a reply (instances, ports,
// routes, events, counters), so a reply cannot grow the snapshot
// without bound.
const maxItems = 256

// maxText bounds every string taken from a reply.
const maxText = 512

// errNotObject is the error for arguments that are not a JSON object.
var errNotObject = errors.New("arguments are not a JSON object")

func object(raw json.RawMessage) (map[string]any, error) {
	if len(raw) == 0 {
		return nil, errors.New("no arguments")
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("arguments: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errNotObject
	}
	return m, nil
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return clip(s)
}

func clip(s string) string {
	if len(s) > maxText {
		s = strings.ToValidUTF8(s[:maxText], "") + "…"
	}
	return s
}

func num(m map[string]any, k string) (float64, bool) {
	f, ok := m[k].(float64)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

func integer(m map[string]any, k string) int64 {
	f, ok := num(m, k)
	if !ok || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0
	}
	return int64(f)
}

func boolean(m map[string]any, k string) bool {
	b, _ := m[k].(bool)
	return b
}

// objects returns the elements of the list at k that are objects.
func objects(m map[string]any, k string) []map[string]any {
	list, _ := m[k].([]any)
	var out []map[string]any
	for _, e := range list {
		if o, ok := e.(map[string]any); ok {
			out = append(out, o)
		}
	}
	return out
}

// list returns the objects of the list at k: an error when k is
// missing or not a list, none when it is null.
func list(m map[string]any, k string) ([]map[string]any, error) {
	v, ok := m[k]
	if !ok {
		return nil, fmt.Errorf("no %s list", k)
	}
	if _, isList := v.([]any); v != nil && !isList {
		return nil, fmt.Errorf("%s is not a list", k)
	}
	return last(objects(m, k)), nil
}

// last keeps the last maxItems elements.
func last[T any](s []T) []T {
	if len(s) > maxItems {
		return s[len(s)-maxItems:]
	}
	return s
}

// Instance is one ptpd sync instance, from instances-get.
type Instance struct {
	Name     string `json:"name"`
	Module   string `json:"module,omitempty"`
	State    string `json:"state"`
	Selected bool   `json:"selected"`
	// The numbers are null when the reply lacks them.
	OffsetNS    *float64 `json:"offset-ns"`
	FreqAdjPPB  *float64 `json:"freq-adj-ppb"`
	PathDelayNS *float64 `json:"path-delay-ns"`
	Master      string   `json:"master,omitempty"`
	Alarms      []string `json:"alarms,omitempty"`
}

func ptr(m map[string]any, k string) *float64 {
	if f, ok := num(m, k); ok {
		return &f
	}
	return nil
}

// decodeInstances reads instances-get's arguments.
func decodeInstances(raw json.RawMessage) ([]Instance, error) {
	m, err := object(raw)
	if err != nil {
		return nil, err
	}
	items, err := list(m, "instances")
	if err != nil {
		return nil, err
	}
	var out []Instance
	for _, o := range items {
		in := Instance{
			Name: str(o, "name"), Module: str(o, "module"), State: str(o, "state"), Selected: boolean(o, "selected"),
			OffsetNS: ptr(o, "offset-ns"), FreqAdjPPB: ptr(o, "freq-adj-ppb"), PathDelayNS: ptr(o, "path-delay-ns"),
			Master: str(o, "master"),
		}
		alarms, _ := o["alarms"].([]any)
		for _, a := range last(alarms) {
			if s, ok := a.(string); ok {
				in.Alarms = append(in.Alarms, clip(s))
			}
		}
		out = append(out, in)
	}
	return out, nil
}

// Binding is one of mctpd's bindings.
type Binding struct {
	Name      string `json:"name"`
	MTU       int64  `json:"mtu"`
	Default   bool   `json:"default"`
	ForwardTo string `json:"forward-to,omitempty"`
}

// Endpoint is mctpd's local endpoint, from endpoints-get.
type Endpoint struct {
	EID      int64     `json:"eid"`
	UUID     string    `json:"uuid,omitempty"`
	Bridge   bool      `json:"bridge"`
	Bindings []Binding `json:"bindings"`
	Types    []int64   `json:"types"`
}

func decodeBindings(m map[string]any) []Binding {
	var out []Binding
	for _, b := range last(objects(m, "bindings")) {
		out = append(out, Binding{Name: str(b, "name"), MTU: integer(b, "mtu"), Default: boolean(b, "default"), ForwardTo: str(b, "forward-to")})
	}
	return out
}

// decodeEndpoint reads endpoints-get's arguments.
func decodeEndpoint(raw json.RawMessage) (*Endpoint, error) {
	m, err := object(raw)
	if err != nil {
		return nil, err
	}
	e := &Endpoint{EID: integer(m, "eid"), UUID: str(m, "uuid"), Bridge: boolean(m, "bridge"), Bindings: decodeBindings(m)}
	types, _ := m["types"].([]any)
	for _, t := range last(types) {
		if f, ok := t.(float64); ok && f >= 0 && f <= 255 {
			e.Types = append(e.Types, int64(f))
		}
	}
	return e, nil
}

// Route is one of mctpd's routes, from routes-get.
type Route struct {
	First   int64  `json:"first"`
	Last    int64  `json:"last"`
	Binding string `json:"binding"`
	Default bool   `json:"default"`
}

// decodeRoutes reads routes-get's arguments.
func decodeRoutes(raw json.RawMessage) ([]Route, error) {
	m, err := object(raw)
	if err != nil {
		return nil, err
	}
	items, err := list(m, "routes")
	if err != nil {
		return nil, err
	}
	out := []Route{}
	for _, r := range items {
		out = append(out, Route{First: integer(r, "first"), Last: integer(r, "last"), Binding: str(r, "binding"), Default: boolean(r, "default")})
	}
	return out, nil
}

// Counter is one named counter.
type Counter struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
}

// MCTPStats are mctpd's counters from stats-get: messages and packets
// in, out and forwarded, and drops by reason.
type MCTPStats struct {
	Messages []Counter `json:"messages"`
	Drops    []Counter `json:"drops"`
}

// decodeStats reads stats-get's arguments: the router's counters under
// "mctp" and each demux's under "demux" and "demux-tagged".
func decodeStats(raw json.RawMessage) (*MCTPStats, error) {
	m, err := object(raw)
	if err != nil {
		return nil, err
	}
	st := &MCTPStats{Messages: []Counter{}, Drops: []Counter{}}
	r, ok := m["mctp"].(map[string]any)
	if !ok {
		return nil, errors.New("no mctp counters")
	}
	for _, k := range []string{"messages-in", "messages-out", "packets-in", "packets-out", "packets-forwarded", "send-waits"} {
		if _, ok := num(r, k); ok {
			st.Messages = append(st.Messages, Counter{k, integer(r, k)})
		}
	}
	if drops, ok := r["drops"].(map[string]any); ok {
		st.Drops = append(st.Drops, counters("", drops)...)
	}
	for _, d := range []string{"demux", "demux-tagged"} {
		dm, ok := m[d].(map[string]any)
		if !ok {
			continue
		}
		for _, k := range []string{"in", "out", "delivered"} {
			if _, ok := num(dm, k); ok {
				st.Messages = append(st.Messages, Counter{d + " " + k, integer(dm, k)})
			}
		}
		var drops []Counter
		for _, c := range counters(d+" ", dm) {
			if strings.HasPrefix(c.Name, d+" drop-") || c.Name == d+" overflows" {
				drops = append(drops, c)
			}
		}
		st.Drops = append(st.Drops, drops...)
	}
	st.Drops = last(st.Drops)
	return st, nil
}

// counters returns the numeric members of m, sorted by name.
func counters(prefix string, m map[string]any) []Counter {
	keys := make([]string, 0, len(m))
	for k := range m {
		if _, ok := num(m, k); ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := make([]Counter, 0, len(keys))
	for _, k := range last(keys) {
		out = append(out, Counter{prefix + clip(k), integer(m, k)})
	}
	return out
}

// Port is one of mdiod's ports: hw-info-get's description and
// phy_status's link.
type Port struct {
	Name      string `json:"name"`
	Phy       int64  `json:"phy"`
	Backend   string `json:"backend,omitempty"`
	Interface string `json:"interface,omitempty"`
	PHYID     string `json:"phy-id,omitempty"`
	// Link is null until phy_status has answered.
	Link    *bool  `json:"link"`
	Speed   int64  `json:"speed,omitempty"` // Mbit/s
	Duplex  string `json:"duplex,omitempty"`
	Role    string `json:"role,omitempty"`
	Autoneg bool   `json:"autoneg,omitempty"`
	// Changes counts the link's changes since mdiod started (links-get).
	Changes *int64 `json:"changes,omitempty"`
	Error   string `json:"error,omitempty"`
}

// decodePorts reads hw-info-get's arguments.
func decodePorts(raw json.RawMessage) ([]Port, error) {
	m, err := object(raw)
	if err != nil {
		return nil, err
	}
	items, err := list(m, "ports")
	if err != nil {
		return nil, err
	}
	var out []Port
	for _, p := range items {
		out = append(out, Port{
			Name: str(p, "port"), Phy: integer(p, "phy"), Backend: str(p, "backend"),
			Interface: str(p, "interface"), PHYID: str(p, "phy_id"), Error: str(p, "error"),
		})
	}
	return out, nil
}

// decodeLinks reads links-get's arguments: each port's link as mdiod's
// watcher last saw it.
func decodeLinks(raw json.RawMessage) ([]Port, error) {
	m, err := object(raw)
	if err != nil {
		return nil, err
	}
	items, err := list(m, "ports")
	if err != nil {
		return nil, err
	}
	out := []Port{}
	for _, o := range items {
		pt := Port{Name: str(o, "port"), Phy: integer(o, "phy"), Speed: integer(o, "speed"), Duplex: str(o, "duplex")}
		if link, ok := o["link"].(bool); ok {
			pt.Link = &link
		}
		if _, ok := num(o, "changes"); ok {
			n := integer(o, "changes")
			pt.Changes = &n
		}
		out = append(out, pt)
	}
	return out, nil
}

// decodePhyStatus fills p's link from phy_status's arguments for it.
func decodePhyStatus(raw json.RawMessage, p *Port) error {
	m, err := object(raw)
	if err != nil {
		return err
	}
	link, ok := m["link"].(bool)
	if !ok {
		return errors.New("no link state")
	}
	p.Link = &link
	p.Speed, p.Duplex, p.Role, p.Autoneg = integer(m, "speed"), str(m, "duplex"), str(m, "role"), boolean(m, "autoneg")
	if id := str(m, "phy_id"); id != "" {
		p.PHYID = id
	}
	return nil
}

// Event is one link event (mdiod) or hotplug event (appliance).
type Event struct {
	Seq  uint64 `json:"seq"`
	Time string `json:"time,omitempty"`
	// What names the port or interface.
	What string `json:"what"`
	Text string `json:"text"`
}

func seq(m map[string]any, k string) uint64 {
	f, ok := num(m, k)
	if !ok || f < 0 || f >= 1<<63 {
		return 0
	}
	return uint64(f)
}

// decodeMDIOEvents reads mdiod's events-get arguments: the events and
// the last sequence number.
func decodeMDIOEvents(raw json.RawMessage) ([]Event, uint64, error) {
	m, err := object(raw)
	if err != nil {
		return nil, 0, err
	}
	items, err := list(m, "events")
	if err != nil {
		return nil, 0, err
	}
	var out []Event
	for _, e := range items {
		out = append(out, Event{Seq: seq(e, "seq"), Time: str(e, "time"), What: str(e, "port"), Text: str(e, "msg")})
	}
	return out, seq(m, "last-seq"), nil
}

// decodeApplianceEvents reads the appliance's events-get arguments.
func decodeApplianceEvents(raw json.RawMessage) ([]Event, error) {
	m, err := object(raw)
	if err != nil {
		return nil, err
	}
	items, err := list(m, "events")
	if err != nil {
		return nil, err
	}
	var out []Event
	for _, e := range items {
		text := str(e, "kind")
		if s := str(e, "state"); s != "" {
			text += " (" + s + ")"
		}
		if d, ok := e["delivery"].(map[string]any); ok && len(d) > 0 {
			keys := make([]string, 0, len(d))
			for k := range d {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var parts []string
			for _, k := range last(keys) {
				if v, ok := d[k].(string); ok {
					parts = append(parts, clip(k)+" "+clip(v))
				}
			}
			if len(parts) > 0 {
				text += ": " + strings.Join(parts, ", ")
			}
		}
		what := str(e, "interface")
		if idx := integer(e, "index"); idx != 0 {
			what += " #" + strconv.FormatInt(idx, 10)
		}
		out = append(out, Event{Seq: seq(e, "id"), Time: str(e, "time"), What: what, Text: text})
	}
	return out, nil
}
