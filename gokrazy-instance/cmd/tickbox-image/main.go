// Command tickbox-image builds the tickbox gokrazy image, writes it to a
// card or disk, and boots it in qemu. ./flash.sh runs its flash
// sub-command, which does all three the way flash.sh always has.
//
//	tickbox-image build [options]            build the image into a file
//	tickbox-image write [options] DEVICE     write a built image to DEVICE, after the safety checks
//	tickbox-image boot [options]             boot a built amd64 or arm64 image in qemu
//	tickbox-image flash [options] [DEVICE]   flash.sh: check, build, then boot, keep or write
//	tickbox-image update [options] [HOST:PORT]  build (or take --image) and push it to a running box
//
// The files: main.go (sub-commands, signals, exit statuses), options.go
// (the option parser and the checks of option values), build.go (the image
// build), device.go (the device checks and the write), boot.go (the KVM
// probe, the qemu command lines, waiting for the web UI), host.go (finding
// tools, busy ports, installing qemu), packages.go (the check of the
// target's kernel, firmware and EEPROM packages before gok runs), image.go
// (reading and checking a built image's partitions), update.go (pushing an
// image to a running box with gokrazy's update protocol).
//
// Exit statuses (internal/cli): 0 done, 1 failure, 2 usage error; a signal
// during a build or boot exits 128+signal, as a shell would. flash keeps
// flash.sh's promise that every refusal, usage errors included, is one
// "flash.sh: ..." line and status 1.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tickbox-fw/tickbox/internal/cli"
)

// progName is the prefix of every message line. The flash sub-command
// speaks as flash.sh, whose messages it keeps.
func progName(args []string) string {
	if len(args) > 0 && args[0] == "flash" {
		return "flash.sh"
	}
	return "tickbox-image"
}

const topUsage = `Usage:
  tickbox-image build [options]            build the image into a file
  tickbox-image write [options] DEVICE     write a built image to DEVICE (e.g. /dev/sdX)
  tickbox-image boot [options]             boot a built amd64 or arm64 image in qemu
  tickbox-image flash [options] [DEVICE]   what ./flash.sh does: build, then boot in qemu,
                                           keep the image (--image) or write it to DEVICE
  tickbox-image update [options] [HOST:PORT]
                                           build the image, or take a built one (--image), and
                                           push it to the box whose web UI is HOST:PORT
Run tickbox-image COMMAND --help for a command's options.
`

// signalError is the cancellation cause when a signal stops the program.
type signalError struct{ sig syscall.Signal }

func (s signalError) Error() string { return "stopped by " + s.sig.String() }

// run runs one sub-command; see the package comment.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	e := &env{
		getenv: os.Getenv,
		stdin:  os.Stdin,
		stdout: stdout,
		stderr: stderr,
		prog:   progName(args),
		host:   realHost(),
	}
	return e.run(ctx, args)
}

func (e *env) run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, topUsage)
		return cli.Usage("no command given")
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(e.stdout, topUsage)
		return nil
	case "build", "write", "boot", "update":
		o, err := e.parse(args[0], args[1:])
		if err != nil || o.help {
			return err
		}
		switch args[0] {
		case "build":
			return e.buildCmd(ctx, o)
		case "write":
			return e.writeCmd(ctx, o)
		case "update":
			return e.updateCmd(ctx, o)
		default:
			return e.bootCmd(ctx, o)
		}
	case "flash":
		o, err := e.parse("flash", args[1:])
		if err != nil {
			// flash.sh exits 1 on every refusal, usage errors too.
			return cli.Exit(1, err)
		}
		if o.help {
			return nil
		}
		return e.flash(ctx, o)
	}
	fmt.Fprint(e.stderr, topUsage)
	return cli.Usage("unknown command %q", args[0])
}

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		cancel(signalError{s.(syscall.Signal)})
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err == nil {
		os.Exit(0)
	}
	var se signalError
	if errors.As(context.Cause(ctx), &se) {
		// flash.sh exited 130 on Ctrl-C and 143 on SIGTERM, quietly.
		os.Exit(128 + int(se.sig))
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", progName(os.Args[1:]), err)
	os.Exit(cli.Code(err, 1))
}
