package msglog

import (
	"log/slog"
)

// SyslogWriter is the part of *log/syslog.Writer the syslog handler
// uses: one method per priority.
type SyslogWriter interface {
	Emerg(m string) error
	Alert(m string) error
	Crit(m string) error
	Err(m string) error
	Warning(m string) error
	Notice(m string) error
	Info(m string) error
	Debug(m string) error
}

// NewSyslog returns a handler for "message_log syslog": each message
// goes to w at its sfptpd priority, without time stamp or level (syslog
// adds its own). opts.Now is not used.
func NewSyslog(w SyslogWriter, opts *Options) slog.Handler {
	return newHandler(&output{sysl: w}, opts)
}

func (o *output) syslog(p Priority, text string) error {
	switch p {
	case 0:
		return o.sysl.Emerg(text)
	case 1:
		return o.sysl.Alert(text)
	case 2:
		return o.sysl.Crit(text)
	case 3:
		return o.sysl.Err(text)
	case 4:
		return o.sysl.Warning(text)
	case 5:
		return o.sysl.Notice(text)
	case 6:
		return o.sysl.Info(text)
	}
	return o.sysl.Debug(text)
}
