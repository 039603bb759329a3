package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDelayDoublesUpToMax(t *testing.T) {
	p := Policy{Initial: 100 * time.Millisecond, Max: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := p.Delay(i + 1); got != w*time.Millisecond {
			t.Errorf("Delay(%d) = %s, want %s", i+1, got, w*time.Millisecond)
		}
	}
	if got := p.Delay(10_000); got != time.Second {
		t.Errorf("Delay(10000) = %s, want the cap", got)
	}
}

func TestJitterStaysInTheUpperHalf(t *testing.T) {
	p := Policy{Initial: time.Second, Max: time.Minute, Jitter: true}
	seen := map[time.Duration]bool{}
	for range 1000 {
		d := p.Delay(3) // 4 s before jitter
		if d < 2*time.Second || d > 4*time.Second {
			t.Fatalf("jittered Delay(3) = %s, want within [2s, 4s]", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Errorf("jitter gave %d distinct waits over 1000 draws", len(seen))
	}
}

func TestSequenceResetsAfterSuccess(t *testing.T) {
	s := Policy{Initial: time.Second, Max: 4 * time.Second}.Sequence()
	for _, want := range []time.Duration{1, 2, 4, 4} {
		if got := s.Next(); got != want*time.Second {
			t.Fatalf("Next = %s, want %s", got, want*time.Second)
		}
	}
	if s.Failures() != 4 {
		t.Errorf("Failures = %d, want 4", s.Failures())
	}
	s.Reset()
	if got := s.Next(); got != time.Second {
		t.Errorf("Next after Reset = %s, want 1s", got)
	}
}

func TestRetryUntilSuccessReportingEachFailure(t *testing.T) {
	calls := 0
	var waits []time.Duration
	err := Retry(context.Background(), Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond}, func(context.Context) error {
		calls++
		if calls < 4 {
			return errors.New("not yet")
		}
		return nil
	}, OnRetry(func(_ error, attempt int, wait time.Duration) {
		if attempt != len(waits)+1 {
			t.Errorf("attempt %d reported after %d", attempt, len(waits))
		}
		waits = append(waits, wait)
	}))
	if err != nil || calls != 4 {
		t.Fatalf("Retry = %v after %d calls, want nil after 4", err, calls)
	}
	if len(waits) != 3 || waits[0] != time.Millisecond || waits[2] != 2*time.Millisecond {
		t.Errorf("waits = %v, want [1ms 2ms 2ms]", waits)
	}
}

func TestRetryBoundedAttemptsReturnsTheLastError(t *testing.T) {
	calls := 0
	last := errors.New("third")
	err := Retry(context.Background(), Policy{Initial: time.Microsecond, Max: time.Microsecond}, func(context.Context) error {
		calls++
		if calls == 3 {
			return last
		}
		return errors.New("earlier")
	}, Attempts(3))
	if !errors.Is(err, last) || calls != 3 {
		t.Fatalf("Retry = %v after %d calls, want the third error after 3", err, calls)
	}
}

func TestRetryStopsWhenTheContextIsDone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	failure := errors.New("down")
	err := Retry(ctx, Policy{Initial: time.Hour, Max: time.Hour}, func(context.Context) error { return failure },
		OnRetry(func(error, int, time.Duration) { cancel() }))
	if !errors.Is(err, context.Canceled) || !errors.Is(err, failure) {
		t.Fatalf("Retry = %v, want both the cancellation and the last failure", err)
	}
}

func TestWait(t *testing.T) {
	if err := Wait(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("Wait = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Wait(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on a done context = %v", err)
	}
}
