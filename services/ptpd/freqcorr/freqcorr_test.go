package freqcorr

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// The files under testdata hold what sfptpd_log_write_freq_correction
// writes ("%Lf\n") for 1204.113 and -0.0000004 ppb.
func TestFormatGolden(t *testing.T) {
	tests := []struct {
		file string
		ppb  float64
	}{
		{"freq-correction", 1204.113},
		{"freq-correction-negative", -0.0000004},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if got := Format(tc.ppb); string(got) != string(want) {
				t.Fatalf("Format(%v) = %q, want %q", tc.ppb, got, want)
			}
			v, err := Parse(want)
			if err != nil || math.Abs(v-tc.ppb) > 5e-7 {
				t.Fatalf("Parse(%q) = %v, %v", want, v, err)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"1204.113000\n", 1204.113, true},
		{"  -12.5  \n", -12.5, true},
		{"1e3\n", 1000, true},
		{"", 0, false},
		{"\n", 0, false},
		{"1 2\n", 0, false},
		{"nan\n", 0, false},
		{"inf\n", 0, false},
		{"12.5abc\n", 0, false},
	}
	for _, tc := range tests {
		v, err := Parse([]byte(tc.in))
		if tc.ok != (err == nil) || v != tc.want {
			t.Errorf("Parse(%q) = %v, %v", tc.in, v, err)
		}
		if err != nil && !errors.Is(err, ErrNoData) {
			t.Errorf("Parse(%q) error %v does not wrap ErrNoData", tc.in, err)
		}
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	if err := Save(dir, "system", -321.5, 500000); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "freq-correction-system"))
	if err != nil || string(b) != "-321.500000\n" {
		t.Fatalf("file %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".next.freq-correction-system")); !os.IsNotExist(err) {
		t.Fatal("temporary file left behind")
	}
	if v, err := Load(dir, "system", 500000); err != nil || v != -321.5 {
		t.Fatalf("Load = %v, %v", v, err)
	}
	// Beyond the clock's range: not saved, and a file beyond it is not
	// used and is deleted.
	if err := Save(dir, "system", 600000, 500000); err == nil {
		t.Fatal("out-of-range correction saved")
	}
	if v, err := Load(dir, "system", 100); !errors.Is(err, ErrNoData) || v != 0 {
		t.Fatalf("out of range Load = %v, %v", v, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "freq-correction-system")); !os.IsNotExist(err) {
		t.Fatal("out-of-range file not deleted")
	}
	// Missing and garbage files.
	if _, err := Load(dir, "phc9", 0); !errors.Is(err, ErrNoData) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "freq-correction-bad"), []byte("garbage\n"), 0o644)
	if _, err := Load(dir, "bad", 0); !errors.Is(err, ErrNoData) {
		t.Fatalf("garbage file: %v", err)
	}
	big := make([]byte, maxFile+10)
	for i := range big {
		big[i] = ' '
	}
	os.WriteFile(filepath.Join(dir, "freq-correction-big"), big, 0o644)
	if _, err := Load(dir, "big", 0); !errors.Is(err, ErrNoData) {
		t.Fatalf("oversized file: %v", err)
	}
	// An unwritable directory: the OS error is kept.
	if err := Save(filepath.Join(dir, "missing"), "system", 1, 0); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("save into a missing directory: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrNoData) {
				t.Fatalf("error %v does not wrap ErrNoData", err)
			}
			return
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatalf("Parse(%q) = %v", b, v)
		}
		// What Format writes, Parse reads back within the six decimals.
		w, err := Parse(Format(v))
		if err != nil || math.Abs(w-v) > 5e-7+math.Abs(v)*1e-15 {
			t.Fatalf("round trip of %v: %v, %v", v, w, err)
		}
	})
}
