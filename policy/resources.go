package policy

// An audit policy selects resources by API group, while most rules name
// only the resource: the groups (and whether a resource is namespaced, and
// which subresources exist) come from this table of Kubernetes' built-in
// resources. A resource not in it may be in any group.
type builtin struct {
	groups       []string
	namespaced   bool
	subresources []string
}

func builtins() map[string]builtin {
	core := []string{""}
	ns := func(group string, subs ...string) builtin {
		return builtin{groups: []string{group}, namespaced: true, subresources: subs}
	}
	cluster := func(group string, subs ...string) builtin {
		return builtin{groups: []string{group}, subresources: subs}
	}
	return map[string]builtin{
		"pods":                   {groups: core, namespaced: true, subresources: []string{"attach", "binding", "ephemeralcontainers", "eviction", "exec", "log", "portforward", "proxy", "resize", "status"}},
		"services":               ns("", "proxy", "status"),
		"configmaps":             ns(""),
		"secrets":                ns(""),
		"serviceaccounts":        ns("", "token"),
		"endpoints":              ns(""),
		"events":                 {groups: []string{"", "events.k8s.io"}, namespaced: true},
		"limitranges":            ns(""),
		"persistentvolumeclaims": ns("", "status"),
		"podtemplates":           ns(""),
		"replicationcontrollers": ns("", "scale", "status"),
		"resourcequotas":         ns("", "status"),
		"bindings":               ns(""),
		"namespaces":             cluster("", "finalize", "status"),
		"nodes":                  cluster("", "proxy", "status"),
		"persistentvolumes":      cluster("", "status"),
		"componentstatuses":      cluster(""),

		"deployments":         ns("apps", "scale", "status"),
		"daemonsets":          ns("apps", "status"),
		"statefulsets":        ns("apps", "scale", "status"),
		"replicasets":         ns("apps", "scale", "status"),
		"controllerrevisions": ns("apps"),

		"jobs":     ns("batch", "status"),
		"cronjobs": ns("batch", "status"),

		"horizontalpodautoscalers": ns("autoscaling", "status"),
		"poddisruptionbudgets":     ns("policy", "status"),

		"ingresses":       ns("networking.k8s.io", "status"),
		"networkpolicies": ns("networking.k8s.io"),
		"ingressclasses":  cluster("networking.k8s.io"),
		"endpointslices":  ns("discovery.k8s.io"),

		"roles":               ns("rbac.authorization.k8s.io"),
		"rolebindings":        ns("rbac.authorization.k8s.io"),
		"clusterroles":        cluster("rbac.authorization.k8s.io"),
		"clusterrolebindings": cluster("rbac.authorization.k8s.io"),

		"mutatingwebhookconfigurations":     cluster("admissionregistration.k8s.io"),
		"validatingwebhookconfigurations":   cluster("admissionregistration.k8s.io"),
		"validatingadmissionpolicies":       cluster("admissionregistration.k8s.io", "status"),
		"validatingadmissionpolicybindings": cluster("admissionregistration.k8s.io"),

		"certificatesigningrequests": cluster("certificates.k8s.io", "approval", "status"),
		"leases":                     ns("coordination.k8s.io"),

		"tokenreviews":              cluster("authentication.k8s.io"),
		"selfsubjectreviews":        cluster("authentication.k8s.io"),
		"subjectaccessreviews":      cluster("authorization.k8s.io"),
		"selfsubjectaccessreviews":  cluster("authorization.k8s.io"),
		"selfsubjectrulesreviews":   cluster("authorization.k8s.io"),
		"localsubjectaccessreviews": ns("authorization.k8s.io"),

		"storageclasses":    cluster("storage.k8s.io"),
		"csidrivers":        cluster("storage.k8s.io"),
		"csinodes":          cluster("storage.k8s.io"),
		"volumeattachments": cluster("storage.k8s.io", "status"),

		"customresourcedefinitions": cluster("apiextensions.k8s.io", "status"),
		"apiservices":               cluster("apiregistration.k8s.io", "status"),
		"priorityclasses":           cluster("scheduling.k8s.io"),
		"runtimeclasses":            cluster("node.k8s.io"),
	}
}

// standardVerbs are the verbs kube-apiserver gives resource requests.
func standardVerbs() []string {
	return []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
}
