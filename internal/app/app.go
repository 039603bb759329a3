// Package app wires vigil's roles together: ingest sources, rule workers
// and notifiers, around JetStream (embedded or external). `vigil run` and
// the single-role commands are thin wrappers around it, and tests run the
// whole system in-process through it.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/file"
	"github.com/vigil-k8s/vigil/ingest/webhook"
	"github.com/vigil-k8s/vigil/internal/backoff"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/internal/quiet"
	"github.com/vigil-k8s/vigil/notify"
	"github.com/vigil-k8s/vigil/rules"
)

// provisionBackoff paces the attempts to reach JetStream at start-up.
var provisionBackoff = backoff.Policy{Initial: time.Second, Max: 15 * time.Second}

// provisionAttempt bounds one attempt to provision JetStream.
const provisionAttempt = 10 * time.Second

// Role is a part of the pipeline a process runs.
type Role uint8

// Roles; RoleAll is `vigil run`.
const (
	RoleIngest Role = 1 << iota
	RoleWorker
	RoleNotify
	RoleAll = RoleIngest | RoleWorker | RoleNotify
)

func (r Role) String() string {
	switch r {
	case RoleAll:
		return "run"
	case RoleIngest:
		return "ingest"
	case RoleWorker:
		return "worker"
	case RoleNotify:
		return "notify"
	}
	return fmt.Sprintf("roles(%d)", uint8(r))
}

// App is a configured vigil process.
type App struct {
	cfg    *config.Config
	roles  Role
	logger *slog.Logger

	rules   *rules.Set
	sources []source
	// dests are the destinations' receivers, built once by New.
	dests      []notify.Destination
	notifyOpts []func(*notify.Options)
	stdout     io.Writer
	metrics    *metrics.Metrics
	ops        *opsServer
	nc         *nats.Conn
	// closers release what New acquired (listeners) if Run never runs.
	closers []func() error

	mu         sync.Mutex
	workers    []*engine.Worker
	eval       *engine.Reloadable
	dispatcher *notify.Dispatcher
	ready      chan struct{}
	reloadMu   sync.Mutex // one reload at a time
}

type source struct {
	kind    string // file, webhook, eks
	name    string
	cluster string
	src     ingest.Source
	// bind, when set, gives the source what it keeps in JetStream (a
	// polling source's cursor and lease) once Run has connected.
	bind func(ctx context.Context, js jetstream.JetStream) (ingest.Source, error)
	// eventIDs stores each event under its own MsgID instead of in
	// segments: a polling source re-reads an overlap cut anew each time.
	eventIDs bool
	// timesItself: the source sets its lag and last event metrics from
	// its own records; for the others the publisher reads the events.
	timesItself bool
	// watch raises the source's silence, nil when silent_after is off.
	watch *quiet.Watch
}

// Option changes how an App is built.
type Option func(*App)

// WithNotifyOptions changes the notification dispatcher's options after
// the configuration set them (tests use it to shorten retry delays).
func WithNotifyOptions(f func(*notify.Options)) Option {
	return func(a *App) { a.notifyOpts = append(a.notifyOpts, f) }
}

// WithStdout sends stdout destinations to w instead of os.Stdout.
func WithStdout(w io.Writer) Option { return func(a *App) { a.stdout = w } }

// dispatcherOptions are the notify section's settings, then the changes
// of WithNotifyOptions.
func (a *App) dispatcherOptions() notify.Options {
	o := notifyOptions(a.cfg.Notify, a.metrics)
	for _, f := range a.notifyOpts {
		f(&o)
	}
	return o
}

// New validates everything that can be checked before start-up: rules
// compile, sources and destinations are usable. An error names the file
// and problem.
func New(cfg *config.Config, roles Role, logger *slog.Logger, opts ...Option) (_ *App, err error) {
	if cfg.NATS.URL == "" && roles != RoleAll {
		return nil, fmt.Errorf("vigil %s needs nats.url: only `vigil run` starts an embedded NATS server", roles)
	}
	reg := prometheus.NewRegistry()
	a := &App{cfg: cfg, roles: roles, logger: logger, ready: make(chan struct{}), metrics: metrics.New(reg), stdout: os.Stdout}
	for _, o := range opts {
		o(a)
	}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if roles&RoleWorker != 0 {
		set, err := rules.Load(a.ruleOptions(cfg))
		if err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
		a.rules = set
		a.metrics.RulesInfo.WithLabelValues(set.Hash()).Set(1)
		logger.Info("rules loaded", "rules", len(set.Rules()), "version", set.Hash())
		logRuleWarnings(logger, set)
	}
	if roles&RoleIngest != 0 {
		for _, fc := range cfg.Ingest.Files {
			s, err := file.New(fileOptions(fc, cfg.DataDir, a.metrics), logger)
			if err != nil {
				return nil, fmt.Errorf("ingest file %s: %w", fc.Path, err)
			}
			src := source{kind: "file", name: "file " + fc.Path, cluster: fc.Cluster, src: s}
			if fc.SilentAfter != nil && !fc.SilentAfter.Off() {
				key, err := fileWatchKey(cfg.DataDir, fc.Path)
				if err != nil {
					return nil, fmt.Errorf("ingest file %s: %w", fc.Path, err)
				}
				src.watch = a.watch(key, src.name+" on "+hostname(), fc.Cluster, fc.SilentAfter)
			}
			a.sources = append(a.sources, src)
		}
		if wc := cfg.Ingest.Webhook; wc != nil {
			s, err := webhook.New(webhookOptions(*wc, a.metrics), logger)
			if err != nil {
				return nil, fmt.Errorf("ingest webhook: %w", err)
			}
			a.sources = append(a.sources, source{kind: "webhook", name: "webhook " + wc.Listen, cluster: wc.Cluster, src: s,
				watch: a.watch(webhookWatchKey(wc.Cluster), "the webhook of cluster "+wc.Cluster, wc.Cluster, wc.SilentAfter)})
			a.closers = append(a.closers, s.Close)
		}
		for i, sc := range cfg.Ingest.Sources {
			s, err := a.pollingSource(sc)
			if err != nil {
				return nil, fmt.Errorf("ingest.sources[%d]: %w", i, err)
			}
			a.sources = append(a.sources, s)
		}
		if len(a.sources) == 0 && roles == RoleIngest {
			return nil, errors.New("vigil ingest: no sources configured (ingest.files, ingest.webhook or ingest.sources)")
		}
	}
	if roles&RoleNotify != 0 {
		// Built now, so that a missing secret stops start-up.
		if a.dests, err = (receivers{stdout: a.stdout, metrics: a.metrics, logger: logger.With("role", "notify")}).destinations(cfg); err != nil {
			return nil, err
		}
	}
	if cfg.Metrics.Listen != "" {
		ops, err := newOpsServer(cfg.Metrics, reg, a.readiness, logger)
		if err != nil {
			return nil, err
		}
		a.ops = ops
		a.closers = append(a.closers, ops.ln.Close)
	}
	return a, nil
}

// Close releases the listeners New opened; Run does so itself, so Close
// is only needed for an App that is never run.
func (a *App) Close() {
	for _, c := range a.closers {
		_ = c()
	}
}

// MetricsAddr is the address /metrics, /healthz and /readyz are served on,
// nil when metrics.listen is not set.
func (a *App) MetricsAddr() net.Addr {
	if a.ops == nil {
		return nil
	}
	return a.ops.Addr()
}

// readiness is nil once every role runs and NATS is connected.
func (a *App) readiness() error {
	select {
	case <-a.ready:
	default:
		return errors.New("starting")
	}
	a.mu.Lock()
	nc := a.nc
	a.mu.Unlock()
	if nc == nil || !nc.IsConnected() {
		return errors.New("NATS not connected")
	}
	return nil
}

// Ready is closed once JetStream is provisioned and every role started.
func (a *App) Ready() <-chan struct{} { return a.ready }

// Workers returns the running workers (for stats).
func (a *App) Workers() []*engine.Worker {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*engine.Worker(nil), a.workers...)
}

// Run runs the roles until ctx is done. It stops them in the order data
// flows — sources, then workers, then notifiers — so that each drains what
// the one before it handed over, and returns nil after a clean stop.
func (a *App) Run(ctx context.Context) error {
	defer a.Close()
	// Health and metrics first, so that a slow start-up can be observed.
	ops := newStage("ops", nil)
	if a.ops != nil {
		ops.goRun(a.ops.run)
	}
	defer func() {
		ops.cancel()
		ops.wg.Wait()
	}()
	url, opts, stop, err := a.nats()
	if err != nil {
		return err
	}
	defer stop()
	nc, js := a.connect(ctx, url, opts)
	if nc == nil {
		return nil
	}
	defer nc.Close()
	a.mu.Lock()
	a.nc = nc
	a.mu.Unlock()
	if err := a.provision(ctx, js); err != nil || ctx.Err() != nil {
		return err
	}

	var thresholds, ruleState jetstream.KeyValue
	if a.roles&RoleWorker != 0 {
		if thresholds, err = js.KeyValue(ctx, bus.BucketThresholds); err != nil {
			return fmt.Errorf("threshold bucket: %w", err)
		}
		if ruleState, err = js.KeyValue(ctx, bus.BucketRuleState); err != nil {
			return fmt.Errorf("rule state bucket: %w", err)
		}
	}
	var dispatcher *notify.Dispatcher
	if a.roles&RoleNotify != 0 {
		dispatcher, err = notify.NewDispatcher(js, a.dests, routes(a.cfg.Routes), a.dispatcherOptions(), a.logger.With("role", "notify"))
		if err != nil {
			return err
		}
	}
	// Any role failing stops everything.
	failed := make(chan error, 1)
	stages := []*stage{}
	if a.roles&RoleIngest != 0 {
		st := newStage("ingest", failed)
		for _, s := range a.sources {
			if s.bind != nil {
				if s.src, err = s.bind(ctx, js); err != nil {
					return fmt.Errorf("%s: %w", s.name, err)
				}
			}
			// The file and the webhook store segments: the webhook's are
			// named by their events, since its client re-sends the same
			// batch on a retry; a file's by the span they come from,
			// recorded in its checkpoint before they are published.
			bp := bus.NewSegmentPublisher(js, s.cluster, segmentOptions(a.cfg.NATS))
			if s.eventIDs {
				bp = bus.NewPublisher(js, s.cluster)
			}
			pub := newMeteredPublisher(bp, a.metrics, s.kind, s.cluster, s.watch, !s.timesItself)
			st.goRun(func(ctx context.Context) error {
				if err := s.src.Run(ctx, pub); err != nil {
					return fmt.Errorf("%s: %w", s.name, err)
				}
				return nil
			})
		}
		if err := a.runWatches(ctx, st, js); err != nil {
			return err
		}
		stages = append(stages, st)
	}
	if a.roles&RoleWorker != 0 {
		st := newStage("worker", failed)
		th := engine.NewKVThresholds(thresholds, engine.KVOptions{GroupLimit: maxThresholdGroups(a.cfg), Metrics: a.metrics})
		st.goRun(th.Run)
		rs := engine.NewKVThresholds(ruleState, engine.KVOptions{GroupLimit: maxThresholdGroups(a.cfg), Metrics: a.metrics,
			Evicted: a.metrics.StateEvicted, Groups: a.metrics.StateEntities})
		st.goRun(rs.Run)
		eval := engine.NewReloadable(a.newEvaluator(a.rules, th, rs))
		a.mu.Lock()
		a.eval = eval
		a.mu.Unlock()
		for range max(a.cfg.Engine.Workers, 1) {
			w := engine.NewWorker(js, eval, workerOptions(a.cfg.Engine, a.metrics), a.logger.With("role", "worker"))
			a.mu.Lock()
			a.workers = append(a.workers, w)
			a.mu.Unlock()
			st.goRun(w.Run)
		}
		st.goRun(func(ctx context.Context) error {
			return engine.DeadLetterExhausted(ctx, nc, js, a.logger.With("role", "worker"))
		})
		stages = append(stages, st)
	}
	if dispatcher != nil {
		a.mu.Lock()
		a.dispatcher = dispatcher
		a.mu.Unlock()
		st := newStage("notify", failed)
		st.goRun(dispatcher.Run)
		stages = append(stages, st)
	}
	observe := newStage("observe", failed)
	observe.goRun(func(ctx context.Context) error { return a.watchConsumers(ctx, js) })
	if a.cfg.Reload.Watching() && a.roles&(RoleWorker|RoleNotify) != 0 {
		observe.goRun(a.watchFiles)
	}
	stages = append(stages, observe)
	close(a.ready)
	a.logger.Info("vigil started", "roles", a.roles.String(), "cluster", a.cfg.Cluster)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-failed:
		a.logger.Error("stopping", "err", runErr)
	}
	for _, st := range stages {
		st.cancel()
		st.wg.Wait()
	}
	if err := nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		a.logger.Debug("drain NATS connection", "err", err)
	}
	a.logger.Info("vigil stopped")
	return runErr
}

// connect connects to NATS, waiting for it for as long as it takes like
// provision, and saying at once why each attempt failed. It returns nil
// only when ctx is done, which is a clean stop.
func (a *App) connect(ctx context.Context, url string, opts []nats.Option) (*nats.Conn, jetstream.JetStream) {
	var nc *nats.Conn
	var js jetstream.JetStream
	_ = backoff.Retry(ctx, provisionBackoff, func(context.Context) error {
		var err error
		nc, js, err = bus.Connect(url, opts...)
		return err
	}, backoff.OnRetry(func(err error, _ int, wait time.Duration) {
		a.logger.Warn("cannot connect to NATS; retrying", "url", bus.RedactURL(url), "err", err, "retry_in", wait)
	}))
	if nc != nil && ctx.Err() != nil {
		nc.Close()
		return nil, nil
	}
	return nc, js
}

// provision creates the streams and buckets, waiting for JetStream for as
// long as it takes: a NATS cluster that is not up yet, or restarting, when
// vigil starts is a reason to wait and say so, not to exit. Only a
// configuration JetStream refuses outright would repeat forever; it is
// logged on every attempt.
func (a *App) provision(ctx context.Context, js jetstream.JetStream) error {
	opts := streamOptions(a.cfg, a.roles)
	// A stop while waiting is a clean stop: Retry only fails then.
	_ = backoff.Retry(ctx, provisionBackoff, func(ctx context.Context) error {
		// Requests to a NATS that is down are buffered, not failed: bound
		// each attempt so that the wait is reported.
		actx, cancel := context.WithTimeout(ctx, provisionAttempt)
		defer cancel()
		return bus.EnsureStreams(actx, js, opts)
	}, backoff.OnRetry(func(err error, _ int, wait time.Duration) {
		a.logger.Warn("JetStream not available yet; retrying", "err", err, "retry_in", wait)
	}))
	return nil
}

// nats returns how to reach JetStream, starting the embedded server when no
// URL is configured.
func (a *App) nats() (string, []nats.Option, func(), error) {
	name := "vigil-" + a.roles.String()
	if host, err := os.Hostname(); err == nil {
		name += "@" + host
	}
	if a.cfg.NATS.URL != "" {
		creds, err := natsCredentials(a.cfg.NATS)
		if err != nil {
			return "", nil, nil, err
		}
		opts, err := bus.ClientOptions(creds, name, a.logger)
		if err != nil {
			return "", nil, nil, err
		}
		return a.cfg.NATS.URL, opts, func() {}, nil
	}
	ls, err := listenSecurity(a.cfg.NATS)
	if err != nil {
		return "", nil, nil, err
	}
	security, err := bus.WithListenSecurity(ls, a.logger)
	if err != nil {
		return "", nil, nil, err
	}
	emb, err := bus.StartEmbedded(a.cfg.DataDir, a.cfg.NATS.Listen, a.logger, security)
	if err != nil {
		return "", nil, nil, err
	}
	return "", append(emb.ConnectOptions(), nats.Name(name)), emb.Shutdown, nil
}

// stage is a group of goroutines of one role, stopped together.
type stage struct {
	name   string
	ctx    context.Context
	cancel context.CancelFunc
	failed chan<- error
	wg     sync.WaitGroup
}

func newStage(name string, failed chan<- error) *stage {
	// Each stage has its own context, not derived from the caller's, so
	// that stopping happens in data-flow order rather than all at once.
	ctx, cancel := context.WithCancel(context.Background())
	return &stage{name: name, ctx: ctx, cancel: cancel, failed: failed}
}

func (s *stage) goRun(f func(context.Context) error) {
	s.wg.Go(func() {
		if err := f(s.ctx); err != nil && s.failed != nil {
			select {
			case s.failed <- fmt.Errorf("%s: %w", s.name, err):
			default:
			}
		}
	})
}
