package notify

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/notify/internal/retry"
)

func TestRateLimitPausesForRetryAfter(t *testing.T) {
	clk := newClock()
	l := newRateLimit(0, clk.now)
	if d := l.paused(); d > 0 {
		t.Fatalf("paused %s before any failure", d)
	}
	l.honour(errors.New("500 without Retry-After"))
	if d := l.paused(); d > 0 {
		t.Errorf("paused %s by a failure that asked for no pause", d)
	}
	l.honour(&retry.After{Wait: 2 * time.Second, Err: errors.New("429")})
	if d := l.paused(); d != 2*time.Second {
		t.Errorf("paused %s after Retry-After: 2, want 2s", d)
	}
	clk.advance(2 * time.Second)
	if d := l.paused(); d > 0 {
		t.Errorf("still paused %s after the pause", d)
	}
}

// A stopping notifier does not wait out a pause or the rate.
func TestRateLimitWaitEndsWithTheContext(t *testing.T) {
	l := newRateLimit(0, time.Now)
	l.honour(&retry.After{Wait: time.Hour, Err: errors.New("429")})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("wait during a pause with a cancelled context = %v", err)
	}
	slow := newRateLimit(0.001, time.Now)
	if err := slow.wait(context.Background()); err != nil {
		t.Fatalf("the first notification waited: %v", err)
	}
	if err := slow.wait(ctx); err == nil {
		t.Error("wait for a token with a cancelled context succeeded")
	}
}

func TestFetchBatchIsBoundedByTheRate(t *testing.T) {
	for _, tc := range []struct {
		rate float64
		want int
	}{
		{0, 100},    // unlimited
		{1000, 100}, // faster than a batch per ack wait
		{1, 15},     // Slack: half an ack wait of 30s
		{0.01, 1},   // never less than one
	} {
		if got := fetchBatch(100, tc.rate, 30*time.Second); got != tc.want {
			t.Errorf("fetchBatch(100, %v/s, 30s) = %d, want %d", tc.rate, got, tc.want)
		}
	}
}
