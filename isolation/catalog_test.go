package isolation

import (
	"fmt"
	"strings"
)

const (
	// readPolicy is the Vault policy of every probe: it reads
	// secret/airlock/<readPolicy>/* (devsetup.PolicyHCL) and nothing else.
	readPolicy = "airlock-iso-read"
	// otherPolicy names a KV path no probe's token may read.
	otherPolicy = "airlock-iso-other"
	agentID     = "iso"
	killAgentID = "iso-kill"
)

// Probe scripts. They print what they could and could not do, never a
// secret: the output is the action's result, which lands in workflow history.
// (Debian's busybox 1.35 wget crashes with -T: timeout bounds it instead.)
const (
	vaultProbe = `
get() { timeout 5 wget -q -O - --header "X-Vault-Token: $VAULT_TOKEN" "$VAULT_ADDR/v1/secret/data/airlock/$1/probe" 2>/tmp/err; }
own=$(get ` + readPolicy + ` | sed -n 's/.*"value":"\([^"]*\)".*/\1/p')
echo "own secret sha256: $(printf %s "$own" | sha256sum | cut -d' ' -f1)"
if get ` + otherPolicy + ` >/dev/null; then echo "other secret: READ"; else echo "other secret: refused $(grep -o '40[0-9]' /tmp/err | head -1)"; fi
`
	// rotationProbe watches its token file from inside: it records the
	// token it started with, waits for the kubelet to refresh the file with
	// the rotated one, and checks both tokens against Vault until the old
	// one is refused. It prints hashes, never a token.
	rotationProbe = `
f=/var/run/airlock/vault-token
start=$(date +%s)
at() { echo $(( $(date +%s) - start )); }
works() { timeout 5 wget -q -O /dev/null --header "X-Vault-Token: $1" "$VAULT_ADDR/v1/secret/data/airlock/` + readPolicy + `/probe" 2>/dev/null; }
hash() { printf %s "$1" | sha256sum | cut -c1-16; }
echo "file: $(stat -L -c '%a %u:%g' $f)"
old=$(cat $f)
echo "first token: $(hash "$old")"
if [ "$VAULT_TOKEN" = "$old" ]; then echo "env: same as file"; fi
if works "$old"; then echo "first token: works"; else echo "first token: refused"; fi
while [ "$(cat $f)" = "$old" ]; do sleep 0.2; done
new=$(cat $f)
echo "timing: file changed after $(at)s"
echo "file changed: $(hash "$new")"
if works "$new"; then echo "new token: works"; else echo "new token: refused"; fi
while works "$old"; do sleep 0.2; done
echo "timing: old token refused after $(at)s"
echo "old token: refused"
if works "$new"; then echo "new token: still works"; else echo "new token: refused"; fi
if [ "$VAULT_TOKEN" = "$old" ]; then echo "env: still the first token"; fi
`
	// reach prints "reached <addr>: <body>" or "blocked <addr>".
	reachFn = `reach() { if body=$(timeout 3 wget -q -O - "http://$1/" 2>/dev/null); then echo "reached $1: $body"; else echo "blocked $1"; fi; }
`
	hardeningProbe = `
if touch /probe 2>/dev/null; then echo "root fs: writable"; else echo "root fs: read-only"; fi
if touch /tmp/probe; then echo "tmp: writable"; else echo "tmp: read-only"; fi
echo "uid: $(id -u)"
grep -E '^(CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\t ' ' '
if [ -e /var/run/secrets/kubernetes.io/serviceaccount/token ]; then echo "sa token: mounted"; else echo "sa token: absent"; fi
for a in %s; do
  out=$(timeout 3 wget -S -q --no-check-certificate -O /dev/null "https://$a/version" 2>&1)
  case "$out" in *HTTP/*) echo "apiserver $a: reached";; *) echo "apiserver $a: unreachable";; esac
done
`
)

// catalogYAML is the probes' catalog: image is the real node's busybox,
// host the node's Pod-network address with two test servers on it, apiPort
// the apiserver's port.
func catalogYAML(image, host string, allowed, other int, apiPort string) string {
	indent := func(script string) string {
		return strings.ReplaceAll(strings.TrimSpace(script), "\n", "\n        ")
	}
	action := func(name, script, egress string) string {
		return fmt.Sprintf(`
  - name: %s
    image: %s
    command:
      - sh
      - -c
      - |
        %s
    class: read
    risk: low
    vault_policies: [%s]
    egress: [%s]
    deadline: 2m
`, name, image, indent(script), readPolicy, egress)
	}
	allowedRule := fmt.Sprintf("{cidr: %s/32, port: %d}", host, allowed)
	reachBoth := reachFn + fmt.Sprintf("reach %s:%d\nreach %s:%d\n", host, allowed, host, other)
	var b strings.Builder
	b.WriteString("actions:")
	b.WriteString(action("vault-probe", vaultProbe, ""))
	b.WriteString(action("egress-probe", reachBoth, allowedRule))
	b.WriteString(action("no-egress-probe", reachBoth+`
if timeout 3 wget -q -O /dev/null "$VAULT_ADDR/v1/sys/health"; then echo "vault: reached"; else echo "vault: blocked"; fi
reach 1.1.1.1:80
`, ""))
	// The apiserver by its Service IP, and by this host's address on the
	// apiserver's port.
	b.WriteString(action("hardening-probe", fmt.Sprintf(hardeningProbe, "10.0.0.1:443 "+host+":"+apiPort), ""))
	b.WriteString(action("rotation-probe", rotationProbe, ""))
	b.WriteString(`
  - name: echo-probe
    image: ` + image + `
    command: ["sh", "-c", "echo 'line one {{.word}}'; echo 'line two'"]
    params_schema: {type: object, required: [word], properties: {word: {type: string, pattern: "^[a-z]+$"}}, additionalProperties: false}
    class: read
    risk: low
    vault_policies: [` + readPolicy + `]
    deadline: 2m
  - name: sleeper
    image: ` + image + `
    command: ["sleep", "600"]
    class: read
    risk: low
    vault_policies: [` + readPolicy + `]
    deadline: 15m
agents:
  # Test agents keep the phases the tests expect: they fail, are denied
  # and send invalid requests on purpose, so demotion is off (the
  # earned-trust tests use agents of their own).
  - id: ` + agentID + `
    owner: isolation-tests
    approvers: [U1, U2]
    namespace: airlock-iso
    actions: [vault-probe, egress-probe, no-egress-probe, hardening-probe, rotation-probe, echo-probe, sleeper]
    phases: {read: autonomous, write: advisory}
    trust: {demotion: {disabled: [denials, failures, rollback, violation, disagreement]}}
    budgets: {actions_per_hour: 100000, running_jobs: 100}
  - id: ` + killAgentID + `
    owner: isolation-tests
    approvers: [U1, U2]
    namespace: airlock-iso-kill
    actions: [sleeper]
    phases: {read: autonomous, write: advisory}
    trust: {demotion: {disabled: [denials, failures, rollback, violation, disagreement]}}
`)
	return b.String()
}
