package bench

// The generated events are written in kube-apiserver's field order and
// shape, marked where each instance differs.

type templateSource struct {
	rule  string // the default-pack rule an attack triggers
	names []string
	json  string
}

const (
	evHead = `{"kind":"Event","apiVersion":"audit.k8s.io/v1",`
	evTail = `"requestReceivedTimestamp":"{{rt}}","stageTimestamp":"{{st}}","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed"}}`
	dev    = `"user":{"username":"dev@example.com","groups":["developers","system:authenticated"]},"sourceIPs":["203.0.113.7"],"userAgent":"kubectl/v1.29.1 (linux/amd64) kubernetes/bc401b9",`
)

func attackTemplates() []templateSource {
	return []templateSource{
		{
			rule:  "secret-read-by-non-node",
			names: []string{"db-credentials", "stripe-api-key", "tls-cert", "oauth-client", "smtp-password", "registry-pull", "jwt-signing-key", "s3-backup", "redis-auth", "vault-token", "ldap-bind", "sentry-dsn"},
			json: evHead + `"level":"Metadata","auditID":"{{id}}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/payments/secrets/{{name}}","verb":"get",` +
				`"user":{"username":"system:serviceaccount:payments:api","uid":"5f0c1a8e-1b7a-4d0e-9a55-3c7e0d6b2f11","groups":["system:serviceaccounts","system:serviceaccounts:payments","system:authenticated"]},` +
				`"sourceIPs":["10.1.45.12"],"userAgent":"python-requests/2.31.0","objectRef":{"resource":"secrets","namespace":"payments","name":"{{name}}","apiVersion":"v1"},` +
				`"responseStatus":{"metadata":{},"code":200},` + evTail,
		},
		{
			rule:  "deployment-deleted-in-default",
			names: []string{"web", "api", "checkout", "frontend", "worker"},
			json: evHead + `"level":"Metadata","auditID":"{{id}}","stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/default/deployments/{{name}}","verb":"delete",` +
				`"user":{"username":"mallory@example.com","groups":["system:authenticated"]},"sourceIPs":["198.51.100.23"],"userAgent":"kubectl/v1.29.1 (linux/amd64) kubernetes/bc401b9",` +
				`"objectRef":{"resource":"deployments","namespace":"default","name":"{{name}}","apiGroup":"apps","apiVersion":"v1"},` +
				`"responseStatus":{"metadata":{},"status":"Success","code":200},` + evTail,
		},
		{
			rule:  "pod-exec-or-attach",
			names: []string{"web-6d4cf56db6-9xk2p", "api-7f9b8c6d5-l2m4n", "redis-0", "postgres-0"},
			json: evHead + `"level":"Metadata","auditID":"{{id}}","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/default/pods/{{name}}/exec?command=sh\u0026container=app\u0026stdin=true\u0026stdout=true\u0026tty=true","verb":"create",` +
				dev + `"objectRef":{"resource":"pods","namespace":"default","name":"{{name}}","apiVersion":"v1","subresource":"exec"},` +
				`"responseStatus":{"metadata":{},"code":101},` + evTail,
		},
		{
			rule:  "privileged-container",
			names: []string{"debug-shell", "node-tools", "toolbox"},
			json: evHead + `"level":"Request","auditID":"{{id}}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?fieldManager=kubectl-run","verb":"create",` +
				dev + `"objectRef":{"resource":"pods","namespace":"default","name":"{{name}}","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},` +
				`"requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"{{name}}","namespace":"default","creationTimestamp":null,"labels":{"run":"{{name}}"}},` +
				`"spec":{"containers":[{"name":"shell","image":"alpine:3.19","command":["sh","-c","sleep 3600"],"resources":{},"terminationMessagePath":"/dev/termination-log","imagePullPolicy":"IfNotPresent","securityContext":{"privileged":true}}],` +
				`"restartPolicy":"Never","dnsPolicy":"ClusterFirst"},"status":{}},` + evTail,
		},
		{
			rule:  "cluster-admin-binding",
			names: []string{"dev-admin", "ci-admin", "tmp-debug"},
			json: evHead + `"level":"Request","auditID":"{{id}}","stage":"ResponseComplete","requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?fieldManager=kubectl-create","verb":"create",` +
				dev + `"objectRef":{"resource":"clusterrolebindings","name":"{{name}}","apiGroup":"rbac.authorization.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},` +
				`"requestObject":{"kind":"ClusterRoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"{{name}}","creationTimestamp":null},` +
				`"subjects":[{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"dev@example.com"}],"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"}},` + evTail,
		},
	}
}

// largeTemplates are RequestResponse events of ordinary operations whose
// bodies are big: they exercise the rules that decode bodies without being
// attacks.
func largeTemplates() []templateSource {
	return []templateSource{
		{
			names: []string{"grafana-dashboards", "prometheus-rules", "app-config"},
			json: evHead + `"level":"RequestResponse","auditID":"{{id}}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/monitoring/configmaps/{{name}}","verb":"update",` +
				`"user":{"username":"system:serviceaccount:argocd:argocd-application-controller","groups":["system:serviceaccounts","system:serviceaccounts:argocd","system:authenticated"]},` +
				`"sourceIPs":["10.1.12.4"],"userAgent":"argocd-application-controller/v2.10.0","objectRef":{"resource":"configmaps","namespace":"monitoring","name":"{{name}}","apiVersion":"v1"},` +
				`"responseStatus":{"metadata":{},"code":200},` +
				`"requestObject":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"{{name}}","namespace":"monitoring","labels":{"app.kubernetes.io/managed-by":"argocd"}},"data":{"dashboards.json":"{{fill}}"}},` +
				`"responseObject":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"{{name}}","namespace":"monitoring","resourceVersion":"918273","labels":{"app.kubernetes.io/managed-by":"argocd"}},"data":{"dashboards.json":"{{fill}}"}},` + evTail,
		},
		{
			names: []string{"shop-7c9d8f6b5-abcde", "shop-7c9d8f6b5-fghij", "cart-5b6c7d8e9-klmno"},
			json: evHead + `"level":"RequestResponse","auditID":"{{id}}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/pods","verb":"create",` +
				`"user":{"username":"system:serviceaccount:kube-system:replicaset-controller","groups":["system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"]},` +
				`"sourceIPs":["127.0.0.1"],"userAgent":"kube-controller-manager/v1.29.1 (linux/amd64) kubernetes/bc401b9/system:serviceaccount:kube-system:replicaset-controller",` +
				`"objectRef":{"resource":"pods","namespace":"shop","name":"{{name}}","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},` +
				`"requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"generateName":"shop-7c9d8f6b5-","namespace":"shop","annotations":{"checksum/config-bundle":"{{fill}}"}},` +
				`"spec":{"containers":[{"name":"shop","image":"registry.example.com/shop:1.42.0","ports":[{"containerPort":8080,"protocol":"TCP"}],"resources":{"limits":{"cpu":"1","memory":"512Mi"}}}],"restartPolicy":"Always","serviceAccountName":"shop"}},` +
				`"responseObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"{{name}}","namespace":"shop","uid":"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0","annotations":{"checksum/config-bundle":"{{fill}}"}},` +
				`"spec":{"containers":[{"name":"shop","image":"registry.example.com/shop:1.42.0","ports":[{"containerPort":8080,"protocol":"TCP"}],"resources":{"limits":{"cpu":"1","memory":"512Mi"}}}],"restartPolicy":"Always","serviceAccountName":"shop"},"status":{"phase":"Pending"}},` + evTail,
		},
		{
			names: []string{"shop", "monitoring", "payments"},
			json: evHead + `"level":"RequestResponse","auditID":"{{id}}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/{{name}}/pods?limit=500","verb":"list",` +
				`"user":{"username":"admin","uid":"admin","groups":["system:masters","system:authenticated"]},"sourceIPs":["127.0.0.1"],"userAgent":"kubectl/v1.25.6 (linux/amd64) kubernetes/ff2c119",` +
				`"objectRef":{"resource":"pods","namespace":"{{name}}","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},` +
				`"responseObject":{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"918300"},"items":[{"metadata":{"name":"p-0","namespace":"{{name}}","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{{fill}}"}},"spec":{"containers":[{"name":"c","image":"nginx:1.25"}]},"status":{"phase":"Running"}}]},` + evTail,
		},
	}
}
