package cli

import (
	"errors"
	"fmt"
	"testing"
)

func TestCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{Usage("bad %s", "flag"), 2},
		{Exit(1, errors.New("failed")), 1},
		{fmt.Errorf("wrapped: %w", Exit(3, errors.New("x"))), 3},
		{errors.New("plain"), 7},
	}
	for _, tc := range tests {
		if got := Code(tc.err, 7); got != tc.want {
			t.Errorf("Code(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	if got := Usage("bad %q", "x").Error(); got != `bad "x"` {
		t.Errorf("Usage text %q", got)
	}
}
