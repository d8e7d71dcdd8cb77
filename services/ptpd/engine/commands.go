package engine

import (
	"context"
	"errors"
	"fmt"
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

// Commands returns the sfptpd control commands, each with its Kea
// spelling as an alias so that both reach the same handler. exit asks
// d to shut down.
func (e *Engine) Commands(d *ctl.Daemon) []*ctl.Command {
	return []*ctl.Command{
		{
			Name:    "logrotate",
			Aliases: []string{"logs-rotate"},
			Comment: "reopen the message, stats and json_stats log files",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				return result(e.RotateLogs(), "Log files reopened.")
			},
		},
		{
			Name:    "stepclocks",
			Aliases: []string{"clocks-step"},
			Comment: "step the clocks to the selected instance's offset",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				return result(e.StepClocks(), "Clocks stepped.")
			},
		},
		{
			Name:    "exit",
			Comment: "exit with status 0 (as shutdown)",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				e.log.Info("exit requested by control command")
				d.RequestShutdown()
				return ctl.OK("Shutting down.", nil)
			},
		},
		{
			Name:    "selectinstance",
			Aliases: []string{"instance-select"},
			Comment: "select a sync instance (selection_policy manual only)",
			Params:  []ctl.Param{{Name: "name", Type: ctl.String, Required: true, Help: "sync instance name"}},
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				name, _, _ := strings.Cut(c.Args.String("name"), "=")
				return result(e.SelectInstance(name), fmt.Sprintf("Sync instance '%s' selected.", name))
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
			Params: []ctl.Param{
				{Name: "kp", Type: ctl.Float, Ranged: true, Min: 0, Max: 1000},
				{Name: "ki", Type: ctl.Float, Ranged: true, Min: 0, Max: 1000},
				{Name: "kd", Type: ctl.Float, Ranged: true, Min: 0, Max: 1000},
				{Name: "types", Type: ctl.String, Rest: true, Choices: []string{"local", "ptp", "pps", "reset"}},
			},
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				opt := func(n string) *float64 {
					if !c.Args.Given(n) {
						return nil
					}
					v := c.Args.Float(n)
					return &v
				}
				e.PIDAdjust(opt("kp"), opt("ki"), opt("kd"), c.Args.Rest())
				return ctl.OK("PID coefficients adjusted.", nil)
			},
		},
		{
			Name:    "block_clock",
			Aliases: []string{"clock-block"},
			Comment: "block (1) or unblock (0) adjustments of the named clocks, or of all",
			Params: []ctl.Param{
				{Name: "block", Type: ctl.Bool, Required: true},
				{Name: "clocks", Type: ctl.String, Rest: true},
			},
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				e.BlockClock(c.Args.Bool("block"), c.Args.Rest())
				return ctl.OK("", nil)
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
func (e *Engine) Register(d *ctl.Daemon) error {
	var errs []error
	for _, c := range e.Commands(d) {
		errs = append(errs, d.Register(c))
	}
	return errors.Join(errs...)
}
