package bus_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/bench"
	"github.com/vigil-k8s/vigil/internal/bus"
)

// BenchmarkJetStreamFloor measures what the pipeline's messaging alone
// costs, with none of vigil's work: the bench workload's events published
// in batches of 400 through the ingest publisher into the embedded server
// with file storage (each acknowledged), then consumed through the engine's
// consumer and acknowledged one by one, as a worker does, and both at once.
// It bounds what
// the end-to-end and webhook phases of `vigil bench` can reach on a
// machine, whatever the engine's speed. The sub-benchmarks under
// "segments" do the same with the events joined in segments of the
// default bounds (Cut), as the webhook stores them, and count events, not
// messages.
//
//	go test -run '^$' -bench JetStreamFloor -benchtime 100000x ./internal/bus
func BenchmarkJetStreamFloor(b *testing.B) {
	w, err := bench.NewWorkload(bench.DefaultSeed)
	if err != nil {
		b.Fatal(err)
	}
	setup := func(b *testing.B) (context.Context, jetstream.JetStream) {
		b.Helper()
		emb, err := bus.StartEmbedded(b.TempDir(), "", slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(emb.Shutdown)
		nc, err := nats.Connect("", emb.ConnectOptions()...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		b.Cleanup(cancel)
		if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
			b.Fatal(err)
		}
		return ctx, js
	}
	events := func(b *testing.B, n int) (batches [][]audit.Raw, size int64) {
		b.Helper()
		var batch []audit.Raw
		for i := range n {
			line, _ := w.Event(nil, i)
			r, err := audit.ParseRaw(line)
			if err != nil {
				b.Fatal(err)
			}
			size += int64(len(line))
			if batch = append(batch, r); len(batch) == 400 || i == n-1 {
				batches, batch = append(batches, batch), nil
			}
		}
		return batches, size
	}
	segments := false
	publish := func(ctx context.Context, js jetstream.JetStream, batches [][]audit.Raw) error {
		pub := bus.NewPublisher(js, "bench")
		if segments {
			pub = bus.NewSegmentPublisher(js, "bench", bus.SegmentOptions{})
		}
		for _, batch := range batches {
			if err := pub.Publish(ctx, batch); err != nil {
				return err
			}
		}
		return nil
	}

	publishOnly := func(b *testing.B) {
		ctx, js := setup(b)
		batches, size := events(b, b.N)
		b.SetBytes(size / int64(b.N))
		b.ResetTimer()
		if err := publish(ctx, js, batches); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	}
	// consume acknowledges n messages through the engine's consumer, the
	// first published by publishing if it is set (concurrently).
	consume := func(b *testing.B, concurrent bool) {
		ctx, js := setup(b)
		batches, size := events(b, b.N)
		if !concurrent {
			if err := publish(ctx, js, batches); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(size / int64(b.N))
		cons, err := bus.EnsureConsumer(ctx, js, bus.StreamAudit, engine.ConsumerConfig(engine.WorkerOptions{}))
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		got := make(chan int, b.N)
		cc, err := cons.Consume(func(m jetstream.Msg) {
			n := 1
			if segments {
				evs, _ := bus.SegmentEvents(m.Headers(), m.Data())
				n = len(evs)
			}
			_ = m.Ack()
			got <- n
		}, jetstream.PullMaxMessages(engine.DefaultFetchBatch))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Stop()
		published := make(chan error, 1)
		if concurrent {
			go func() { published <- publish(ctx, js, batches) }()
		} else {
			published <- nil
		}
		for received := 0; received < b.N; {
			select {
			case n := <-got:
				received += n
			case err := <-published:
				if err != nil {
					b.Fatal(err)
				}
				published = nil // done; a nil channel is never ready again
			case <-ctx.Done():
				b.Fatal(ctx.Err())
			}
		}
		b.StopTimer()
		if published != nil {
			if err := <-published; err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	}
	// Both at once, as in vigil run: the ceiling of the end-to-end phase.
	b.Run("publish", publishOnly)
	b.Run("consume-ack", func(b *testing.B) { consume(b, false) })
	b.Run("publish+consume-ack", func(b *testing.B) { consume(b, true) })
	b.Run("segments", func(b *testing.B) {
		segments = true
		defer func() { segments = false }()
		b.Run("publish", publishOnly)
		b.Run("consume-ack", func(b *testing.B) { consume(b, false) })
		b.Run("publish+consume-ack", func(b *testing.B) { consume(b, true) })
	})
}
