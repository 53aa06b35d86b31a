#!/usr/bin/env bash
# Builds the real development and test servers (Temporal, etcd, Kubernetes
# control plane and kubelet, kwok, kube-router, Vault) and promtool (which
# checks and unit-tests the Prometheus alert rules) from the Go modules
# pinned under tools/.
#
# Each server is cached under $AIRLOCK_CACHE/tools/<name>-<key>, where key is a
# hash of that module's go.mod, go.sum and local sources, so a version bump
# rebuilds only what changed and a fresh clone on the same machine reuses the
# cache. $AIRLOCK_CACHE/bin holds links to the current binaries; that is where
# the launcher (internal/devstack) looks.
#
# Usage: tools/build.sh [server ...]   (default: all)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
export HOME
cache=${AIRLOCK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock}
bin="$cache/bin"
mkdir -p "$bin"

log() { printf '[tools %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

key() { # hash of everything that decides what a module builds
	(cd "$here/$1" && cat go.mod go.sum $(ls *.go *.patch 2>/dev/null || true)) | sha256sum | cut -c1-16
}

# build NAME BINARY... : runs build_NAME into a fresh dir unless cached.
build() {
	local name=$1; shift
	local k dir
	k=$(key "$name")
	dir="$cache/tools/$name-$k"
	if [ -f "$dir/.complete" ]; then
		log "$name: cached ($dir)"
	else
		log "$name: building (cold builds take minutes on 2 cores; log: $cache/tools/$name.log)"
		rm -rf "$dir" && mkdir -p "$dir"
		local start=$SECONDS
		if ! (cd "$here/$name" && "build_$name" "$dir") >"$cache/tools/$name.log" 2>&1; then
			tail -30 "$cache/tools/$name.log" >&2
			log "$name: BUILD FAILED (full log: $cache/tools/$name.log)"
			exit 1
		fi
		touch "$dir/.complete"
		log "$name: built in $((SECONDS - start))s"
	fi
	for b in "$@"; do ln -sfn "$dir/$b" "$bin/$b"; done
}

flags=(-trimpath -ldflags="-s -w")

build_temporal() { go build "${flags[@]}" -o "$1/temporal" github.com/temporalio/cli/cmd/temporal; }
build_etcd() { go build "${flags[@]}" -o "$1/etcd" .; }
build_kwok() { go build "${flags[@]}" -o "$1/kwok" sigs.k8s.io/kwok/cmd/kwok; }
build_kube() {
	local v=v1.36.3 pkg=k8s.io/component-base/version
	local ld="-s -w -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=36"
	for c in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet; do
		echo "building $c"
		go build -trimpath -ldflags="$ld" -o "$1/$c" "k8s.io/kubernetes/cmd/$c"
	done
}
build_kuberouter() {
	# The NetworkPolicy enforcer of the real node (firewall only). v2.1.0 is
	# the only release the module proxy serves; its two advisories concern
	# modes the node never runs (see tools/kuberouter/README.md).
	local v=v2.1.0 pkg=github.com/cloudnativelabs/kube-router/v2/pkg/version
	go build -trimpath -ldflags="-s -w -X $pkg.Version=$v -X $pkg.BuildDate=reproducible" \
		-o "$1/kube-router" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
}
build_prometheus() {
	# promtool: `promtool check rules` and `promtool test rules` run the
	# alert rules in deploy/prometheus/ (deploy/prometheus/rules_test.go).
	local v=3.16.0 pkg=github.com/prometheus/common/version
	go build -trimpath -ldflags="-s -w -X $pkg.Version=$v -X $pkg.Branch=release-3.16 -X $pkg.BuildDate=reproducible" \
		-o "$1/promtool" github.com/prometheus/prometheus/cmd/promtool
	# promql-names: the metric names PromQL expressions select, with
	# Prometheus's parser (e2e/dashboard_test.go).
	go build "${flags[@]}" -o "$1/promql-names" .
}
build_vault() {
	# No released vault/sdk compiles with vault v1.21.4: patch v0.21.0.
	go mod download github.com/hashicorp/vault/sdk@v0.21.0
	local src
	src=$(go mod download -json github.com/hashicorp/vault/sdk@v0.21.0 | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
	rm -rf .sdk-patched && cp -r "$src" .sdk-patched && chmod -R u+w .sdk-patched
	(cd .sdk-patched && patch -p1 <../sdk.patch)
	go build "${flags[@]}" -o "$1/vault" github.com/hashicorp/vault
}

# The replace of vault/sdk names ./.sdk-patched; go commands in that module
# need it to exist before they run, even to hash.
if [ ! -d "$here/vault/.sdk-patched" ]; then
	src=$(cd "$here/temporal" && go mod download -json github.com/hashicorp/vault/sdk@v0.21.0 | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
	cp -r "$src" "$here/vault/.sdk-patched" && chmod -R u+w "$here/vault/.sdk-patched"
	(cd "$here/vault/.sdk-patched" && patch -p1 -s <../sdk.patch)
fi

all=(temporal etcd kube kwok kuberouter vault prometheus)
want=("${@:-${all[@]}}")
total=$SECONDS
for s in "${want[@]}"; do
	case $s in
	temporal) build temporal temporal ;;
	etcd) build etcd etcd ;;
	kube) build kube kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet ;;
	kwok) build kwok kwok ;;
	kuberouter) build kuberouter kube-router ;;
	vault) build vault vault ;;
	prometheus) build prometheus promtool promql-names ;;
	*) echo "unknown server $s (known: ${all[*]})" >&2; exit 2 ;;
	esac
done
log "all servers ready in $bin ($((SECONDS - total))s)"
