//go:build tools

// Package airlock pins dependencies the code will use.
package airlock

import (
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/hashicorp/vault/api"
	_ "github.com/santhosh-tekuri/jsonschema/v6"
	_ "github.com/slack-go/slack/slacktest"
	_ "github.com/stretchr/testify/require"
	_ "go.opentelemetry.io/otel/sdk/trace"
	_ "go.temporal.io/sdk/client"
	_ "go.temporal.io/sdk/contrib/opentelemetry"
	_ "go.temporal.io/sdk/testsuite"
	_ "go.uber.org/goleak"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/client-go/kubernetes/fake"
	_ "k8s.io/client-go/tools/clientcmd"
	_ "sigs.k8s.io/yaml"
)
