package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	"github.com/tickbox-fw/tickbox/services/ctl"
)

// result turns an engine error into a command result. Commands sfptpd
// logs and ignores still report failure, so that a Kea caller learns
// that nothing happened; the datagram front end logs it.
func result(err error, okText string) ctl.Result {
	if err != nil {
		return ctl.Fail("%s", err.Error())
	}
	return ctl.OK(okText, nil)
}

// CommandOptions configure the control commands.
type CommandOptions struct {
	// TestMode enables testmode commands, as sfptpd's [general]
	// test_mode option does; without it they are logged and ignored.
	TestMode bool
}

// fields returns an sfptpd command's comma-separated fields however
// the front end passed them: positionally (the datagram socket,
// "cmd=a,,b"), or by name from JSON, each name in names holding one
// field and the last one a list.
func fields(a ctl.Args, names ...string) []string {
	m := a.Any()
	var pos []int
	for k := range m {
		if i, err := strconv.Atoi(k); err == nil && i >= 0 {
			pos = append(pos, i)
		}
	}
	if len(pos) > 0 {
		sort.Ints(pos)
		out := make([]string, 0, len(pos))
		for _, i := range pos {
			out = append(out, fieldText(m[strconv.Itoa(i)]))
		}
		return out
	}
	var out []string
	for i, n := range names {
		v, ok := m[n]
		if !ok {
			if i < len(names)-1 {
				out = append(out, "")
			}
			continue
		}
		if list, isList := v.([]any); isList && i == len(names)-1 {
			for _, x := range list {
				out = append(out, fieldText(x))
			}
			continue
		}
		out = append(out, fieldText(v))
	}
	// Trailing empty fields from absent names carry nothing.
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

// fieldText spells a JSON value as the text field sfptpd would read.
func fieldText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		if x {
			return "1"
		}
		return "0"
	case nil:
		return ""
	case json.Number:
		return x.String()
	}
	return fmt.Sprint(v)
}

// Commands returns the sfptpd control commands with default options
// (test modes disabled), each with its Kea spelling as an alias so
// that both reach the same handler. exit asks d to shut down.
func (e *Engine) Commands(d *ctl.Registry) []*ctl.Command {
	return e.CommandsWith(d, CommandOptions{})
}

// CommandsWith returns the sfptpd control commands configured by o.
func (e *Engine) CommandsWith(d *ctl.Registry, o CommandOptions) []*ctl.Command {
	return []*ctl.Command{
		{
			Name:    "logrotate",
			Aliases: []string{"logs-rotate"},
			Comment: "reopen the message, stats and json_stats log files",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				e.notice("received 'logrotate' control command: rotating logs")
				return result(e.RotateLogs(), "Log files reopened.")
			},
		},
		{
			Name:    "stepclocks",
			Aliases: []string{"clocks-step"},
			Comment: "step the clocks to the selected instance's offset",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				e.notice("received 'stepclocks' control command: stepping clocks to current offset")
				return result(e.StepClocks(), "Clocks stepped.")
			},
		},
		{
			Name:    "exit",
			Comment: "exit with status 0 (as shutdown)",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				e.notice("received 'exit' control command: exiting application")
				d.RequestShutdown()
				return ctl.OK("Shutting down.", nil)
			},
		},
		{
			Name:    "selectinstance",
			Aliases: []string{"instance-select"},
			Comment: "select a sync instance (selection_policy manual only)",
			Syntax:  "name",
			AnyArgs: true,
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				f := fields(c.Args, "name")
				if len(f) == 0 {
					return result(e.badCommand("selectinstance: no instance provided"), "")
				}
				// sfptpd takes everything after the first '=' up to a
				// second one, commas included.
				name, _, _ := strings.Cut(strings.Join(f, ","), "=")
				if len(name) > MaxInstanceName {
					name = name[:MaxInstanceName]
				}
				e.notice("received 'selectinstance' control command: choosing instance")
				return result(e.SelectInstance(name), fmt.Sprintf("Sync instance '%s' selected.", name))
			},
		},
		{
			Name:    "testmode",
			Aliases: []string{"test-mode"},
			Comment: "set a test mode (needs test_mode in the configuration)",
			Syntax:  "mode [arg [arg [arg]]]",
			AnyArgs: true,
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				m, params, err := ParseTestMode(fields(c.Args, "mode", "params"))
				if err != nil {
					return result(e.badCommand("%s", err.Error()), "")
				}
				e.notice("received 'testmode' control command: configuring test mode")
				if !o.TestMode {
					return result(e.ignoredAt(slog.LevelInfo, "test mode %s ignored: test_mode is not enabled in the configuration", m), "")
				}
				return result(e.ApplyTestMode(m, params), fmt.Sprintf("Test mode %s set.", m))
			},
		},
		{
			Name:    "interfaceinsert",
			Aliases: []string{"interface-insert"},
			Comment: "an interface appeared (hotplug_detection_mode manual)",
			Params:  []ctl.Param{{Name: "interface", Type: ctl.String, Required: true, Ranged: true, Max: 15}},
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				return result(e.InterfaceInsert(c.Args.String("interface")), "Interface inserted.")
			},
		},
		{
			Name:    "interfaceremove",
			Aliases: []string{"interface-remove"},
			Comment: "an interface went away (hotplug_detection_mode manual)",
			Params:  []ctl.Param{{Name: "interface", Type: ctl.String, Required: true, Ranged: true, Max: 15}},
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				return result(e.InterfaceRemove(c.Args.String("interface")), "Interface removed.")
			},
		},
		{
			Name:    "dumptables",
			Aliases: []string{"tables-dump"},
			Comment: "write the sync instance table to the message log",
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				e.notice("received 'dumptables' control command: outputing diagnostics")
				var b strings.Builder
				e.DumpTables(&b)
				return ctl.OK(strings.TrimRight(b.String(), "\n"), nil)
			},
		},
		{
			Name:    "pid_adjust",
			Aliases: []string{"pid-adjust"},
			Comment: "set servo PID coefficients, optionally per servo type and with a reset",
			Syntax:  "[kp [ki [kd [local|ptp|pps|reset]...]]]",
			AnyArgs: true,
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				p, err := ParsePIDAdjust(fields(c.Args, "kp", "ki", "kd", "types"))
				if err != nil {
					return result(e.badCommand("%s", err.Error()), "")
				}
				return result(e.PIDAdjust(p), "PID coefficients adjusted.")
			},
		},
		{
			Name:    "block_clock",
			Aliases: []string{"clock-block"},
			Comment: "block (1) or unblock (0) adjustments of the named clocks",
			Syntax:  "1|0 [clock]...",
			AnyArgs: true,
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				block, clocks := ParseBlockClock(fields(c.Args, "block", "clocks"))
				return result(e.BlockClock(block, clocks), "")
			},
		},
		{
			Name:    "instances-get",
			Comment: "list the sync instances with state, selection and statistics",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				return ctl.OK("", map[string]any{"instances": e.Instances()})
			},
		},
	}
}

// Register adds Commands(d) to d.
func (e *Engine) Register(d *ctl.Registry) error {
	return e.RegisterWith(d, CommandOptions{})
}

// RegisterWith adds CommandsWith(d, o) to d.
func (e *Engine) RegisterWith(d *ctl.Registry, o CommandOptions) error {
	var errs []error
	for _, c := range e.CommandsWith(d, o) {
		errs = append(errs, d.Register(c))
	}
	return errors.Join(errs...)
}
