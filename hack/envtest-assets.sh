#!/usr/bin/env bash
# Builds the envtest control plane (etcd + kube-apiserver) and a kubectl of the same
# release from the Go module proxy,
# because setup-envtest's binary downloads are not reachable from our CI machines.
# Arguments name more commands of k8s.io/kubernetes to build into the same directory
# (make cluster-assets: kubelet kube-controller-manager kube-scheduler kube-proxy).
# Prints the directory to use as KUBEBUILDER_ASSETS. Builds are cached: a second run
# with the same versions only prints the path.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ASSETS="${ENVTEST_ASSETS_DIR:-$ROOT/bin/k8s/${KUBE_VERSION}-etcd-${ETCD_VERSION}}"
WORK="$ROOT/bin/.envtest-build"
STAGING_VERSION="v0.${KUBE_VERSION#v1.}"

log() { echo "envtest-assets: $*" >&2; }

build_etcd() {
  local dir="$WORK/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  cat >"$dir/go.mod" <<MOD
module envtest.local/etcd

go 1.26

require go.etcd.io/etcd/server/v3 $ETCD_VERSION

replace (
	go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 $ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
)
MOD
  log "building etcd $ETCD_VERSION"
  (cd "$dir" && GOFLAGS=-mod=mod go build -trimpath -o "$ASSETS/etcd" go.etcd.io/etcd/server/v3)
}

# kubernetes_module writes the throwaway module that builds commands of k8s.io/kubernetes.
kubernetes_module() {
  local dir="$WORK/kubernetes-$KUBE_VERSION"
  mkdir -p "$dir"
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  {
    echo "module envtest.local/kubernetes"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    # Every staging module k8s.io/kubernetes replaces with ./staging/... is published
    # on its own as v0.<minor>.<patch>.
    sed -n 's|^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*$|\1|p' "$gomod" |
      while read -r mod; do printf '\t%s => %s %s\n' "$mod" "$mod" "$STAGING_VERSION"; done
    echo ")"
  } >"$dir/go.mod"
  echo "$dir"
}

# build_kubernetes_cmd NAME... builds k8s.io/kubernetes/cmd/NAME into the assets
# directory, stamped with the release so clients can parse its version. Several names go
# to one go build, which compiles the packages they share once.
build_kubernetes_cmd() {
  local dir minor="${KUBE_VERSION#v1.}"
  minor="${minor%%.*}"
  dir="$(kubernetes_module)"
  log "building $* $KUBE_VERSION (several minutes on 2 cores the first time)"
  (cd "$dir" && GOFLAGS=-mod=mod go build -trimpath \
    -ldflags "-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
    -o "$ASSETS/" "${@/#/k8s.io/kubernetes/cmd/}")
}

mkdir -p "$ASSETS"
[ -x "$ASSETS/etcd" ] || build_etcd
[ -x "$ASSETS/kube-apiserver" ] || build_kubernetes_cmd kube-apiserver
[ -x "$ASSETS/kubectl" ] || build_kubernetes_cmd kubectl
missing=()
for name in "$@"; do
  [ -x "$ASSETS/$name" ] || missing+=("$name")
done
[ "${#missing[@]}" -eq 0 ] || build_kubernetes_cmd "${missing[@]}"
echo "$ASSETS"
