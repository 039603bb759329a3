package notify

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/backoff"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/notify/internal/alerttest"
	"github.com/vigil-k8s/vigil/notify/internal/retry"
)

// newSend is the send stage of destination siem with n as its receiver.
func (e *env) newSend(n Notifier, clk *clock) *send {
	return &send{
		notifier: n, timeout: 5 * time.Second, maxAttempts: 5, maxAge: time.Hour,
		backoff: backoff.Policy{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond},
		now:     clk.now, settle: e.settler("siem"),
		failures: e.m.NotifyFailures.WithLabelValues("siem"), logger: slog.New(slog.DiscardHandler),
	}
}

func failing(retry bool, err error) Notifier {
	return notifierFunc(func(context.Context, ...*alert.Alert) (bool, error) { return retry, err })
}

// deadReason is the reason of siem's only dead letter.
func (e *env) deadReason() string {
	e.t.Helper()
	waitFor(e.t, "the dead letter", func() bool { return len(e.deadLetters("siem")) == 1 })
	return e.deadLetters("siem")[0].Header.Get(bus.HeaderReason)
}

func TestSendLeavesADeliveredNotificationToTheNextStage(t *testing.T) {
	e := newEnv(t)
	items := e.fetched("siem", alerttest.Many(3)...)
	var got []string
	s := e.newSend(notifierFunc(func(_ context.Context, alerts ...*alert.Alert) (bool, error) {
		for _, a := range alerts {
			got = append(got, a.ID)
		}
		return false, nil
	}), newClock())
	if err := s.exec(context.Background(), items); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Errorf("one notification carried %v, want the 3 alerts", got)
	}
	if n := e.ackPending("siem")(); n != 3 {
		t.Errorf("%d alerts still held, want 3: settling a delivery is the last stage's", n)
	}
}

func TestSendDeadLettersWhatCannotSucceed(t *testing.T) {
	e := newEnv(t)
	s := e.newSend(failing(false, errors.New("webhook: receiver answered 400 Bad Request")), newClock())
	if err := s.exec(context.Background(), e.fetched("siem", alerttest.Sample())); err == nil {
		t.Fatal("a failed notification returned no error")
	}
	if r := e.deadReason(); r != "not retryable: webhook: receiver answered 400 Bad Request" {
		t.Errorf("dead-letter reason %q", r)
	}
	if n := testutil.ToFloat64(s.failures); n != 1 {
		t.Errorf("failures counted %v, want 1", n)
	}
}

func TestSendGivesUpAfterMaxAttempts(t *testing.T) {
	e := newEnv(t)
	s := e.newSend(failing(true, errors.New("503")), newClock())
	s.maxAttempts = 1
	_ = s.exec(context.Background(), e.fetched("siem", alerttest.Sample()))
	if r := e.deadReason(); r != "gave up after 1 attempts: 503" {
		t.Errorf("dead-letter reason %q", r)
	}
}

// A retryable failure hands the alert back for a redelivery after the
// backoff; the attempt count is JetStream's.
func TestSendRetriesThroughRedelivery(t *testing.T) {
	e := newEnv(t)
	c := e.consumer("siem", time.Minute)
	e.publish(alerttest.Sample())
	s := e.newSend(failing(true, errors.New("503")), newClock())
	_ = s.exec(context.Background(), e.fetch(c, 1))
	again := e.fetch(c, 1)
	if n := again[0].attempts(); n != 2 {
		t.Errorf("redelivered as attempt %d, want 2", n)
	}
	if dl := e.deadLetters("siem"); len(dl) != 0 {
		t.Errorf("%d dead letters for a retried alert", len(dl))
	}
}

// A Retry-After longer than the backoff is the delay: here one that would
// take the alert past max_age, so it is dead-lettered.
func TestSendTakesRetryAfterAsTheDelay(t *testing.T) {
	e := newEnv(t)
	s := e.newSend(failing(true, &retry.After{Wait: 2 * time.Hour, Err: errors.New("429")}), newClock())
	_ = s.exec(context.Background(), e.fetched("siem", alerttest.Sample()))
	if r := e.deadReason(); !strings.HasPrefix(r, "older than max_age 1h0m0s after 1 attempts: 429") {
		t.Errorf("dead-letter reason %q", r)
	}
}

// Each attempt ends at the destination's timeout and counts as a failure.
func TestSendBoundsAnAttemptByTheTimeout(t *testing.T) {
	e := newEnv(t)
	c := e.consumer("siem", time.Minute)
	e.publish(alerttest.Sample())
	s := e.newSend(notifierFunc(func(ctx context.Context, _ ...*alert.Alert) (bool, error) {
		<-ctx.Done()
		return true, ctx.Err()
	}), newClock())
	s.timeout = 50 * time.Millisecond
	if err := s.exec(context.Background(), e.fetch(c, 1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("exec = %v, want the timeout", err)
	}
	if n := testutil.ToFloat64(s.failures); n != 1 {
		t.Errorf("failures counted %v, want 1", n)
	}
	e.fetch(c, 1) // retried
}

// A notifier stopping mid-notification hands the alerts back at once and
// spends no attempt: it was not the receiver's fault.
func TestSendStoppingSpendsNoAttempt(t *testing.T) {
	e := newEnv(t)
	c := e.consumer("siem", time.Minute)
	e.publish(alerttest.Sample())
	ctx, cancel := context.WithCancel(context.Background())
	s := e.newSend(notifierFunc(func(context.Context, ...*alert.Alert) (bool, error) {
		cancel()
		return true, errors.New("connection reset")
	}), newClock())
	s.backoff = backoff.Policy{Initial: time.Hour, Max: time.Hour}
	if err := s.exec(ctx, e.fetch(c, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("exec = %v, want the cancellation", err)
	}
	if n := testutil.ToFloat64(s.failures); n != 0 {
		t.Errorf("failures counted %v while stopping, want 0", n)
	}
	e.fetch(c, 1) // handed back at once, not after the hour's backoff
}
