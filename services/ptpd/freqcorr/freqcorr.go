// Package freqcorr saves and restores a clock's frequency correction in
// sfptpd's freq-correction-CLOCK files, so that a restarted daemon starts
// its clocks near the right frequency instead of at zero and does not
// have to walk a large offset back in.
package freqcorr

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// FilePrefix starts every correction file's name; the clock's name for
// files follows ("system", or a PHC's EUI-64 "0011:22ff:fe33:4455").
const FilePrefix = "freq-correction-"

// maxFile bounds what is read: the file holds one number.
const maxFile = 4096

// ErrNoData means there is no usable saved correction (sfptpd's
// ENODATA): no file, or a file that does not hold a number in range.
var ErrNoData = errors.New("no saved frequency correction")

// FileName returns the file name for a clock.
func FileName(clock string) string { return FilePrefix + clock }

// Format renders a correction as sfptpd writes it ("%Lf\n": six
// decimals).
func Format(ppb float64) []byte {
	return append(strconv.AppendFloat(nil, ppb, 'f', 6, 64), '\n')
}

// Parse reads a correction file's content: one number, leading and
// trailing blanks allowed. Anything else is an error wrapping
// ErrNoData.
func Parse(b []byte) (float64, error) {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return 0, fmt.Errorf("empty file: %w", ErrNoData)
	}
	if f := strings.Fields(s); len(f) != 1 {
		return 0, fmt.Errorf("more than one value: %w", ErrNoData)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("not a number %.32q: %w", s, ErrNoData)
	}
	return v, nil
}

// Save writes ppb to dir/freq-correction-CLOCK atomically (a temporary
// .next. file renamed over the old one). A value beyond ±maxPPB is not
// saved, as sfptpd refuses to keep a correction the clock cannot apply;
// maxPPB <= 0 means no limit.
func Save(dir, clock string, ppb, maxPPB float64) error {
	if math.IsNaN(ppb) || math.IsInf(ppb, 0) || (maxPPB > 0 && math.Abs(ppb) > maxPPB) {
		return fmt.Errorf("freq-correction %s: %v ppb is outside ±%v ppb, not saved", clock, ppb, maxPPB)
	}
	name := FileName(clock)
	tmp := filepath.Join(dir, ".next."+name)
	if err := os.WriteFile(tmp, Format(ppb), 0o644); err != nil {
		return fmt.Errorf("freq-correction %s: %w", clock, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("freq-correction %s: %w", clock, err)
	}
	return nil
}

// Load reads the saved correction of clock from dir. A missing file, a
// bad file and a value beyond ±maxPPB (maxPPB <= 0: no limit) all
// return an error wrapping ErrNoData and 0; an out-of-range or
// unreadable file is deleted, as sfptpd deletes it, so that it is not
// tried again.
func Load(dir, clock string, maxPPB float64) (float64, error) {
	path := filepath.Join(dir, FileName(clock))
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("freq-correction %s: %w: %w", clock, ErrNoData, err)
		}
		return 0, fmt.Errorf("freq-correction %s: %w", clock, err)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("freq-correction %s: %w", clock, err)
	}
	if len(b) > maxFile {
		os.Remove(path)
		return 0, fmt.Errorf("freq-correction %s: file larger than %d bytes: %w", clock, maxFile, ErrNoData)
	}
	v, err := Parse(b)
	if err != nil {
		os.Remove(path)
		return 0, fmt.Errorf("freq-correction %s: %w", clock, err)
	}
	if maxPPB > 0 && math.Abs(v) > maxPPB {
		os.Remove(path)
		return 0, fmt.Errorf("freq-correction %s: saved %s ppb is outside ±%v ppb: %w", clock, strconv.FormatFloat(v, 'f', 3, 64), maxPPB, ErrNoData)
	}
	return v, nil
}
