package provider

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// apiVersionPart matches the version part of a resourceName or methodName:
// v1, v1beta1, v2alpha3.
var apiVersionPart = regexp.MustCompile(`^v[0-9]+((alpha|beta)[0-9]+)?$`)

// namespaceSubresources are the subresources of Namespace itself, which
// make core/v1/namespaces/NAME/SUB a namespace's and not a list of SUB.
var namespaceSubresources = []string{"status", "finalize"}

// gkeObject reads the object a request was about and its path from
// resourceName, GROUP/VERSION[/namespaces/NS]/RESOURCE[/NAME[/SUBRESOURCE]]
// ("core" for the core group), or, when the entry has none, what
// methodName tells: group, version, resource and subresource. A
// resourceName that starts with "/" is a non-resource path. GKE logs no
// query string, so the path is all of requestURI there is.
func gkeObject(resourceName, method string) (*objectRef, string, error) {
	if strings.HasPrefix(resourceName, "/") {
		return nil, resourceName, nil
	}
	if resourceName != "" {
		return fromResourceName(resourceName)
	}
	return fromMethod(method), "", nil
}

func fromResourceName(name string) (*objectRef, string, error) {
	parts := strings.Split(name, "/")
	if len(parts) < 3 || !apiVersionPart.MatchString(parts[1]) {
		return nil, "", fmt.Errorf("protoPayload.resourceName %q: want GROUP/VERSION/..., the object's API group and version first", name)
	}
	ref := &objectRef{APIGroup: coreGroup(parts[0]), APIVersion: parts[1]}
	rest := parts[2:]
	switch {
	case rest[0] == "namespaces" && len(rest) == 3 && slices.Contains(namespaceSubresources, rest[2]):
		ref.Resource, ref.Name, ref.Subresource = "namespaces", rest[1], rest[2]
		rest = nil
	case rest[0] == "namespaces" && len(rest) >= 3:
		ref.Namespace = rest[1]
		rest = rest[2:]
	}
	if len(rest) > 0 {
		ref.Resource = rest[0]
	}
	if len(rest) > 1 {
		ref.Name = rest[1]
	}
	if len(rest) > 2 {
		ref.Subresource = strings.Join(rest[2:], "/")
	}
	if ref.Resource == "" {
		return nil, "", fmt.Errorf("protoPayload.resourceName %q: names no resource", name)
	}
	prefix := "/apis/" + ref.APIGroup + "/"
	if ref.APIGroup == "" {
		prefix = "/api/"
	}
	return ref, prefix + strings.Join(parts[1:], "/"), nil
}

// fromMethod reads a methodName, the reversed API group, the version, the
// resource and subresource and the verb: io.k8s.core.v1.pods.exec.create,
// io.k8s.authorization.rbac.v1.clusterroles.create,
// com.coreos.database.etcd.v1beta2.etcdbackups.create. nil when it names
// no version and so no resource.
func fromMethod(method string) *objectRef {
	parts := strings.Split(method, ".")
	v := slices.IndexFunc(parts, apiVersionPart.MatchString)
	if v < 1 || v >= len(parts)-2 {
		return nil
	}
	group := slices.Clone(parts[:v])
	slices.Reverse(group)
	ref := &objectRef{APIGroup: coreGroup(strings.Join(group, ".")), APIVersion: parts[v], Resource: parts[v+1]}
	if sub := parts[v+2 : len(parts)-1]; len(sub) > 0 {
		ref.Subresource = strings.Join(sub, "/")
	}
	return ref
}

// nonResourceMethod reads the methodName GKE gives a request for a
// non-resource path, io.k8s.readyz for /readyz: a single name after io.k8s.
func nonResourceMethod(method string) (string, bool) {
	name, ok := strings.CutPrefix(method, "io.k8s.")
	if !ok || name == "" || strings.Contains(name, ".") {
		return "", false
	}
	return "/" + name, true
}

// coreGroup is "" for the core API group, which GKE calls "core" in
// resourceName and io.k8s.core in methodName.
func coreGroup(g string) string {
	if g == "core" || g == "core.k8s.io" {
		return ""
	}
	return g
}
