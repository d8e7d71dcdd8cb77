package engine

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// StatsTimeLayout is sfptpd's stats time stamp: local time with
// microseconds.
const StatsTimeLayout = "2006-01-02 15:04:05.000000"

// masterName is how the stats name an instance's master: the parent
// clock identity when there is one, "-" otherwise (freerun, a master
// port, a slave that has not found a master).
func masterName(st instance.Status) string {
	if st.ParentID != "" {
		return st.ParentID
	}
	return "-"
}

// StatsLine formats one text stats line, sfptpd's form with
// [INSTANCE:CLOCK->MASTER]:
//
//	2024-03-16 19:39:42.114315 [ptp1:phc0(eth0)->0011:22ff:fe33:4455], offset: 64.219, freq-adj: -1132.022, in-sync: 1
//
// Instances with a master add one-way-delay, parent-id and gm-id before
// in-sync.
func StatsLine(t time.Time, st instance.Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s [%s:%s->%s], offset: %.3f, freq-adj: %.3f", t.Format(StatsTimeLayout), st.Name, st.Clock, masterName(st), finite(st.OffsetNS), finite(st.FreqAdjPPB))
	if st.ParentID != "" {
		fmt.Fprintf(&b, ", one-way-delay: %.3f, parent-id: %s, gm-id: %s", finite(st.PathDelayNS), st.ParentID, st.GrandmasterID)
	}
	in := 0
	if st.InSync {
		in = 1
	}
	fmt.Fprintf(&b, ", in-sync: %d\n", in)
	return b.String()
}

func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// jsonNumber spells a float as sfptpd's json_stats do: shortest
// round-trip form, with ".0" kept on whole numbers (512.0).
func jsonNumber(b []byte, f float64) []byte {
	f = finite(f)
	s := strconv.FormatFloat(f, 'f', -1, 64)
	b = append(b, s...)
	if !strings.ContainsAny(s, ".") {
		b = append(b, ".0"...)
	}
	return b
}

func jsonString(b []byte, s string) []byte { return strconv.AppendQuote(b, s) }

// JSONStatsLine formats one json_stats line, with sfptpd's key order:
//
//	{"instance":"ptp1","time":"2025-06-01 12:00:00.123456","clock-master":{"name":"…"},
//	 "clock-slave":{"name":"phc0(eth0)","primary-interface":"eth0"},"is-disciplining":true,
//	 "in-sync":true,"alarms":[],"stats":{"offset":-3.25,"freq-adj":1204.113,
//	 "one-way-delay":512.0,"parent-id":"…","gm-id":"…","active-interface":"eth0"}}
//
// Keys with nothing to report (one-way-delay, parent-id and gm-id
// without a master; the interfaces of an instance without one) are left
// out, as sfptpd leaves out what a module does not measure.
func JSONStatsLine(t time.Time, st instance.Status) []byte {
	b := make([]byte, 0, 384)
	b = append(b, `{"instance":`...)
	b = jsonString(b, st.Name)
	b = append(b, `,"time":`...)
	b = jsonString(b, t.Format(StatsTimeLayout))
	b = append(b, `,"clock-master":{"name":`...)
	b = jsonString(b, masterName(st))
	b = append(b, `},"clock-slave":{"name":`...)
	b = jsonString(b, st.Clock)
	if st.Interface != "" {
		b = append(b, `,"primary-interface":`...)
		b = jsonString(b, st.Interface)
	}
	b = append(b, `},"is-disciplining":`...)
	b = strconv.AppendBool(b, st.Disciplining)
	b = append(b, `,"in-sync":`...)
	b = strconv.AppendBool(b, st.InSync)
	b = append(b, `,"alarms":[`...)
	for i, a := range st.Alarms {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonString(b, a)
	}
	b = append(b, `],"stats":{"offset":`...)
	b = jsonNumber(b, st.OffsetNS)
	b = append(b, `,"freq-adj":`...)
	b = jsonNumber(b, st.FreqAdjPPB)
	if st.ParentID != "" {
		b = append(b, `,"one-way-delay":`...)
		b = jsonNumber(b, st.PathDelayNS)
		b = append(b, `,"parent-id":`...)
		b = jsonString(b, st.ParentID)
		b = append(b, `,"gm-id":`...)
		b = jsonString(b, st.GrandmasterID)
	}
	if st.Interface != "" {
		b = append(b, `,"active-interface":`...)
		b = jsonString(b, st.Interface)
	}
	return append(b, "}}\n"...)
}

// stateText is the content of an instance's state file.
func stateText(st instance.Status, selected, running bool) string {
	var b strings.Builder
	kv := func(k string, v any) { fmt.Fprintf(&b, "%s: %v\n", k, v) }
	kv("instance", st.Name)
	kv("module", st.Module)
	state := st.State.String()
	if !running {
		state = instance.Disabled.String()
	}
	kv("state", state)
	kv("selected", selected)
	kv("running", running)
	alarms := "none"
	if len(st.Alarms) > 0 {
		alarms = strings.Join(st.Alarms, ",")
	}
	kv("alarms", alarms)
	kv("interface", st.Interface)
	kv("clock", st.Clock)
	kv("is-disciplining", st.Disciplining)
	kv("in-sync", st.InSync)
	kv("offset-from-master", fmt.Sprintf("%.3f", finite(st.OffsetNS)))
	kv("freq-adjustment-ppb", fmt.Sprintf("%.3f", finite(st.FreqAdjPPB)))
	kv("one-way-delay", fmt.Sprintf("%.3f", finite(st.PathDelayNS)))
	kv("parent-clock-id", st.ParentID)
	kv("grandmaster-clock-id", st.GrandmasterID)
	kv("clock-steps", st.Steps)
	return b.String()
}

// writeAtomic writes data to dir/name through dir/.next.name and a
// rename, so a reader never sees a half-written file.
func writeAtomic(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, ".next."+name)
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}
