// Command mctp is the MCTP client of mctpd's demux: it sends and
// receives messages as a libmctp demux client would, and queries an
// endpoint's control responder.
//
//	mctp [-demux NAME] [-tagged] [-tagged-demux NAME] send -eid E -type T [-tag N] HEX
//	mctp [-demux NAME] [-tagged] [-tagged-demux NAME] recv -type T [-n K] [-timeout D]
//	mctp [-demux NAME] [-tagged] [-tagged-demux NAME] ctrl get-eid|get-version|get-types|get-uuid -eid E [-timeout D]
//
// With -tagged it uses mctpd's tag-aware demux: requests get a tag of
// their own, and their responses come to this client alone.
package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/tickbox-fw/tickbox/internal/cli"
	"github.com/tickbox-fw/tickbox/services/mctpd/demux"
	"github.com/tickbox-fw/tickbox/services/mctpd/mctp"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mctp:", err)
		os.Exit(cli.Code(err, 1))
	}
}

const usage = `usage: mctp [-demux NAME] [-tagged] [-tagged-demux NAME] COMMAND
  send -eid E -type T [-tag N] HEX
                                 send one message (-tagged: a request with an
                                 allocated tag, or with -tag N a response, TO=0
                                 and tag N)
  recv -type T [-n K]            print received messages: SRC TYPE HEX
                                 (-tagged: SRC TYPE HEX to=TO tag=TAG)
  ctrl get-eid|get-version|get-types|get-uuid -eid E
                                 query an endpoint's control responder (-tagged:
                                 with an allocated tag, so only our reply comes)`

// target says which demux to use and how.
type target struct {
	name   string
	tagged bool
}

func (d target) dial(typ byte) (*demux.Conn, error) {
	if d.tagged {
		return demux.DialTagged(d.name, typ)
	}
	return demux.Dial(d.name, typ)
}

// tagError renders a tagged demux's error frame.
func tagError(eid, typ byte, body []byte) error {
	if len(body) == 0 {
		return fmt.Errorf("mctpd refused the message to EID %d type %d", eid, typ)
	}
	return fmt.Errorf("mctpd refused the message to EID %d type %d: code %d: %s", eid, typ, body[0], body[1:])
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mctp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("demux", demux.DefaultNames[0], "demux abstract socket name")
	tagged := fs.Bool("tagged", false, "use mctpd's tag-aware demux")
	taggedName := fs.String("tagged-demux", "", "tag-aware demux name; implies -tagged (default: the -demux name plus \"-tagged\", as mctpd derives it)")
	fs.Usage = func() { fmt.Fprintln(stderr, usage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &cli.ExitError{Code: 2, Err: err}
	}
	if fs.NArg() == 0 {
		return cli.Usage("no command\n%s", usage)
	}
	dm := target{name: *name}
	if *tagged || *taggedName != "" {
		dm = target{name: strings.TrimPrefix(*name, "@") + "-tagged", tagged: true}
		if *taggedName != "" {
			dm.name = *taggedName
		}
	}
	switch cmd, rest := fs.Arg(0), fs.Args()[1:]; cmd {
	case "send":
		return send(dm, rest, stderr)
	case "recv":
		return recv(dm, rest, stdout, stderr)
	case "ctrl":
		return ctrl(dm, rest, stdout, stderr)
	default:
		return cli.Usage("unknown command %q\n%s", cmd, usage)
	}
}

// byteFlag is a 0..255 flag value.
func byteFlag(fs *flag.FlagSet, name, help string) *uint {
	return fs.Uint(name, 256, help)
}

func checkByte(name string, v uint) (byte, error) {
	if v > 255 {
		return 0, cli.Usage("-%s: want 0..255", name)
	}
	return byte(v), nil
}

// checkType checks a -type a client registers: the demux closes a client
// that registers type 0 (control messages come as TypeControlReplies;
// ctrl sends them).
func checkType(v uint) (byte, error) {
	if v == 0 || v > 255 {
		return 0, cli.Usage("-type: want a message type 1..255 (ctrl sends control messages)")
	}
	return byte(v), nil
}

func send(dm target, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("mctp send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	eid := byteFlag(fs, "eid", "destination EID")
	typ := byteFlag(fs, "type", "message type")
	tag := fs.Int("tag", -1, "with -tagged: send a response (TO=0) with this tag, 0..7, instead of a request with an allocated tag")
	if err := fs.Parse(args); err != nil {
		return &cli.ExitError{Code: 2, Err: err}
	}
	tagByte := byte(mctp.TagRequest)
	switch {
	case *tag != -1 && !dm.tagged:
		return cli.Usage("send: -tag needs -tagged")
	case *tag < -1 || *tag > mctp.TagValue:
		return cli.Usage("send: -tag: want 0..7")
	case *tag >= 0:
		tagByte = byte(*tag)
	}
	e, err := checkByte("eid", *eid)
	if err != nil {
		return err
	}
	t, err := checkType(*typ)
	if err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return cli.Usage("send: one HEX body, got %d arguments", fs.NArg())
	}
	body, err := hex.DecodeString(strings.ReplaceAll(fs.Arg(0), " ", ""))
	if err != nil {
		return cli.Usage("send: body: %w", err)
	}
	c, err := dm.dial(t)
	if err != nil {
		return err
	}
	defer c.Close()
	if dm.tagged {
		err = c.SendTag(e, tagByte, t, body)
	} else {
		err = c.Send(e, body)
	}
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	// Wait until the demux has taken the message, so that a send that
	// follows this one is routed after it; a tagged demux answers a
	// message it could not send with an error frame meanwhile.
	var refused error
	err = c.FinishFunc(2*time.Second, func(m demux.Message) {
		if dm.tagged && m.Tag == mctp.TagError && refused == nil {
			refused = tagError(m.Addr, m.Type, m.Body)
		}
	})
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if refused != nil {
		return fmt.Errorf("send: %w", refused)
	}
	return nil
}

func recv(dm target, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mctp recv", flag.ContinueOnError)
	fs.SetOutput(stderr)
	typ := byteFlag(fs, "type", "message type to register for")
	n := fs.Int("n", 0, "stop after this many messages (0: run until the demux closes)")
	timeout := fs.Duration("timeout", 0, "give up after this long (0: no limit)")
	if err := fs.Parse(args); err != nil {
		return &cli.ExitError{Code: 2, Err: err}
	}
	t, err := checkType(*typ)
	if err != nil {
		return err
	}
	c, err := dm.dial(t)
	if err != nil {
		return err
	}
	defer c.Close()
	if *timeout > 0 {
		c.SetDeadline(time.Now().Add(*timeout))
	}
	for i := 0; *n == 0 || i < *n; i++ {
		if !dm.tagged {
			src, typ, body, err := c.Recv()
			if err != nil {
				return fmt.Errorf("recv: %w", err)
			}
			fmt.Fprintf(stdout, "%d %d %x\n", src, typ, body)
			continue
		}
		src, tag, typ, body, err := c.RecvTag()
		if err != nil {
			return fmt.Errorf("recv: %w", err)
		}
		to := 0
		if tag&mctp.TagOwner != 0 {
			to = 1
		}
		fmt.Fprintf(stdout, "%d %d %x to=%d tag=%d\n", src, typ, body, to, tag&mctp.TagValue)
	}
	return nil
}

// ctrlCmds maps the CLI's names to control command codes and their
// request arguments.
var ctrlCmds = map[string]struct {
	code byte
	args []byte
}{
	"get-eid":     {mctp.CmdGetEID, nil},
	"get-version": {mctp.CmdGetVersion, []byte{0xff}},
	"get-types":   {mctp.CmdGetMessageType, nil},
	"get-uuid":    {mctp.CmdGetUUID, nil},
}

func ctrl(dm target, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return cli.Usage("ctrl: want get-eid, get-version, get-types or get-uuid")
	}
	cc, ok := ctrlCmds[args[0]]
	if !ok {
		return cli.Usage("ctrl: unknown request %q", args[0])
	}
	fs := flag.NewFlagSet("mctp ctrl "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	eid := byteFlag(fs, "eid", "endpoint to ask")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the reply")
	if err := fs.Parse(args[1:]); err != nil {
		return &cli.ExitError{Code: 2, Err: err}
	}
	e, err := checkByte("eid", *eid)
	if err != nil {
		return err
	}
	c, err := dm.dial(mctp.TypeControlReplies)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(*timeout))
	inst := byte(os.Getpid()) & 0x1f
	req := append([]byte{0x80 | inst, cc.code}, cc.args...)
	if dm.tagged {
		err = c.SendTag(e, mctp.TagRequest, mctp.TypeControl, req)
	} else {
		err = c.SendType(e, mctp.TypeControl, req)
	}
	if err != nil {
		return fmt.Errorf("ctrl: send: %w", err)
	}
	for {
		var src, tag byte
		var body []byte
		if dm.tagged {
			src, tag, _, body, err = c.RecvTag()
		} else {
			src, _, body, err = c.Recv()
		}
		if err != nil {
			return fmt.Errorf("ctrl: no reply from EID %d: %w", e, err)
		}
		if dm.tagged && tag == mctp.TagError {
			return fmt.Errorf("ctrl: %w", tagError(src, mctp.TypeControl, body))
		}
		// Other type 0 clients' traffic arrives too on the plain demux:
		// take only our reply. A tagged reply is ours by its tag, and
		// one to a request for the null or broadcast EID comes from
		// the endpoint's own EID.
		if (!dm.tagged && src != e) || len(body) < 3 || body[0] != inst || body[1] != cc.code {
			continue
		}
		return decodeReply(stdout, cc.code, body[2], body[3:])
	}
}

// decodeReply prints a control reply's fields; cc is the completion
// code and data what follows it.
func decodeReply(w io.Writer, cmd, cc byte, data []byte) error {
	if cc != mctp.CCSuccess {
		return fmt.Errorf("completion code %#02x", cc)
	}
	short := fmt.Errorf("reply too short: % x", data)
	switch cmd {
	case mctp.CmdGetEID:
		if len(data) < 3 {
			return short
		}
		fmt.Fprintf(w, "eid %d type %#02x medium %#02x\n", data[0], data[1], data[2])
	case mctp.CmdGetVersion:
		if len(data) < 1 || len(data) < 1+4*int(data[0]) {
			return short
		}
		for i := 0; i < int(data[0]); i++ {
			v := data[1+4*i : 5+4*i]
			fmt.Fprintf(w, "%s\n", formatVersion(v))
		}
	case mctp.CmdGetMessageType:
		if len(data) < 1 || len(data) < 1+int(data[0]) {
			return short
		}
		var ts []string
		for _, t := range data[1 : 1+int(data[0])] {
			ts = append(ts, fmt.Sprint(t))
		}
		fmt.Fprintf(w, "types %s\n", strings.Join(ts, " "))
	case mctp.CmdGetUUID:
		if len(data) < 16 {
			return short
		}
		fmt.Fprintf(w, "uuid %s\n", mctp.FormatUUID([16]byte(data[:16])))
	}
	return nil
}

// formatVersion renders a DSP0236 BCD version (major, minor, update,
// alpha; 0xF nibbles mark absent digits) as "1.3.3".
func formatVersion(v []byte) string {
	digit := func(b byte) string {
		if b == 0xff {
			return ""
		}
		if b>>4 == 0xf {
			return fmt.Sprint(b & 0xf)
		}
		return fmt.Sprintf("%d%d", b>>4, b&0xf)
	}
	s := digit(v[0]) + "." + digit(v[1])
	if u := digit(v[2]); u != "" {
		s += "." + u
	}
	return s
}
