package k8s

import (
	"context"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
)

// Resolver looks up the addresses of a host name; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

var _ Resolver = (*net.Resolver)(nil)

// vaultLookupTimeout bounds the lookup of a VAULT_ADDR host name.
const vaultLookupTimeout = 2 * time.Second

// vaultEgress returns the egress rules a Job needs to reach Vault with its
// own token: one per address of its VAULT_ADDR, on that port. Only a Job
// whose container reads VAULT_TOKEN from its own Secret and is told a
// VAULT_ADDR gets them — a Job with no token has nothing to say to Vault.
// A host name is resolved here, by the worker: the Pod gets the addresses,
// not DNS (an action asks for DNS itself). A name that does not resolve
// adds nothing: the Pod then cannot reach Vault, which fails closed.
func vaultEgress(ctx context.Context, res Resolver, job *batchv1.Job) []EgressRule {
	addr := ""
	hasToken := false
	for _, c := range job.Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			switch {
			case e.Name == "VAULT_ADDR" && e.ValueFrom == nil:
				addr = e.Value
			case e.Name == "VAULT_TOKEN" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil &&
				e.ValueFrom.SecretKeyRef.Name == SecretName(job.Name):
				hasToken = true
			}
		}
	}
	if addr == "" || !hasToken {
		return nil
	}
	u, err := url.Parse(addr)
	if err != nil || u.Hostname() == "" {
		return nil
	}
	port := 8200
	switch {
	case u.Port() != "":
		if port, err = strconv.Atoi(u.Port()); err != nil || port < 1 || port > 65535 {
			return nil
		}
	case u.Scheme == "https":
		port = 443
	case u.Scheme == "http":
		port = 80
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
		ips = []netip.Addr{ip}
	} else if res != nil {
		ctx, cancel := context.WithTimeout(ctx, vaultLookupTimeout)
		defer cancel()
		ips, _ = res.LookupNetIP(ctx, "ip", u.Hostname())
	}
	var rules []EgressRule
	for _, ip := range ips {
		ip = ip.Unmap()
		rules = append(rules, EgressRule{CIDR: netip.PrefixFrom(ip, ip.BitLen()).String(), Port: int32(port)})
	}
	slices.SortFunc(rules, func(a, b EgressRule) int {
		if a.CIDR < b.CIDR {
			return -1
		}
		if a.CIDR > b.CIDR {
			return 1
		}
		return 0
	})
	return slices.Compact(rules)
}

// withVaultEgress appends the Vault rules the catalog's list lacks.
func withVaultEgress(egress, vault []EgressRule) []EgressRule {
	out := slices.Clone(egress)
	for _, v := range vault {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
