# Sourced by scripts/serve and scripts/test: make .venv hold jobtail with the given extras.
# Reinstalls only when pyproject.toml changed since the last install.
set -euo pipefail
extras="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($python --version)" >&2
  "$python" -m venv .venv
fi
stamp=".venv/.jobtail-installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing jobtail${extras:+[$extras]} into .venv" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}" >&2
  touch "$stamp"
fi

# install_debian_package COMMAND PACKAGE: when COMMAND is missing, apt-get install PACKAGE if we
# are root with apt; fails (status 1) when COMMAND is still missing, for the caller to explain.
install_debian_package() {
  command -v "$1" >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing $2 (Debian package)" >&2
    apt-get install -y -q "$2" >&2 || { apt-get update -q >&2 && apt-get install -y -q "$2" >&2; }
  fi
  command -v "$1" >/dev/null
}
