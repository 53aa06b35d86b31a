package activities

import (
	"context"
	"errors"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/vault"
)

// AuditHeadSigner signs audit-trail heads with a key that never leaves
// Vault (vault.AuditSigner).
type AuditHeadSigner interface {
	Key() string
	Sign(ctx context.Context, msg []byte) (signature string, version int, err error)
}

// ErrTypeAuditUnsigned marks a worker that has no audit signer: retrying
// cannot help, and the trail records that its head is unsigned.
const ErrTypeAuditUnsigned = "AuditUnsigned"

// SignHeadInput names the chain head to sign.
type SignHeadInput struct {
	WorkflowID string `json:"workflow_id"`
	HeadSeq    int    `json:"head_seq"`
	Head       string `json:"head"`
	Final      bool   `json:"final,omitempty"`
}

// SignAuditHead signs a cycle's chain head (contract.HeadMessage) with the
// audit key. The signature is not a secret: it goes into the trail.
func (a *Activities) SignAuditHead(ctx context.Context, in SignHeadInput) (contract.HeadSignature, error) {
	if a.AuditSigner == nil {
		return contract.HeadSignature{}, permanent(ErrTypeAuditUnsigned, errors.New("sign audit head: worker has no audit signing key"))
	}
	sig, v, err := a.AuditSigner.Sign(ctx, contract.HeadMessage(in.WorkflowID, in.HeadSeq, in.Head))
	if err != nil && !errors.Is(err, vault.ErrUnavailable) {
		// Refused (no key, no sign policy): retrying cannot help; the
		// trail records the head unsigned at once.
		return contract.HeadSignature{}, permanent(ErrTypeAuditUnsigned, err)
	}
	if err != nil {
		return contract.HeadSignature{}, err // an outage: retried
	}
	return contract.HeadSignature{WorkflowID: in.WorkflowID, HeadSeq: in.HeadSeq, Head: in.Head,
		Key: a.AuditSigner.Key(), KeyVersion: v, Signature: sig, Final: in.Final}, nil
}
