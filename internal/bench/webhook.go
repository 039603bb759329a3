package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/ingest/webhook"
	"github.com/vigil-k8s/vigil/internal/bus"
)

// runWebhook posts the workload as EventLists from concurrent clients, as a
// fleet of apiservers' webhook backends would, and counts what JetStream
// acknowledged: the receiver answers 200 only after every PubAck. With
// segments the receiver stores them as `vigil run` does; without, one
// message per event, as it did before segments, for comparison.
func runWebhook(ctx context.Context, w *Workload, n, clients, batch int, segments bool, dir string, logger *slog.Logger) (*Webhook, error) {
	emb, err := bus.StartEmbedded(dir, "", logger)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer emb.Shutdown()
	nc, js, err := bus.Connect("", emb.ConnectOptions()...)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer nc.Close()
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		return nil, fmt.Errorf("bench: provision JetStream: %w", err)
	}
	// Plain HTTP on loopback: TLS would measure crypto, not vigil.
	srv, err := webhook.New(webhook.Options{Listen: "127.0.0.1:0", Insecure: true}, logger)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	pub := bus.NewPublisher(js, "bench")
	if segments {
		pub = bus.NewSegmentPublisher(js, "bench", bus.SegmentOptions{})
	}
	go func() { done <- srv.Run(rctx, pub) }()
	defer func() {
		cancel()
		_ = <-done //nolint:staticcheck // the receiver's stop error says nothing the bench reports
	}()

	url := "http://" + srv.Addr().String() + "/audit"
	tr := &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	batches := (n + batch - 1) / batch
	var (
		next     atomic.Int64
		failures atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
		ms       runtime.MemStats
	)
	runtime.ReadMemStats(&ms)
	m0, b0 := ms.Mallocs, ms.TotalAlloc
	start, cpu0 := time.Now(), cpuTime()
	for range clients {
		wg.Go(func() {
			var body []byte
			for ctx.Err() == nil {
				b := int(next.Add(1)) - 1
				if b >= batches {
					return
				}
				from := b * batch
				body = w.EventList(body[:0], from, min(batch, n-from))
				if err := post(ctx, client, url, body); err != nil {
					failures.Add(1)
					errOnce.Do(func() { firstErr = err })
				}
			}
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	runtime.ReadMemStats(&ms)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := &Webhook{Throughput: throughput(n, elapsed, cpu, ms.Mallocs-m0, ms.TotalAlloc-b0), Clients: clients, Batch: batch, Requests: batches, Segments: segments}
	if res.Messages, res.Stored, err = storedEvents(ctx, js); err != nil {
		return nil, err
	}
	res.Failed = int(failures.Load())
	if f := res.Failed; f > 0 {
		logger.Warn("webhook requests failed", "failed", f, "first", firstErr)
	}
	return res, nil
}

func post(ctx context.Context, client *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

// storedEvents reads AUDIT back, after the clock stopped, and counts its
// messages and the events they hold: with segments the one is not the
// other, and the receiver's word is what is being checked.
func storedEvents(ctx context.Context, js jetstream.JetStream) (messages, events int, err error) {
	st, err := js.Stream(ctx, bus.StreamAudit)
	if err != nil {
		return 0, 0, fmt.Errorf("bench: AUDIT stream: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("bench: AUDIT stream: %w", err)
	}
	total := int(info.State.Msgs)
	c, err := js.OrderedConsumer(ctx, bus.StreamAudit, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return 0, 0, fmt.Errorf("bench: read AUDIT: %w", err)
	}
	for messages < total {
		batch, err := c.Fetch(min(256, total-messages), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return 0, 0, fmt.Errorf("bench: read AUDIT: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			evs, err := bus.SegmentEvents(m.Headers(), m.Data())
			if err != nil {
				return 0, 0, fmt.Errorf("bench: read AUDIT: %w", err)
			}
			events += len(evs)
			got++
		}
		if got == 0 {
			return 0, 0, fmt.Errorf("bench: read AUDIT: %d of %d messages: %w", messages, total, batch.Error())
		}
		messages += got
	}
	return messages, events, nil
}
