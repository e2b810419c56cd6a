#!/usr/bin/env bash
# Builds the helm CLI (from the Go module helm.sh/helm/v4 at one pinned release) into a cache folder outside
# the repository, once per version, and prints the binary's absolute path as the last line of its output:
# tests/cluster reads that line.
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/ai-ops/control-plane/helm-<version>/helm
#
# With AI_OPS_HELM set (the path of a helm binary), it builds nothing and prints that path. Exit status 2
# means "no Go here" (the chart suite skips then); any other failure is 1.
set -euo pipefail

# The newest release (not a pre-release) on the module proxy when this was pinned; its go.mod asks for a
# Go the 1.26 toolchain here has.
version=v4.3.2

fail() {
	echo "helm: $*" >&2
	exit 1
}

if [ -n "${AI_OPS_HELM:-}" ]; then
	[ -x "$AI_OPS_HELM" ] || fail "AI_OPS_HELM=$AI_OPS_HELM is not an executable"
	echo "$AI_OPS_HELM"
	exit 0
fi

cache=${XDG_CACHE_HOME:-$HOME/.cache}/ai-ops/control-plane
out=$cache/helm-$version

if [ -x "$out/helm" ]; then
	echo "$out/helm"
	exit 0
fi

if ! command -v go >/dev/null; then
	echo "helm: building helm $version needs Go on PATH; install it, or set AI_OPS_HELM to a helm binary" >&2
	exit 2
fi

mkdir -p "$cache"
# One build at a time (two test runs may start together); the second one then finds the binary.
exec 9>"$cache/.helm.lock"
flock 9
if [ -x "$out/helm" ]; then
	echo "$out/helm"
	exit 0
fi

# The toolchain on PATH, never a downloaded one; `go install pkg@version` builds the module with its own
# go.mod and go.sum (checked against the checksum database), outside any module of ours.
export GOTOOLCHAIN=local CGO_ENABLED=0
tmp=$(mktemp -d "$cache/.helm-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

started=$SECONDS
echo "helm: building helm $version into $out (a few minutes the first time)" >&2
# What `helm version` reports; without it the binary says it is a development build.
GOBIN=$tmp go install -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$version" \
	"helm.sh/helm/v4/cmd/helm@$version"

rm -rf "$out"
chmod 755 "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "helm: built in $((SECONDS - started)) s" >&2
echo "$out/helm"
