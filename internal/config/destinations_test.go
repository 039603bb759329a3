package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/config"
)

func TestAlertmanagerAndPagerDutyDestinations(t *testing.T) {
	cfg, err := config.Parse("vigil.yaml", []byte(`
destinations:
  - name: am
    type: alertmanager
    urls: [https://am-0:9093, https://am-1:9093]
    username: vigil
    password_file: am-password
    tls: {ca: am-ca.pem}
    generator_url: "https://grafana.example/explore?rule={rule}"
  - name: am-token
    type: alertmanager
    url: http://am:9093
    bearer_token_env: AM_TOKEN
    resolve_after: 10m
  - name: pager
    type: pagerduty
    routing_key_file: pd-key
    client: vigil
    client_url: https://vigil.example
`))
	if err != nil {
		t.Fatal(err)
	}
	am, tok, pd := cfg.Destinations[0], cfg.Destinations[1], cfg.Destinations[2]
	if len(am.URLs) != 2 || am.Username != "vigil" || am.TLS.CA != "am-ca.pem" || am.GeneratorURL == "" {
		t.Errorf("alertmanager destination = %+v", am)
	}
	if am.ResolveAfter != time.Hour || tok.ResolveAfter != 10*time.Minute {
		t.Errorf("resolve_after = %s and %s, want the 1h default and 10m", am.ResolveAfter, tok.ResolveAfter)
	}
	if pd.RoutingKeyFile != "pd-key" || pd.Client != "vigil" || pd.ClientURL != "https://vigil.example" {
		t.Errorf("pagerduty destination = %+v", pd)
	}
}

func TestDestinationErrors(t *testing.T) {
	for _, c := range []struct {
		name, yaml, want string
	}{
		{"alertmanager without url", "destinations:\n  - name: am\n    type: alertmanager\n",
			"v.yaml:2: destinations[0]: alertmanager needs url (one Alertmanager) or urls"},
		{"alertmanager with url and urls", "destinations:\n  - name: am\n    type: alertmanager\n    url: http://a\n    urls: [http://b]\n",
			"v.yaml:2: destinations[0]: alertmanager needs url (one Alertmanager) or urls (every instance of a cluster), not both"},
		{"alertmanager url not http", "destinations:\n  - name: am\n    type: alertmanager\n    urls:\n      - http://a\n      - am:9093\n",
			"v.yaml:6: destinations[0].urls[1]: must be an http:// or https:// URL"},
		{"username without password", "destinations:\n  - name: am\n    type: alertmanager\n    url: http://a\n    username: u\n",
			"v.yaml:5: destinations[0].username: needs password_env or password_file"},
		{"basic and bearer", "destinations:\n  - name: am\n    type: alertmanager\n    url: http://a\n    username: u\n    password_env: P\n    bearer_token_env: T\n",
			"destinations[0]: set either basic auth (username, password_env/password_file) or bearer_token_env/bearer_token_file, not both"},
		{"bearer env and file", "destinations:\n  - name: am\n    type: alertmanager\n    url: http://a\n    bearer_token_env: T\n    bearer_token_file: t\n",
			"v.yaml:6: destinations[0].bearer_token_file: set either bearer_token_env or bearer_token_file, not both"},
		{"generator_url not http", "destinations:\n  - name: am\n    type: alertmanager\n    url: http://a\n    generator_url: vigil/{rule}\n",
			"v.yaml:5: destinations[0].generator_url: must be an http:// or https:// URL"},
		{"negative resolve_after", "destinations:\n  - name: am\n    type: alertmanager\n    url: http://a\n    resolve_after: -1m\n",
			"v.yaml:5: destinations[0].resolve_after: must be positive"},
		{"pagerduty without key", "destinations:\n  - name: pd\n    type: pagerduty\n",
			"v.yaml:2: destinations[0]: pagerduty needs routing_key_env or routing_key_file"},
		{"pagerduty client_url", "destinations:\n  - name: pd\n    type: pagerduty\n    routing_key_env: K\n    client_url: vigil.example\n",
			"v.yaml:5: destinations[0].client_url: must be an http:// or https:// URL"},
		{"routing key on a webhook", "destinations:\n  - name: w\n    type: webhook\n    url: http://x\n    routing_key_env: K\n",
			"v.yaml:5: destinations[0].routing_key_env: only applies to pagerduty destinations"},
		{"resolve_after on pagerduty", "destinations:\n  - name: pd\n    type: pagerduty\n    routing_key_env: K\n    resolve_after: 5m\n",
			"v.yaml:5: destinations[0].resolve_after: only applies to alertmanager destinations"},
		{"tls on pagerduty", "destinations:\n  - name: pd\n    type: pagerduty\n    routing_key_env: K\n    tls: {ca: ca.pem}\n",
			"v.yaml:5: destinations[0].tls: only applies to webhook and alertmanager destinations"},
		{"misspelt type", "destinations:\n  - name: pd\n    type: pagerdutty\n",
			`v.yaml:3: destinations[0].type: unknown type "pagerdutty" (want slack, webhook, alertmanager, pagerduty or stdout), did you mean "pagerduty"?`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse("v.yaml", []byte(c.yaml))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestLoadResolvesDestinationSecretPaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vigil.yaml")
	if err := os.WriteFile(path, []byte("destinations:\n  - {name: am, type: alertmanager, url: 'http://a', username: u, password_file: pw}\n  - {name: pd, type: pagerduty, routing_key_file: key}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Destinations[0].PasswordFile; got != filepath.Join(dir, "pw") {
		t.Errorf("password_file = %s", got)
	}
	if got := cfg.Destinations[1].RoutingKeyFile; got != filepath.Join(dir, "key") {
		t.Errorf("routing_key_file = %s", got)
	}
}
