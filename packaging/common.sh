# shellcheck shell=bash
# Shared by packaging/build-deb and packaging/build-rpm: the release binaries and the
# files generated from them, in packaging/generated/.

PACKAGING_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$PACKAGING_DIR")
GENERATED_DIR=$PACKAGING_DIR/generated

pkg_log() { printf '[packaging] %s\n' "$*" >&2; }

# The version the packages get: STEWARD_PKG_VERSION, else the workspace's.
pkg_version() {
  if [ -n "${STEWARD_PKG_VERSION:-}" ]; then
    printf '%s\n' "$STEWARD_PKG_VERSION"
  else
    sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO_DIR/Cargo.toml" | head -n 1
  fi
}

# Installs the Debian packages named in "$@" that are missing.
pkg_apt_install() {
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  pkg_log "installing ${missing[*]} (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Where the packages go: target/packages, or target/packages/pre-253 for packages made
# with STEWARD_PKG_SYSTEMD=pre-253 (same name and version, another unit).
pkg_out_dir() {
  printf '%s/packages%s\n' "$(pkg_target_dir)" "${STEWARD_PKG_SYSTEMD:+/$STEWARD_PKG_SYSTEMD}"
}

# The target directory cargo builds into.
pkg_target_dir() {
  cargo metadata --format-version 1 --no-deps --manifest-path "$REPO_DIR/Cargo.toml" |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}

# Builds steward and steward-demo in release mode, then writes the man pages and the
# shell completions with `steward generate` into packaging/generated/. Sets
# PKG_STEWARD_BIN and PKG_DEMO_BIN to the binaries.
pkg_build() {
  local target steward
  for unit in steward@.service steward@.socket steward-emperor.service hardening.conf \
    pre-253/steward@.service pre-253/steward-emperor.service; do
    [ -f "$REPO_DIR/systemd/$unit" ] || { pkg_log "missing systemd/$unit"; return 1; }
  done
  local units=$REPO_DIR/systemd
  case ${STEWARD_PKG_SYSTEMD:-} in
  "") ;;
  pre-253) units=$REPO_DIR/systemd/pre-253 ;;
  *)
    pkg_log "STEWARD_PKG_SYSTEMD=${STEWARD_PKG_SYSTEMD}: expected pre-253 or nothing"
    return 1
    ;;
  esac
  pkg_log "cargo build --release (steward, steward-demo)"
  cargo build --release --locked --manifest-path "$REPO_DIR/Cargo.toml" -p steward -p steward-demo
  target=$(pkg_target_dir)
  steward=$target/release/steward
  rm -rf "$GENERATED_DIR"
  mkdir -p "$GENERATED_DIR/man" "$GENERATED_DIR/completions" "$GENERATED_DIR/units"
  # The units the package installs: Type=notify-reload (systemd >= 253), or with
  # STEWARD_PKG_SYSTEMD=pre-253 the Type=notify variant for older systemd (Debian 12).
  cp "$units/steward@.service" "$units/steward-emperor.service" "$REPO_DIR/systemd/steward@.socket" \
    "$GENERATED_DIR/units/"
  "$steward" generate man "$GENERATED_DIR/man"
  local shell
  for shell in bash zsh fish; do
    "$steward" generate "$shell" "$GENERATED_DIR/completions"
  done
  # shellcheck disable=SC2034 # read by the scripts that source this file
  PKG_STEWARD_BIN=$steward
  # shellcheck disable=SC2034
  PKG_DEMO_BIN=$target/release/steward-demo
}
