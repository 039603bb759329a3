package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Secret reads a secret from an environment variable or a file, whichever
// is named; what names the secret is used in errors, never its value.
func Secret(what, env, file string) (string, error) {
	switch {
	case env != "" && file != "":
		return "", fmt.Errorf("%s: set either an environment variable or a file, not both", what)
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok || v == "" {
			return "", fmt.Errorf("%s: environment variable %s is not set", what, env)
		}
		return strings.TrimSpace(v), nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("%s: file %s is empty", what, file)
		}
		return v, nil
	}
	return "", errors.New(what + ": not configured")
}
