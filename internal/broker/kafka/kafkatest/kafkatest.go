// Package kafkatest starts in-process Kafka-protocol clusters (franz-go's kfake) on loopback
// for tests: a real wire protocol, not a mock.
package kafkatest

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Brokers is the number of brokers Cluster starts.
const Brokers = 3

// Cluster starts a kfake cluster of three brokers on 127.0.0.1 (random ports), accepting
// group session timeouts down to 100ms so that tests can run fast rebalances, and returns
// its broker addresses. opts add to or override those settings. The cluster is closed by
// t.Cleanup.
func Cluster(t testing.TB, opts ...kfake.Opt) []string {
	t.Helper()
	c := Start(t, opts...)
	return c.ListenAddrs()
}

// Start is Cluster returning the cluster itself, for tests that steer it.
func Start(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	all := append([]kfake.Opt{
		kfake.NumBrokers(Brokers),
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
	}, opts...)
	c, err := kfake.NewCluster(all...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}
