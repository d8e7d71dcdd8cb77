package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// line is one option line: a keyword and its values.
type line struct {
	no      int
	section string
	key     string
	args    []string
}

type errFunc func(no int, format string, a ...any) error

// tokenize splits an option line the way sfptpd does: values are
// separated by blanks, single or double quotes group blanks into a
// value, a backslash takes the next character literally, and '#'
// outside quotes starts a comment.
func tokenize(s string) ([]string, error) {
	var toks []string
	var cur strings.Builder
	in, esc := false, false
	var quote rune
	for _, c := range s {
		switch {
		case esc:
			cur.WriteRune(c)
			in, esc = true, false
		case c == '\\':
			esc = true
		case quote != 0:
			if c == quote {
				quote = 0
				continue
			}
			cur.WriteRune(c)
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				toks = append(toks, cur.String())
				cur.Reset()
				in = false
			}
		case c == '#':
			if in {
				toks = append(toks, cur.String())
			}
			return toks, nil
		default:
			cur.WriteRune(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	if in {
		toks = append(toks, cur.String())
	}
	return toks, nil
}

// moduleOf reports whether name is a module section.
func isModule(name string) bool { return contains(modules, name) }

// ParseOptions parses a configuration; file names it in errors.
func ParseOptions(file string, data []byte, opts Options) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, &Error{File: file, Msg: fmt.Sprintf("file is larger than %d bytes", MaxFileSize)}
	}
	errAt := func(no int, format string, a ...any) error {
		return &Error{File: file, Line: no, Msg: fmt.Sprintf(format, a...)}
	}
	cfg := Default(file)

	// Pass 1: split into sections and option lines. sfptpd lets a
	// section be entered again; so does ptpd. Lines before any header
	// belong to [general], as in older sfptpd files.
	var lines []line
	sectionLine := map[string]int{}
	sectionUsed := map[string]bool{}
	var sectionOrder []string
	section := "general"
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 256), maxLine)
	no := 0
	for sc.Scan() {
		no++
		raw := sc.Text()
		if !utf8Printable(raw) {
			return nil, errAt(no, "line contains control characters or invalid UTF-8")
		}
		if t := strip(raw); strings.HasPrefix(t, "[") {
			if !strings.HasSuffix(t, "]") {
				return nil, errAt(no, "malformed section header %q", t)
			}
			name := strings.TrimSpace(t[1 : len(t)-1])
			if !validName(name) {
				return nil, errAt(no, "bad section name %q", name)
			}
			if _, seen := sectionLine[name]; !seen {
				sectionLine[name] = no
				sectionOrder = append(sectionOrder, name)
			}
			section = name
			cfg.Lexed = append(cfg.Lexed, LexedLine{Section: name})
			continue
		}
		toks, err := tokenize(raw)
		if err != nil {
			return nil, errAt(no, "%v", err)
		}
		if len(toks) == 0 {
			continue
		}
		if len(toks) > maxTokens {
			return nil, errAt(no, "%s: more than %d values", toks[0], maxTokens-1)
		}
		key := strings.ReplaceAll(toks[0], "-", "_")
		if strings.ContainsAny(key, "[]") {
			return nil, errAt(no, "unexpected square brackets in '%s'", toks[0])
		}
		sectionUsed[section] = true
		lines = append(lines, line{no: no, section: section, key: key, args: toks[1:]})
		cfg.Lexed = append(cfg.Lexed, LexedLine{Tokens: append([]string{key}, toks[1:]...)})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, errAt(no+1, "line longer than %d bytes", maxLine)
		}
		return nil, fmt.Errorf("config: %s: %w", file, err)
	}

	p := &parser{cfg: cfg, errAt: errAt, index: map[string]int{}, declared: map[string]bool{}}
	// Pass 2: [general], which declares the instances.
	for _, l := range lines {
		if l.section == "general" {
			if err := p.general(l); err != nil {
				return nil, err
			}
		}
	}
	if len(cfg.Instances) == 0 {
		return nil, errAt(0, "no sync instances: declare one in [general], e.g. \"sync_module freerun fr1\"")
	}
	g := &cfg.General
	for i := range cfg.Instances {
		in := &cfg.Instances[i]
		in.Priority = DefaultPriority
		in.ClockControl = g.ClockControl
		in.StepThreshold = g.StepThreshold
		in.PIDFilterP = g.PIDFilterP
		in.PIDFilterI = g.PIDFilterI
		in.MaxFreqPPB = g.LimitFreqAdjPPB
		if in.Module == "ptp" {
			in.Mode, in.ModeWord, in.Timestamping = "slave", "slave", "auto"
			if opts.DefaultDomain >= 0 {
				in.Domain = opts.DefaultDomain
			}
		}
		// The command line's defaults stand where sfptpd puts them: in
		// the module sections, which the file's lines then override.
		switch in.Module {
		case "ptp", "pps", "freerun":
			in.Interface = opts.DefaultInterface
		}
	}
	// Pass 3: module sections, then each instance's own section, so that
	// an instance section overrides [ptp] wherever it appears. A module
	// section's lines are also applied to a probe instance, so that
	// values are checked (and ignored keywords recorded) even when the
	// module has no instance.
	probes := map[string]*Instance{}
	for _, l := range lines {
		if !isModule(l.section) {
			continue
		}
		probe := probes[l.section]
		if probe == nil {
			probe = &Instance{Name: l.section, Module: l.section}
			probes[l.section] = probe
		}
		kw, err := p.lookup(l, l.section, false)
		if err != nil {
			return nil, err
		}
		note, err := kw.apply(probe, l.args)
		if err != nil {
			return nil, errAt(l.no, "%s: %v", l.key, err)
		}
		p.record(l, kw, note)
		for i := range cfg.Instances {
			if in := &cfg.Instances[i]; in.Module == l.section {
				if _, err := kw.apply(in, l.args); err != nil {
					return nil, errAt(l.no, "%s: %v (in instance '%s')", l.key, err, in.Name)
				}
			}
		}
	}
	for _, l := range lines {
		if l.section == "general" || isModule(l.section) {
			continue
		}
		i, ok := p.index[l.section]
		if !ok {
			return nil, errAt(sectionLine[l.section], "section [%s] is not a declared sync instance (declare it in [general] with \"sync_module MODULE %s\")", l.section, l.section)
		}
		in := &cfg.Instances[i]
		kw, err := p.lookup(l, in.Module, true)
		if err != nil {
			return nil, err
		}
		note, err := kw.apply(in, l.args)
		if err != nil {
			return nil, errAt(l.no, "%s: %v", l.key, err)
		}
		p.record(l, kw, note)
	}
	// A section naming no instance and holding no option is harmless
	// (sfptpd's many_instances example has one); say so rather than
	// refuse the file.
	for _, name := range sectionOrder {
		if name == "general" || isModule(name) || sectionUsed[name] {
			continue
		}
		if _, ok := p.index[name]; !ok {
			cfg.Warnings = append(cfg.Warnings, Warning{File: file, Line: sectionLine[name], Section: name,
				Msg: fmt.Sprintf("empty section [%s] names no declared sync instance; skipped", name)})
		}
	}
	if g.SelectionInstance != "" {
		if _, ok := p.index[g.SelectionInstance]; !ok {
			return nil, errAt(g.SelectionLine, "selection_policy: sync instance '%s' is not declared", g.SelectionInstance)
		}
	}
	for i := range cfg.Instances {
		in := &cfg.Instances[i]
		switch in.Module {
		case "ptp":
			if in.Interface == "" {
				cfg.Warnings = append(cfg.Warnings, Warning{File: file, Line: in.Line, Section: in.Name,
					Msg: fmt.Sprintf("ptp instance '%s' has no interface (set \"interface IF\" in [%s] or [ptp]); it cannot start", in.Name, in.Name)})
			}
		case "pps":
			if in.TimeOfDay != "" {
				if _, ok := p.index[in.TimeOfDay]; !ok {
					return nil, errAt(in.Line, "time_of_day: sync instance '%s' of pps instance '%s' is not declared", in.TimeOfDay, in.Name)
				}
			}
		case "ntp", "crny":
			if len(in.NTPServers) == 0 {
				p.ntpFallback(in, opts)
			}
		}
	}
	return cfg, nil
}

// parser carries the state of one parse.
type parser struct {
	cfg   *Config
	errAt errFunc
	// index maps instance names to their position in cfg.Instances.
	index map[string]int
	// declared records the modules named by sync_module lines.
	declared map[string]bool
}

// lookup finds the keyword of line l in module's table and checks that
// it may appear there.
func (p *parser) lookup(l line, module string, instance bool) (*keyword, error) {
	kw := findKeyword(module, l.key)
	if kw == nil {
		where := "[" + l.section + "]"
		if findKeyword("general", l.key) != nil {
			return nil, p.errAt(l.no, "%s: a [general] option, not allowed in %s", l.key, where)
		}
		for _, m := range modules {
			if findKeyword(m, l.key) != nil {
				if instance {
					return nil, p.errAt(l.no, "%s: not an option of %s instance '%s'", l.key, module, l.section)
				}
				return nil, p.errAt(l.no, "%s: not an option of %s", l.key, where)
			}
		}
		return nil, p.errAt(l.no, "unknown keyword '%s' in %s", l.key, where)
	}
	if instance && kw.global {
		return nil, p.errAt(l.no, "%s: global option, not allowed in instance section [%s] (set it in [%s])", l.key, l.section, module)
	}
	if err := kw.count(l.args); err != nil {
		return nil, p.errAt(l.no, "%s: %v", l.key, err)
	}
	return kw, nil
}

// record notes an ignored keyword (or a supported one that ptpd honours
// differently, as note says).
func (p *parser) record(l line, kw *keyword, note string) {
	if note == "" && kw.status == Ignored {
		note = kw.meaning
	}
	if note == "" {
		return
	}
	p.cfg.Ignored = append(p.cfg.Ignored, IgnoredKeyword{File: p.cfg.File, Line: l.no, Section: l.section, Keyword: l.key, Reason: note})
}

// general handles one [general] line.
func (p *parser) general(l line) error {
	if l.key == "sync_module" {
		return p.syncModule(l)
	}
	kw := findKeyword("general", l.key)
	if kw == nil {
		for _, m := range modules {
			if findKeyword(m, l.key) != nil {
				return p.errAt(l.no, "%s: not a [general] option (it belongs in [%s] or an instance section)", l.key, m)
			}
		}
		return p.errAt(l.no, "unknown keyword '%s' in [general]", l.key)
	}
	if err := kw.count(l.args); err != nil {
		return p.errAt(l.no, "%s: %v", l.key, err)
	}
	note, err := kw.applyGeneral(&p.cfg.General, l)
	if err != nil {
		return p.errAt(l.no, "%s: %v", l.key, err)
	}
	p.record(l, kw, note)
	return nil
}

// syncModule handles "sync_module MODULE [NAME...]". A module named
// without instances is declared with none (sfptpd uses that to suppress
// its implicit crny instance).
func (p *parser) syncModule(l line) error {
	if len(l.args) < 1 {
		return p.errAt(l.no, "sync_module: expects a module and instance names")
	}
	mod := l.args[0]
	if !isModule(mod) {
		return p.errAt(l.no, "sync_module: unknown module '%s' (want %s)", mod, strings.Join(modules, ", "))
	}
	p.declared[mod] = true
	for _, name := range l.args[1:] {
		if !validName(name) || name == "general" || isModule(name) {
			return p.errAt(l.no, "sync_module: bad instance name '%s'", name)
		}
		if i, dup := p.index[name]; dup {
			return p.errAt(l.no, "sync_module: instance '%s' already declared at line %d", name, p.cfg.Instances[i].Line)
		}
		p.index[name] = len(p.cfg.Instances)
		p.cfg.Instances = append(p.cfg.Instances, Instance{Name: name, Module: mod, Line: l.no})
	}
	return nil
}
