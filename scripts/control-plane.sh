#!/usr/bin/env bash
# Builds the control plane of tests/cluster (kube-apiserver and etcd, from the Go modules pinned in
# tests/cluster/controlplane/) into a cache folder outside the repository, once per version, and prints
# that folder's absolute path as the last line of its output: callers read that line.
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/ai-ops/control-plane/<k8s version>/{kube-apiserver,etcd}
#
# With KUBEBUILDER_ASSETS set (a folder holding kube-apiserver and etcd, as envtest uses), it builds
# nothing and prints that folder. Go's own caches (GOPATH, GOCACHE) stay at their defaults, so a second
# checkout or a bumped pin reuses the module downloads and compiled packages.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
module=$root/tests/cluster/controlplane

fail() {
	echo "control-plane: $*" >&2
	exit 1
}
# Exit status 2 means "no Go here" (tests/cluster skips then); any other failure is 1.
no_go() {
	echo "control-plane: $*" >&2
	exit 2
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
	assets=$(cd "$KUBEBUILDER_ASSETS" 2>/dev/null && pwd) ||
		fail "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS is not a folder"
	for binary in kube-apiserver etcd; do
		[ -x "$assets/$binary" ] || fail "KUBEBUILDER_ASSETS=$assets has no executable $binary"
	done
	echo "$assets"
	exit 0
fi

# The pinned versions, read from the go.mod files so that this script never disagrees with them.
k8s_version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" { print $3 }' "$module/go.mod")
etcd_version=$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" { print $3 }' "$module/etcd/go.mod")
[ -n "$k8s_version" ] || fail "no 'require k8s.io/kubernetes vX.Y.Z' line in $module/go.mod"
[ -n "$etcd_version" ] || fail "no 'require go.etcd.io/etcd/server/v3 vX.Y.Z' line in $module/etcd/go.mod"

cache=${XDG_CACHE_HOME:-$HOME/.cache}/ai-ops/control-plane
out=$cache/$k8s_version
# What the binaries were built from: a change to either module's pins rebuilds them.
stamp="kubernetes $k8s_version etcd $etcd_version sums $(cat "$module/go.sum" "$module/etcd/go.sum" | cksum)"

built() {
	[ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ] && [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ]
}

if built; then
	echo "$out"
	exit 0
fi

command -v go >/dev/null ||
	no_go "building kube-apiserver $k8s_version and etcd $etcd_version needs Go (1.26 or newer) on PATH; install it, or set KUBEBUILDER_ASSETS to a folder holding kube-apiserver and etcd"

mkdir -p "$cache"
# One build at a time (two test runs may start together); the second one then finds the binaries.
exec 9>"$cache/.lock"
flock 9
if built; then
	echo "$out"
	exit 0
fi

# The toolchain on PATH, never a downloaded one: a module asking for a newer Go fails here, clearly.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
tmp=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

minor=${k8s_version#v*.}
minor=${minor%%.*}
major=${k8s_version#v}
major=${major%%.*}
pkg=k8s.io/component-base/version
# What the apiserver reports at /version (kubectl shows it); without these it says v0.0.0-master.
ldflags="-s -w -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"

started=$SECONDS
echo "control-plane: building etcd $etcd_version into $out (a few minutes the first time)" >&2
(cd "$module/etcd" && go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" .)
echo "control-plane: building kube-apiserver $k8s_version (the first time takes long: $(nproc) cores)" >&2
(cd "$module" && go build -trimpath -ldflags "$ldflags" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
echo "$stamp" >"$tmp/.stamp"

rm -rf "$out"
chmod 755 "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "control-plane: built in $((SECONDS - started)) s" >&2
echo "$out"
