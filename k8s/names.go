// Package k8s runs each agent action as an isolated Kubernetes Job in the
// agent's namespace: it builds the hardened Job, its Secret and its egress
// NetworkPolicy, starts the Job only once both exist, waits for it, cleans up,
// and bootstraps agent namespaces (Pod Security "restricted", quota, limits,
// default-deny network policy, a token-less service account).
//
// The order Job (suspended) → Secret + NetworkPolicy (owned by the Job) →
// unsuspend gives both the owner references and the guarantee that the
// NetworkPolicy exists before any Pod does.
package k8s

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Labels and annotations every object created by this package carries.
const (
	LabelManagedBy   = "app.kubernetes.io/managed-by"
	LabelAgent       = "airlock.dev/agent"
	LabelWorkflow    = "airlock.dev/workflow"
	LabelActionIndex = "airlock.dev/action-index"
	LabelActionType  = "airlock.dev/action-type"

	AnnotationWorkflowID  = "airlock.dev/workflow-id"
	AnnotationAgentID     = "airlock.dev/agent-id"
	AnnotationActionType  = "airlock.dev/action-type"
	AnnotationTraceparent = "airlock.dev/traceparent"

	// ManagedBy is the value of LabelManagedBy.
	ManagedBy = "airlock"

	// ContainerName is the name of the single container of every action Pod.
	ContainerName = "action"
)

// JobName is the deterministic name of the Job for one action of one workflow,
// so a retried activity or a restarted worker finds the Job it already created
// instead of running the action twice. It is a DNS-1123 label of at most 63
// characters: "airlock-<16 hex of sha256(workflow id)>-<index>".
func JobName(workflowID string, actionIndex int) string {
	return "airlock-" + hashHex(workflowID)[:16] + "-" + strconv.Itoa(actionIndex)
}

// SecretName is the name of the Secret holding a Job's credentials.
func SecretName(jobName string) string { return jobName + "-env" }

// NetworkPolicyName is the name of the NetworkPolicy holding a Job's egress allow-list.
func NetworkPolicyName(jobName string) string { return jobName + "-egress" }

// WorkflowLabel is the value of LabelWorkflow for a workflow id. Workflow ids
// ("cycle/<agent>/<cycle>") are neither label-safe nor bounded, so the label
// is always a hash: 32 hex characters of sha256. The full id is in the
// AnnotationWorkflowID annotation.
func WorkflowLabel(workflowID string) string { return hashHex(workflowID)[:32] }

// AgentLabel is the value of LabelAgent for an agent id: the id itself when it
// is a valid label value, otherwise a sanitised prefix plus a hash, so it stays
// readable, unique and at most 63 characters.
func AgentLabel(agentID string) string { return labelValue(agentID) }

// labelValue returns v when it is a valid label value, else a valid one
// derived from it: up to 46 sanitised characters, "-", 16 hex of sha256(v).
func labelValue(v string) string {
	if len(validation.IsValidLabelValue(v)) == 0 {
		return v
	}
	b := []byte(v)
	for i, c := range b {
		if !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			b[i] = '-'
		}
	}
	prefix := string(b)
	if len(prefix) > 46 {
		prefix = prefix[:46]
	}
	// A label value must begin and end with an alphanumeric character; the
	// hash suffix gives the end, trimming gives the beginning.
	prefix = strings.TrimLeftFunc(prefix, func(r rune) bool { return !isAlnum(byte(r)) })
	prefix = strings.TrimRightFunc(prefix, func(r rune) bool { return !isAlnum(byte(r)) })
	if prefix == "" {
		return hashHex(v)[:16]
	}
	return prefix + "-" + hashHex(v)[:16]
}

func isAlnum(c byte) bool {
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
}

func hashHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
