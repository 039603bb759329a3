package alert

// Redacted replaces secret values wherever an alert could show them.
const Redacted = "[REDACTED]"

// secretKeys are the fields of a Secret that hold secret material.
var secretKeys = []string{"data", "stringData"}

// RedactObject removes secret material from a decoded Kubernetes object (a
// requestObject or responseObject). Objects of kind Secret, and any object
// when resource is "secrets", have their data and stringData values
// replaced; lists of Secrets are handled item by item. It edits obj in
// place and returns it.
func RedactObject(resource string, obj any) any {
	m, ok := obj.(map[string]any)
	if !ok {
		return obj
	}
	if resource == "secrets" || m["kind"] == "Secret" {
		for _, k := range secretKeys {
			if d, ok := m[k].(map[string]any); ok {
				for key := range d {
					d[key] = Redacted
				}
			} else if _, present := m[k]; present {
				m[k] = Redacted
			}
		}
		if ann, ok := metadataAnnotations(m); ok {
			// kubectl apply copies the whole object, data included, into this annotation.
			if _, present := ann["kubectl.kubernetes.io/last-applied-configuration"]; present {
				ann["kubectl.kubernetes.io/last-applied-configuration"] = Redacted
			}
		}
	}
	if items, ok := m["items"].([]any); ok {
		for _, it := range items {
			RedactObject(resource, it)
		}
	}
	return m
}

func metadataAnnotations(m map[string]any) (map[string]any, bool) {
	md, ok := m["metadata"].(map[string]any)
	if !ok {
		return nil, false
	}
	ann, ok := md["annotations"].(map[string]any)
	return ann, ok
}
