package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// MaxJSONStatsLine bounds a json_stats line ParseJSONStats accepts;
// sfptpd's lines are a few hundred bytes.
const MaxJSONStatsLine = 64 << 10

// JSONClock is a json_stats clock object.
type JSONClock struct {
	Name             string
	Time             string // "" when the line has none
	PrimaryInterface string
}

// JSONStat is one entry of a json_stats "stats" object, in line order.
type JSONStat struct {
	Key string
	// IsNum says Num holds the value; otherwise Str does.
	IsNum bool
	Num   float64
	Str   string
}

// JSONStats is one parsed json_stats line.
type JSONStats struct {
	Instance     string
	Time         string
	Master       JSONClock
	Slave        JSONClock
	Disciplining bool
	InSync       bool
	Alarms       []string
	Stats        []JSONStat
}

// Stat returns the stat named key.
func (s JSONStats) Stat(key string) (JSONStat, bool) {
	for _, st := range s.Stats {
		if st.Key == key {
			return st, true
		}
	}
	return JSONStat{}, false
}

// ParseJSONStats reads one json_stats line the way sfptpd's example
// reader (examples/sfptpd_json_parse.html) walks it: the instance and
// time, clock-master and clock-slave with their optional time,
// is-disciplining, in-sync, the alarms, and the stats object's keys in
// order, numbers kept apart from strings. Unknown keys are ignored, as
// the example ignores them; a line missing a key the example reads is
// an error.
func ParseJSONStats(line []byte) (JSONStats, error) {
	var out JSONStats
	line = bytes.TrimSpace(line)
	if len(line) > MaxJSONStatsLine {
		return out, fmt.Errorf("json_stats line of %d bytes is longer than %d", len(line), MaxJSONStatsLine)
	}
	var raw struct {
		Instance     *string         `json:"instance"`
		Time         *string         `json:"time"`
		Master       *jsonClockRaw   `json:"clock-master"`
		Slave        *jsonClockRaw   `json:"clock-slave"`
		Disciplining *bool           `json:"is-disciplining"`
		InSync       *bool           `json:"in-sync"`
		Alarms       []string        `json:"alarms"`
		Stats        json.RawMessage `json:"stats"`
	}
	if err := json.Unmarshal(line, &raw); err != nil {
		return out, fmt.Errorf("json_stats line: %w", err)
	}
	switch {
	case raw.Instance == nil:
		return out, errors.New("json_stats line: no instance")
	case raw.Time == nil:
		return out, errors.New("json_stats line: no time")
	case raw.Master == nil || raw.Master.Name == nil:
		return out, errors.New("json_stats line: no clock-master name")
	case raw.Slave == nil || raw.Slave.Name == nil:
		return out, errors.New("json_stats line: no clock-slave name")
	case raw.Disciplining == nil:
		return out, errors.New("json_stats line: no is-disciplining")
	case raw.InSync == nil:
		return out, errors.New("json_stats line: no in-sync")
	case raw.Alarms == nil:
		return out, errors.New("json_stats line: no alarms")
	case raw.Stats == nil:
		return out, errors.New("json_stats line: no stats")
	}
	out.Instance, out.Time = *raw.Instance, *raw.Time
	out.Master, out.Slave = raw.Master.clock(), raw.Slave.clock()
	out.Disciplining, out.InSync = *raw.Disciplining, *raw.InSync
	out.Alarms = raw.Alarms
	stats, err := parseStatsObject(raw.Stats)
	if err != nil {
		return out, err
	}
	out.Stats = stats
	return out, nil
}

type jsonClockRaw struct {
	Name             *string `json:"name"`
	Time             string  `json:"time"`
	PrimaryInterface string  `json:"primary-interface"`
}

func (c *jsonClockRaw) clock() JSONClock {
	return JSONClock{Name: *c.Name, Time: c.Time, PrimaryInterface: c.PrimaryInterface}
}

// parseStatsObject walks the stats object token by token to keep the
// keys in line order (the example plots them in that order).
func parseStatsObject(b json.RawMessage) ([]JSONStat, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	tok, err := d.Token()
	if err != nil {
		return nil, fmt.Errorf("json_stats stats: %w", err)
	}
	if tok != json.Delim('{') {
		return nil, errors.New("json_stats stats: not an object")
	}
	var out []JSONStat
	for d.More() {
		kt, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("json_stats stats: %w", err)
		}
		key, _ := kt.(string)
		vt, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("json_stats stats %q: %w", key, err)
		}
		switch v := vt.(type) {
		case json.Number:
			f, err := strconv.ParseFloat(v.String(), 64)
			if err != nil {
				return nil, fmt.Errorf("json_stats stats %q: %w", key, err)
			}
			out = append(out, JSONStat{Key: key, IsNum: true, Num: f})
		case string:
			out = append(out, JSONStat{Key: key, Str: v})
		default:
			return nil, fmt.Errorf("json_stats stats %q: value is neither a number nor a string", key)
		}
	}
	return out, nil
}
