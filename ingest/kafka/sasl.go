package kafka

import (
	"context"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// SASL mechanisms (NewSASL).
const (
	SASLPlain       = "PLAIN"
	SASLScram256    = "SCRAM-SHA-256"
	SASLScram512    = "SCRAM-SHA-512"
	SASLOAuthBearer = "OAUTHBEARER"
)

// SASLMechanisms are the mechanisms NewSASL knows, in the order errors
// list them.
var SASLMechanisms = []string{SASLPlain, SASLScram256, SASLScram512, SASLOAuthBearer}

// NewSASL returns the mechanism named (case-insensitive) with its
// credentials: a username and password, or for OAUTHBEARER a token, read
// anew on every authentication so that one that is rotated in its file is
// picked up.
func NewSASL(mechanism, username string, secret func() (string, error)) (sasl.Mechanism, error) {
	switch strings.ToUpper(mechanism) {
	case SASLPlain:
		return plain.Plain(func(context.Context) (plain.Auth, error) {
			p, err := secret()
			return plain.Auth{User: username, Pass: p}, err
		}), nil
	case SASLScram256, SASLScram512:
		auth := func(context.Context) (scram.Auth, error) {
			p, err := secret()
			return scram.Auth{User: username, Pass: p}, err
		}
		if strings.ToUpper(mechanism) == SASLScram256 {
			return scram.Sha256(auth), nil
		}
		return scram.Sha512(auth), nil
	case SASLOAuthBearer:
		return oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			t, err := secret()
			return oauth.Auth{Token: t}, err
		}), nil
	}
	return nil, fmt.Errorf("unknown SASL mechanism %q (want %s)", mechanism, strings.Join(SASLMechanisms, ", "))
}
