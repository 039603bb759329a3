// Package kafkatest runs franz-go's in-process Kafka cluster (kfake) for
// tests, with a client to produce to it and to read a group's offsets as
// kafka-consumer-groups would show them.
package kafkatest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Partitions is the number of partitions of the topic.
const Partitions = 3

// Kafka is a one-broker cluster holding one topic.
type Kafka struct {
	// Cluster is the broker, to inject faults (Cluster.ControlKey).
	Cluster *kfake.Cluster
	Addr    string
	Topic   string
	Client  *kgo.Client
}

// New starts a cluster with topic in Partitions partitions; clientOpts
// are what its client needs beyond the broker (TLS, SASL).
func New(t testing.TB, topic string, clusterOpts []kfake.Opt, clientOpts ...kgo.Opt) *Kafka {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(Partitions, topic)}, clusterOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	addr := c.ListenAddrs()[0]
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner())}, clientOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &Kafka{Cluster: c, Addr: addr, Topic: topic, Client: cl}
}

func timeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// Produce writes each value as a record, spread over the partitions in
// turn.
func (k *Kafka) Produce(t testing.TB, values ...string) {
	t.Helper()
	rs := make([]*kgo.Record, len(values))
	for i, v := range values {
		rs[i] = &kgo.Record{Partition: int32(i % Partitions), Value: []byte(v)}
	}
	k.ProduceRecords(t, rs...)
}

// ProduceRecords writes records as given (partition included).
func (k *Kafka) ProduceRecords(t testing.TB, rs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := timeout()
	defer cancel()
	if err := k.Client.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// Lag is how many records of the topic group has not committed, summed
// over the partitions; -1 before it committed on every partition.
func (k *Kafka) Lag(t testing.TB, group string) int64 {
	t.Helper()
	ctx, cancel := timeout()
	defer cancel()
	lags, err := kadm.NewClient(k.Client).Lag(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	l := lags[group]
	if err := l.Error(); err != nil {
		t.Fatal(err)
	}
	parts := l.Lag.Sorted()
	var n int64
	for _, m := range parts {
		if m.Commit.At < 0 {
			return -1
		}
		n += m.Lag
	}
	if len(parts) != Partitions {
		return -1
	}
	return n
}

// Committed is the group's committed offset of each partition, -1 where
// there is none.
func (k *Kafka) Committed(t testing.TB, group string) [Partitions]int64 {
	t.Helper()
	ctx, cancel := timeout()
	defer cancel()
	resp, err := kadm.NewClient(k.Client).FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	var out [Partitions]int64
	for p := range out {
		out[p] = -1
		if o, ok := resp.Lookup(k.Topic, int32(p)); ok {
			if o.Err != nil {
				t.Fatal(fmt.Errorf("partition %d: %w", p, o.Err))
			}
			out[p] = o.At
		}
	}
	return out
}

// Members is how many members of group own partitions.
func (k *Kafka) Members(t testing.TB, group string) int {
	t.Helper()
	ctx, cancel := timeout()
	defer cancel()
	groups, err := kadm.NewClient(k.Client).DescribeGroups(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range groups[group].Members {
		if a, ok := m.Assigned.AsConsumer(); ok && len(a.Topics) > 0 {
			n++
		}
	}
	return n
}
