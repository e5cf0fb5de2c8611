#!/usr/bin/env bash
# image_chroot.sh: run a command in a container image's file system the way a Kubernetes node runs the
# worker's container, for the image tests (tests/helpers/image.py starts it; see --help).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: unshare --mount --pid --fork [--net] -- image_chroot.sh [--own-network] IMAGE_ROOT NEW_ROOT UID GID WORKDIR -- COMMAND...

Run inside a new mount and PID namespace, where everything mounted here disappears with the last
process. Mounts IMAGE_ROOT (a `podman image mount` point) read-only at NEW_ROOT, as
readOnlyRootFilesystem does, with /proc, a minimal /dev and a tmpfs /tmp (the Deployment's emptyDir),
then replaces itself with COMMAND run from WORKDIR as UID:GID, without supplementary groups or
capabilities and with no_new_privs (allowPrivilegeEscalation: false). The environment is passed
through unchanged: the caller sets the container's.

  --own-network   the namespace has its own network (unshare --net): bring its loopback up
USAGE
}

mount_minimal_dev() {
  local dev=$1 device
  mount -t tmpfs -o nosuid,noexec,mode=0755,size=64k tmpfs "$dev"
  for device in null zero full random urandom tty; do
    touch "$dev/$device"
    mount --bind "/dev/$device" "$dev/$device"
  done
  ln -s /proc/self/fd "$dev/fd"
  ln -s /proc/self/fd/0 "$dev/stdin"
  ln -s /proc/self/fd/1 "$dev/stdout"
  ln -s /proc/self/fd/2 "$dev/stderr"
}

main() {
  if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    usage
    return 0
  fi
  local own_network=false
  if [[ "${1:-}" == "--own-network" ]]; then
    own_network=true
    shift
  fi
  if [[ $# -lt 7 || "$6" != "--" ]]; then
    usage >&2
    return 2
  fi
  local image_root=$1 new_root=$2 uid=$3 gid=$4 workdir=$5
  shift 6
  mount --make-rprivate /
  mount --bind "$image_root" "$new_root"
  mount -o remount,bind,ro "$new_root"
  mount -t proc -o nosuid,nodev,noexec proc "$new_root/proc"
  mount_minimal_dev "$new_root/dev"
  mount -t tmpfs -o nosuid,nodev,mode=1777,size=64m tmpfs "$new_root/tmp"
  if [[ "$own_network" == true ]]; then
    ip link set lo up
  fi
  exec setpriv --no-new-privs -- unshare --root="$new_root" --wd="$workdir" --setgid="$gid" --setuid="$uid" -- "$@"
}

main "$@"
