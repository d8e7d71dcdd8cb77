package ctxtime

import (
	"context"
	"testing"
	"time"
)

func TestSleep(t *testing.T) {
	tests := []struct {
		name   string
		d      time.Duration
		cancel time.Duration // after this the context ends; 0: never
		want   bool
	}{
		{name: "sleeps its time", d: 20 * time.Millisecond, want: true},
		{name: "ends with the context", d: time.Hour, cancel: 10 * time.Millisecond, want: false},
		{name: "context already ended", d: time.Hour, cancel: -1, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			switch {
			case tc.cancel < 0:
				cancel()
			case tc.cancel > 0:
				time.AfterFunc(tc.cancel, cancel)
			}
			start := time.Now()
			got := Sleep(ctx, tc.d)
			el := time.Since(start)
			if got != tc.want {
				t.Fatalf("Sleep = %v, want %v", got, tc.want)
			}
			if tc.want && el < tc.d {
				t.Fatalf("returned after %v, before %v", el, tc.d)
			}
			if !tc.want && el > time.Minute {
				t.Fatalf("returned only after %v", el)
			}
		})
	}
}
