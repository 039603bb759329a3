package app

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/internal/config"
)

func TestClientTarget(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name     string
		n        config.NATS
		url, key string
		err      string
	}{
		{name: "external", n: config.NATS{URL: "nats://nats-0:4222"}, url: "nats://nats-0:4222", key: "nats.url"},
		{name: "embedded on loopback", n: config.NATS{Listen: "127.0.0.1:4222"}, url: "nats://127.0.0.1:4222", key: "nats.listen"},
		{name: "embedded on every address", n: config.NATS{Listen: "0.0.0.0:4223", User: "vigil", PasswordEnv: "VIGIL_TEST_NATS_PW"}, url: "nats://127.0.0.1:4223", key: "nats.listen"},
		{name: "embedded, in-process only", n: config.NATS{}, err: "set nats.url to the deployment's NATS, or nats.listen"},
		{name: "embedded with TLS", n: config.NATS{Listen: "127.0.0.1:4222", TLS: config.TLS{Cert: "c.pem", Key: "k.pem"}}, err: "nats.tls.ca"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("VIGIL_TEST_NATS_PW", "pw")
			url, key, _, err := clientTarget(tc.n, "test", logger)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || url != tc.url || key != tc.key {
				t.Errorf("clientTarget = %q, %q, %v; want %q, %q", url, key, err, tc.url, tc.key)
			}
		})
	}
}
