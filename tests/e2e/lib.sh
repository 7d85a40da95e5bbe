# shellcheck shell=bash
# tests/e2e/lib.sh: boot real systemd in a container and check things inside it.
#
# Source it from a bash script running as root:
#
#   . tests/e2e/lib.sh
#   e2e_host_tools                      # systemd-nspawn, debootstrap (apt-get if missing)
#   e2e_boot web trixie                 # a fresh copy of the cached trixie rootfs, booted
#   e2e_install web target/release/steward /usr/bin/steward
#   e2e_exec web systemctl start steward@demo
#   check "it answers" e2e_exec web curl -fsS 127.0.0.1:8080/
#   e2e_summary                         # prints "N passed, N failed"; status 1 on a failure
#
# Every container gets its own network namespace (--private-network): its 127.0.0.1 is
# its own, so fixed ports inside do not collide with anything on the host, and it has no
# other network (install a .deb with dpkg -i, or put more packages in E2E_PACKAGES). Rootfs images
# are cached in $E2E_CACHE/SUITE (built once by debootstrap, under a lock); each boot runs
# on an overlay of that image, thrown away by e2e_stop. An EXIT trap stops every container
# this shell booted and removes its mounts and files, also when the script fails or is
# interrupted; an EXIT trap the script set before its first e2e_boot still runs after it.

E2E_CACHE=${E2E_CACHE:-/var/cache/steward-e2e}
E2E_MIRROR=${E2E_MIRROR:-http://deb.debian.org/debian}
# What every image holds besides minbase (another list makes another cached image).
E2E_PACKAGES=${E2E_PACKAGES:-systemd,systemd-sysv,dbus,curl,procps}
E2E_BOOT_TIMEOUT=${E2E_BOOT_TIMEOUT:-120}
E2E_PASSED=0
E2E_FAILED=0
E2E_FAILED_NAMES=()
E2E_WORK=""
E2E_CALLER_EXIT_TRAP=""
declare -gA E2E_NSPAWN_PID=() E2E_INIT_PID=() E2E_DIR=()

e2e_log() { printf '[e2e %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# Milliseconds since the epoch, for timings.
e2e_now_ms() { date +%s%3N; }

# Installs systemd-nspawn and debootstrap on the host if they are missing (Debian/Ubuntu).
e2e_host_tools() {
  local need=()
  command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
  [ ${#need[@]} -eq 0 ] && return 0
  e2e_log "installing on the host: ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# Prints the path of the cached rootfs of SUITE (bookworm, trixie, ...), building it with
# debootstrap first if it is missing. One image per suite and package list (a hash of
# E2E_PACKAGES and the mirror in its name), so runs that want other packages never
# replace an image under a running container. Safe to call from several runs at once:
# the build holds a lock, and the image appears by rename once complete.
e2e_rootfs() {
  local suite=$1
  local stamp="$E2E_PACKAGES $E2E_MIRROR"
  local image
  image=$E2E_CACHE/$suite-$(printf '%s' "$stamp" | sha256sum | cut -c1-12)
  mkdir -p "$E2E_CACHE"
  (
    exec 9>"$image.lock"
    flock 9
    [ -f "$image/.e2e-stamp" ] && exit 0
    local started
    started=$(e2e_now_ms)
    e2e_log "building the $suite image in $image (debootstrap, a few minutes)"
    # A second try: one failed download of ~150 packages should not fail the suite.
    local attempt
    for attempt in 1 2; do
      rm -rf "$image.tmp"
      debootstrap --variant=minbase --include="$E2E_PACKAGES" "$suite" "$image.tmp" "$E2E_MIRROR" \
        >"$image.debootstrap.log" 2>&1 && break
      e2e_log "debootstrap $suite failed (attempt $attempt); the end of $image.debootstrap.log:"
      tail -n 30 "$image.debootstrap.log" >&2
      if [ "$attempt" = 2 ]; then
        rm -rf "$image.tmp"
        exit 1
      fi
    done
    _e2e_prepare_image "$image.tmp" || exit 1
    printf '%s\n' "$stamp" >"$image.tmp/.e2e-stamp"
    mv "$image.tmp" "$image"
    e2e_log "built the $suite image in $(( ($(e2e_now_ms) - started) / 1000 )) s"
  ) || return 1
  printf '%s\n' "$image"
}

# Makes a fresh debootstrap boot quickly and quietly in a container.
_e2e_prepare_image() {
  local root=$1
  # An empty machine-id: systemd makes one at each boot (every run is a new machine).
  : >"$root/etc/machine-id"
  echo e2e >"$root/etc/hostname"
  # Nothing in a test container needs a login prompt or timers that fire mid-test.
  local unit
  for unit in console-getty.service getty@.service systemd-timesyncd.service \
    apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
    fstrim.timer systemd-tmpfiles-clean.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
}

# e2e_boot NAME SUITE: boots a throwaway copy of the SUITE image as container NAME (a
# short word; the real machine name gets this shell's pid) and waits until its systemd
# says running or degraded. The console goes to $(e2e_dir NAME)/console.log.
e2e_boot() {
  local name=$1 suite=$2
  local image dir started
  image=$(e2e_rootfs "$suite") || return 1
  if [ -z "$E2E_WORK" ]; then
    _e2e_remove_stale_work
    E2E_WORK=$(mktemp -d "/var/tmp/steward-e2e.$$.XXXXXX")
    # The caller's own EXIT trap, if any, runs after ours instead of being replaced.
    local previous
    previous=$(trap -p EXIT)
    if [ -n "$previous" ]; then
      eval "set -- $previous"
      E2E_CALLER_EXIT_TRAP=$3
    fi
    trap e2e_cleanup EXIT
    # So that the EXIT trap also runs when the run is interrupted or timed out.
    trap 'exit 130' INT
    trap 'exit 143' TERM
  fi
  dir=$E2E_WORK/$name
  mkdir -p "$dir/upper" "$dir/overlay-work" "$dir/root"
  E2E_DIR[$name]=$dir
  # An overlay costs nothing; where the file system refuses one (an overlay already),
  # a copy does the same job in a few seconds.
  if ! mount -t overlay "e2e-$name" -o "lowerdir=$image,upperdir=$dir/upper,workdir=$dir/overlay-work" \
    "$dir/root" 2>/dev/null; then
    e2e_log "no overlay mount here; copying the $suite image"
    cp -a "$image/." "$dir/root/" || return 1
  fi
  started=$(e2e_now_ms)
  # --keep-unit: run in our own cgroup, no scope from a host systemd (there may be none).
  # --register=no: no machined needed. --private-network: a loopback of its own.
  SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=${SYSTEMD_NSPAWN_UNIFIED_HIERARCHY:-1} \
    setsid systemd-nspawn --quiet -D "$dir/root" -M "e2e-$name-$$" -b \
    --register=no --keep-unit --private-network --console=pipe \
    </dev/null >"$dir/console.log" 2>&1 &
  E2E_NSPAWN_PID[$name]=$!
  echo "${E2E_NSPAWN_PID[$name]}" >"$dir/nspawn.pid"
  local deadline=$(( $(date +%s) + E2E_BOOT_TIMEOUT )) init="" state=""
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if ! kill -0 "${E2E_NSPAWN_PID[$name]}" 2>/dev/null; then
      e2e_log "systemd-nspawn for $name exited during boot; its console:"
      tail -n 40 "$dir/console.log" >&2
      return 1
    fi
    if [ -z "$init" ]; then
      init=$(_e2e_container_init "${E2E_NSPAWN_PID[$name]}")
      [ -n "$init" ] && E2E_INIT_PID[$name]=$init
    fi
    if [ -n "$init" ]; then
      state=$(e2e_exec "$name" systemctl is-system-running 2>/dev/null) || true
      case $state in
        running | degraded)
          e2e_log "$name ($suite) booted in $(( $(e2e_now_ms) - started )) ms, $state"
          [ "$state" = degraded ] && e2e_exec "$name" systemctl --failed --no-legend >&2
          return 0
          ;;
      esac
    fi
    sleep 0.2
  done
  e2e_log "$name did not boot within ${E2E_BOOT_TIMEOUT}s (state: ${state:-none}); its console:"
  tail -n 40 "$dir/console.log" >&2
  return 1
}

# Work directories of earlier runs whose shell is gone (killed before its EXIT trap ran):
# their overlays are unmounted and their files removed, unless their systemd-nspawn
# still runs (then they are left alone: not ours to stop).
_e2e_remove_stale_work() {
  local dir owner nspawn root
  for dir in /var/tmp/steward-e2e.*.*; do
    [ -d "$dir" ] || continue
    owner=${dir#/var/tmp/steward-e2e.}
    owner=${owner%%.*}
    kill -0 "$owner" 2>/dev/null && continue
    for nspawn in "$dir"/*/nspawn.pid; do
      [ -f "$nspawn" ] || continue
      [ "$(cat "/proc/$(cat "$nspawn")/comm" 2>/dev/null)" = systemd-nspawn ] && continue 2
    done
    for root in "$dir"/*/root; do
      mountpoint -q "$root" && umount -l "$root"
    done
    e2e_log "removing $dir, left by an earlier run"
    rm -rf "$dir"
  done
}

# The container's pid 1 as seen from the host: the child of systemd-nspawn that runs in
# a pid namespace other than ours.
_e2e_container_init() {
  local nspawn=$1 child
  for child in $(ps -o pid= --ppid "$nspawn" 2>/dev/null); do
    if [ "$(readlink "/proc/$child/ns/pid")" != "$(readlink /proc/self/ns/pid)" ] &&
      [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ]; then
      echo "$child"
      return 0
    fi
  done
}

# e2e_exec NAME CMD...: runs CMD inside container NAME (all its namespaces, root, a clean
# environment); its status is CMD's.
e2e_exec() {
  local name=$1
  shift
  local init=${E2E_INIT_PID[$name]:?container $name is not booted}
  nsenter -t "$init" -m -u -i -n -p -C -r -w \
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}

# e2e_sh NAME SCRIPT: runs a bash script inside container NAME.
e2e_sh() {
  local name=$1
  shift
  e2e_exec "$name" bash -c "$1"
}

# Prints the host path of container NAME's root directory (writes show up inside).
e2e_root() { printf '%s\n' "${E2E_DIR[$1]:?container $1 is not booted}/root"; }

# Prints the host path of container NAME's scratch directory (console.log lives there).
e2e_dir() { printf '%s\n' "${E2E_DIR[$1]:?container $1 is not booted}"; }

# e2e_install NAME SRC DEST [MODE]: copies a host file into container NAME.
e2e_install() {
  local name=$1 src=$2 dest=$3 mode=${4:-}
  local root
  root=$(e2e_root "$name") || return 1
  if [ -n "$mode" ]; then
    install -D -m "$mode" "$src" "$root$dest"
  else
    install -D "$src" "$root$dest"
  fi
}

# e2e_write NAME DEST: writes stdin to file DEST in container NAME.
e2e_write() {
  local root
  root=$(e2e_root "$1") || return 1
  mkdir -p "$(dirname "$root$2")"
  cat >"$root$2"
}

# e2e_stop NAME: powers container NAME off (SIGKILL after 30 s), unmounts and removes
# everything it left on the host.
e2e_stop() {
  local name=$1
  local pid=${E2E_NSPAWN_PID[$name]:-} dir=${E2E_DIR[$name]:-}
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    # SIGTERM makes systemd-nspawn ask the container's systemd for a clean poweroff.
    kill -TERM "$pid" 2>/dev/null
    local deadline=$(( $(date +%s) + 30 ))
    while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      e2e_log "$name did not power off in 30 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null
      [ -n "${E2E_INIT_PID[$name]:-}" ] && kill -KILL "${E2E_INIT_PID[$name]}" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
  fi
  if [ -n "$dir" ]; then
    mountpoint -q "$dir/root" && umount "$dir/root"
    mountpoint -q "$dir/root" && umount -l "$dir/root"
    rm -rf "$dir"
  fi
  unset "E2E_NSPAWN_PID[$name]" "E2E_INIT_PID[$name]" "E2E_DIR[$name]"
}

# Stops every container this shell booted and removes its work directory (EXIT trap).
e2e_cleanup() {
  local name
  for name in "${!E2E_DIR[@]}"; do e2e_stop "$name"; done
  [ -n "$E2E_WORK" ] && rm -rf "$E2E_WORK"
  E2E_WORK=""
  if [ -n "$E2E_CALLER_EXIT_TRAP" ]; then
    local caller=$E2E_CALLER_EXIT_TRAP
    E2E_CALLER_EXIT_TRAP=""
    eval "$caller"
  fi
}

# check NAME CMD...: runs CMD, counts a pass or a failure, and on a failure prints CMD's
# output and, if the script defines it, what `e2e_failure_context` prints. Lines of the
# output that start with "note: " (measurements) are printed on a pass too.
check() {
  local name=$1
  shift
  local out started elapsed status
  out=$(mktemp)
  started=$(e2e_now_ms)
  "$@" >"$out" 2>&1
  status=$?
  elapsed=$(( $(e2e_now_ms) - started ))
  if [ "$status" -eq 0 ]; then
    E2E_PASSED=$((E2E_PASSED + 1))
    printf 'PASS %s (%d ms)\n' "$name" "$elapsed"
    sed -n 's/^note: /  /p' "$out"
  else
    E2E_FAILED=$((E2E_FAILED + 1))
    E2E_FAILED_NAMES+=("$name")
    printf 'FAIL %s (%d ms, exit status %d)\n' "$name" "$elapsed" "$status"
    printf '  command: %s\n' "$*"
    sed -n '1,60p' "$out" | sed 's/^/  | /'
    [ "$(wc -l <"$out")" -gt 60 ] && printf '  | ... (%d lines)\n' "$(wc -l <"$out")"
    if declare -F e2e_failure_context >/dev/null; then
      e2e_failure_context 2>&1 | sed 's/^/  ctx: /'
    fi
  fi
  rm -f "$out"
  return "$status"
}

# e2e_wait_for TIMEOUT_S CMD...: runs CMD until it succeeds or TIMEOUT_S seconds pass.
e2e_wait_for() {
  local timeout=$1
  shift
  local deadline=$(( $(e2e_now_ms) + timeout * 1000 ))
  until "$@"; do
    [ "$(e2e_now_ms)" -ge "$deadline" ] && return 1
    sleep 0.1
  done
}

# Prints the summary line and returns 1 if any check failed.
e2e_summary() {
  if [ "$E2E_FAILED" -gt 0 ]; then
    printf 'failed: %s\n' "${E2E_FAILED_NAMES[@]}"
  fi
  printf '%d passed, %d failed\n' "$E2E_PASSED" "$E2E_FAILED"
  [ "$E2E_FAILED" -eq 0 ]
}
