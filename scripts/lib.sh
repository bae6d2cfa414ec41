# Shared by scripts/setup, scripts/test, scripts/serve-examples and scripts/check (sourced, not run).
# Everything runs in the project-local virtual environment .venv, never in the system interpreter.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
VENV_PYTHON="$VENV/bin/python"

say() { echo "inferd setup: $*" >&2; }
die() {
  say "$*"
  exit 1
}

# Put .venv first on PATH, as `source .venv/bin/activate` would, so `python`, `inferd`, `ruff` ... are
# the project's own.
use_venv() {
  [[ -x $VENV_PYTHON ]] || die "no virtual environment at $VENV: run scripts/setup"
  export VIRTUAL_ENV="$VENV"
  export PATH="$VENV/bin:$PATH"
  hash -r
}

# Installs the Debian packages among "$@" that are not installed (apt-get update only then), as root or
# through sudo.
apt_install_missing() {
  local package missing=()
  if ! command -v dpkg-query >/dev/null; then
    say "not a Debian system: make sure these are installed: $*"
    return 0
  fi
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
  ((${#missing[@]})) || return 0
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "needs the Debian packages ${missing[*]}: run as root or install sudo"
    sudo=(sudo)
  fi
  say "installing Debian packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
