package ctl

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTokenize(t *testing.T) {
	many := strings.Repeat("a ", MaxTextTokens)
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "", want: nil},
		{in: " \t\r\n ", want: nil},
		{in: "mdio_read 1 1", want: []string{"mdio_read", "1", "1"}},
		{in: "  a\tb  c  ", want: []string{"a", "b", "c"}},
		{in: `'a b' "c d"`, want: []string{"a b", "c d"}},
		{in: `"" ''`, want: []string{"", ""}},
		{in: `a""b`, want: []string{"ab"}},
		{in: `x"y z"w`, want: []string{"xy zw"}},
		{in: `"a\"b"`, want: []string{`a"b`}},
		{in: `"a\\b"`, want: []string{`a\b`}},
		{in: `"a\nb\tc"`, want: []string{"a\nb\tc"}},
		{in: `"a\qb"`, want: []string{"aqb"}},
		{in: `'a\nb'`, want: []string{`a\nb`}},
		{in: `'it''s'`, want: []string{"its"}},
		{in: `a\ b`, want: []string{"a b"}},
		{in: `\'x`, want: []string{"'x"}},
		{in: `a # comment "unclosed`, want: []string{"a"}},
		{in: `# only a comment`, want: nil},
		{in: `a#b`, want: []string{"a#b"}},
		{in: `"#x" \#y`, want: []string{"#x", "#y"}},
		{in: `--phy=0x1 --address=1`, want: []string{"--phy=0x1", "--address=1"}},
		{in: "\"multi\nline\"", want: []string{"multi\nline"}},
		{in: `"abc`, wantErr: "unterminated quote"},
		{in: `'abc`, wantErr: "unterminated quote"},
		{in: `abc\`, wantErr: "unterminated escape"},
		{in: `"abc\`, wantErr: "unterminated escape"},
		{in: many, want: strings.Fields(many)},
		{in: many + "b", wantErr: "too many arguments"},
	}
	for _, tc := range tests {
		got, err := Tokenize(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Tokenize(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Tokenize(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Tokenize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseText(t *testing.T) {
	tests := []struct {
		in      string
		want    TextCommand
		wantErr string
	}{
		{in: "", want: TextCommand{}},
		{in: "# c", want: TextCommand{}},
		{in: "list-commands", want: TextCommand{Name: "list-commands"}},
		{in: "mdio_read 1 0x1", want: TextCommand{Name: "mdio_read", Input: Input{Positional: []string{"1", "0x1"}}}},
		{in: "mdio_read --phy=1 --address=0x1f", want: TextCommand{Name: "mdio_read",
			Input: Input{Named: map[string]any{"phy": "1", "address": "0x1f"}}}},
		{in: "x --flag", want: TextCommand{Name: "x", Input: Input{Named: map[string]any{"flag": "true"}}}},
		{in: "x --help", want: TextCommand{Name: "x", Help: true}},
		{in: "x --help=y", want: TextCommand{Name: "x", Input: Input{Named: map[string]any{"help": "y"}}}},
		{in: "x -- --a=1 -b", want: TextCommand{Name: "x", Input: Input{Positional: []string{"--a=1", "-b"}}}},
		{in: "x -b --", want: TextCommand{Name: "x", Input: Input{Positional: []string{"-b"}}}},
		{in: `x --name="a b" pos`, want: TextCommand{Name: "x",
			Input: Input{Named: map[string]any{"name": "a b"}, Positional: []string{"pos"}}}},
		{in: "x --a=1 --a=2", wantErr: "parameter 'a' is given twice"},
		{in: `x "abc`, wantErr: "unterminated quote"},
	}
	for _, tc := range tests {
		got, err := ParseText(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseText(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseText(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseText(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// quoteToken writes tok so that Tokenize reads it back unchanged: inside
// double quotes only '"' and '\' need a backslash.
func quoteToken(tok string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(tok); i++ {
		if tok[i] == '"' || tok[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(tok[i])
	}
	b.WriteByte('"')
	return b.String()
}

// FuzzTokenize checks that tokenizing never panics, stays within its
// bounds, and that quoting the tokens and tokenizing again gives the same
// tokens; ParseText must agree with Tokenize on the command name.
func FuzzTokenize(f *testing.F) {
	for _, s := range []string{
		"mdio_read 1 1", `echo "a b" 'c d' e\ f ""`, `x --phy=0x1 --help # c`,
		`"a\"b\\c\n"`, `'unterminated`, `trailing\`, "tab\tsep\r\n", `a#b # c`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		toks, err := Tokenize(line)
		tc, perr := ParseText(line)
		// ParseText fails when Tokenize does, and otherwise only on a
		// repeated --name.
		if err != nil && perr == nil || err == nil && perr != nil && !strings.Contains(perr.Error(), "given twice") {
			t.Fatalf("Tokenize error %v but ParseText error %v", err, perr)
		}
		if err != nil {
			return
		}
		if len(toks) > MaxTextTokens {
			t.Fatalf("%d tokens, more than %d", len(toks), MaxTextTokens)
		}
		n := 0
		for _, tok := range toks {
			n += len(tok)
		}
		if n > len(line) {
			t.Fatalf("tokens hold %d bytes, more than the %d-byte line", n, len(line))
		}
		if len(toks) > 0 && perr == nil && tc.Name != toks[0] {
			t.Fatalf("ParseText name %q, Tokenize first token %q", tc.Name, toks[0])
		}
		quoted := make([]string, len(toks))
		for i, tok := range toks {
			quoted[i] = quoteToken(tok)
		}
		again, err := Tokenize(strings.Join(quoted, " "))
		if err != nil {
			t.Fatalf("re-tokenizing %q: %v", quoted, err)
		}
		if len(again) != len(toks) || (len(toks) > 0 && !reflect.DeepEqual(again, toks)) {
			t.Fatalf("round trip: %q became %q", toks, again)
		}
		if utf8.ValidString(line) {
			for _, tok := range toks {
				if !utf8.ValidString(tok) {
					t.Fatalf("valid UTF-8 line gave invalid token %q", tok)
				}
			}
		}
	})
}
