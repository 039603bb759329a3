package eks

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/smithy-go"

	"github.com/vigil-k8s/vigil/ingest"
)

// client is what the source calls of CloudWatch Logs.
type client interface {
	FilterLogEvents(ctx context.Context, in *cloudwatchlogs.FilterLogEventsInput, opts ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.FilterLogEventsOutput, error)
	DescribeLogStreams(ctx context.Context, in *cloudwatchlogs.DescribeLogStreamsInput, opts ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.DescribeLogStreamsOutput, error)
}

// newClient loads the SDK's configuration — the default credential chain
// unless o.Credentials is set — and returns the client and its region.
// The SDK's own retries are turned off: the source retries with
// internal/backoff, which logs and counts every failure, and keeps
// retrying for as long as it takes rather than giving up after three.
func newClient(ctx context.Context, o Options) (client, string, error) {
	load := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
	}
	if o.Region != "" {
		load = append(load, config.WithRegion(o.Region))
	}
	if o.Credentials != nil {
		load = append(load, config.WithCredentialsProvider(o.Credentials))
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, "", fmt.Errorf("AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, "", errors.New("no AWS region: set region, or AWS_REGION in the environment")
	}
	c := cloudwatchlogs.NewFromConfig(cfg, func(co *cloudwatchlogs.Options) {
		if o.Endpoint != "" {
			co.BaseEndpoint = aws.String(o.Endpoint)
		}
	})
	return c, cfg.Region, nil
}

// classify names what kind of failure err is, for the metric and the log
// level: throttling is CloudWatch pacing vigil, the others need a look.
func classify(err error) string {
	var api smithy.APIError
	if !errors.As(err, &api) {
		return ingest.ReasonRequest
	}
	switch api.ErrorCode() {
	case "ThrottlingException", "LimitExceededException", "ServiceQuotaExceededException":
		return ingest.ReasonThrottled
	case "ResourceNotFoundException":
		return ingest.ReasonNotFound
	case "AccessDeniedException", "UnrecognizedClientException", "ExpiredTokenException",
		"InvalidClientTokenId", "InvalidSignatureException", "IncompleteSignature", "MissingAuthenticationToken":
		return ingest.ReasonAccessDenied
	}
	return ingest.ReasonService
}
