package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/rules"
)

// jqRule is the default-pack rule that jqFilter expresses.
const jqRule = "secret-read-by-non-node"

// jqControlPlane is lists.control_plane of the default pack. If the pack's
// list changes, the match counts of the two disagree and the report says so.
func jqControlPlane() []string {
	return []string{
		"system:kube-controller-manager", "system:kube-scheduler", "system:apiserver",
		"system:cloud-controller-manager", "system:volume-scheduler",
		"system:serviceaccount:kube-system:attachdetach-controller",
		"system:serviceaccount:kube-system:bootstrap-signer",
		"system:serviceaccount:kube-system:certificate-controller",
		"system:serviceaccount:kube-system:clusterrole-aggregation-controller",
		"system:serviceaccount:kube-system:cronjob-controller",
		"system:serviceaccount:kube-system:daemon-set-controller",
		"system:serviceaccount:kube-system:deployment-controller",
		"system:serviceaccount:kube-system:disruption-controller",
		"system:serviceaccount:kube-system:endpoint-controller",
		"system:serviceaccount:kube-system:endpointslice-controller",
		"system:serviceaccount:kube-system:endpointslicemirroring-controller",
		"system:serviceaccount:kube-system:ephemeral-volume-controller",
		"system:serviceaccount:kube-system:expand-controller",
		"system:serviceaccount:kube-system:generic-garbage-collector",
		"system:serviceaccount:kube-system:horizontal-pod-autoscaler",
		"system:serviceaccount:kube-system:job-controller",
		"system:serviceaccount:kube-system:legacy-service-account-token-cleaner",
		"system:serviceaccount:kube-system:namespace-controller",
		"system:serviceaccount:kube-system:node-controller",
		"system:serviceaccount:kube-system:persistent-volume-binder",
		"system:serviceaccount:kube-system:pod-garbage-collector",
		"system:serviceaccount:kube-system:pv-protection-controller",
		"system:serviceaccount:kube-system:pvc-protection-controller",
		"system:serviceaccount:kube-system:replicaset-controller",
		"system:serviceaccount:kube-system:replication-controller",
		"system:serviceaccount:kube-system:resourcequota-controller",
		"system:serviceaccount:kube-system:root-ca-cert-publisher",
		"system:serviceaccount:kube-system:service-account-controller",
		"system:serviceaccount:kube-system:service-controller",
		"system:serviceaccount:kube-system:statefulset-controller",
		"system:serviceaccount:kube-system:token-cleaner",
		"system:serviceaccount:kube-system:ttl-after-finished-controller",
		"system:serviceaccount:kube-system:ttl-controller",
	}
}

// jqFilter is secret-read-by-non-node as a jq program, with the rule's
// stages and CEL's zero values for absent fields.
func jqFilter() string {
	return `(` + jqList(jqControlPlane()) + `) as $cp |
select(
  (.stage == "ResponseStarted" or .stage == "ResponseComplete") and
  .objectRef.resource == "secrets" and
  (.verb == "get" or .verb == "list" or .verb == "watch") and
  ((.responseStatus.code // 0) < 400) and
  ((.user.groups // []) | any(. == "system:nodes") | not) and
  ((.user.username // "") as $u |
    ($u | startswith("system:node:") | not) and ($cp | any(. == $u) | not))
)`
}

func jqList(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = fmt.Sprintf("%q", v)
	}
	return "[" + strings.Join(q, ",") + "]"
}

// runJQ compares the offline replay of file with the full pack on one core
// against jq running one equivalent rule over the same file.
func runJQ(ctx context.Context, set *rules.Set, jqPath, file string, n int) (*JQ, error) {
	res := &JQ{Rule: jqRule, Filter: jqFilter()}
	if jqPath == "" {
		p, err := exec.LookPath("jq")
		if err != nil {
			res.Reason = "jq is not on PATH"
			return res, nil //nolint:nilerr // no jq is a skipped comparison, not a failure
		}
		jqPath = p
	}

	prev := runtime.GOMAXPROCS(1)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m0, b0 := ms.Mallocs, ms.TotalAlloc
	start, cpu0 := time.Now(), cpuTime()
	st, err := engine.Replay(ctx, set, []string{file}, engine.ReplayOptions{
		OnAlert: func(a *alert.Alert) error {
			if a.Rule == jqRule {
				res.VigilMatches++
			}
			return nil
		},
	})
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	runtime.ReadMemStats(&ms)
	runtime.GOMAXPROCS(prev)
	if err != nil {
		return nil, fmt.Errorf("bench: replay: %w", err)
	}
	res.Vigil = throughput(st.Events, elapsed, cpu, ms.Mallocs-m0, ms.TotalAlloc-b0)

	cmd := exec.CommandContext(ctx, jqPath, "-c", res.Filter, file)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: jq: %w", err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: jq: %w", err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		res.JQMatches++
	}
	scanErr := sc.Err()
	if err := cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("bench: jq: %w: %s", err, strings.TrimSpace(stderr.String()))
		}
		return nil, fmt.Errorf("bench: jq: %w", err)
	}
	if scanErr != nil {
		return nil, fmt.Errorf("bench: jq output: %w", scanErr)
	}
	jqCPU := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	res.JQ = throughput(n, time.Since(start), jqCPU, 0, 0)
	res.Ran = true
	if res.JQ.EventsPerSec > 0 {
		res.Ratio = res.Vigil.EventsPerSec / res.JQ.EventsPerSec
	}
	if res.Vigil.CPUNsPerEvent > 0 {
		res.CPURatio = res.JQ.CPUNsPerEvent / res.Vigil.CPUNsPerEvent
	}
	return res, nil
}
