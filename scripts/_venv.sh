# Sourced by scripts/demo and scripts/test: make .venv with sendq installed.
#
# The first run takes about a minute (most of it downloading and installing
# the dependencies), so each step is announced and timed, and on a terminal the
# seconds tick while pip works. The demo needs only sendq itself; the test
# tools (the providers' SDKs, pytest, ruff, mypy) are added when scripts/test
# first runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "sendq needs Python 3.11 or newer ($PY is $("$PY" --version 2>&1))" >&2; exit 2; }

# setuptools reminds every editable install of a flat layout that a folder named
# like the package (worker/, here the package itself) shadows it on imports
# from the project root. That is what an editable install is for, and its ten
# lines of asterisks read like an error, so that one reminder is filtered (pip
# re-raises the build backend's warnings in its own process). Any other
# warning still shows.
PIP=(.venv/bin/python -W "ignore:Editable installation:UserWarning" -m pip)

_venv_started=$SECONDS

# Runs "$@" (pip --quiet: only its warnings and errors) with its output held
# back until it ends, so that on a terminal the elapsed seconds can tick on
# one line meanwhile without being torn by it.
_venv_quietly() {
  local log started=$SECONDS pid status=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 &
  pid=$!
  if [ -t 2 ]; then
    while kill -0 "$pid" 2>/dev/null; do
      printf '\r  ... %ds' $((SECONDS - started)) >&2
      sleep 1
    done
    printf '\r\033[K' >&2
  fi
  wait "$pid" || status=$?
  cat "$log" >&2
  rm -f "$log"
  if [ "$status" -ne 0 ]; then
    echo "setting up .venv failed (exit $status): $*" >&2
  fi
  return "$status"
}

_venv_step() {  # _venv_step N TOTAL "what" command...
  local n=$1 total=$2 what=$3 started=$SECONDS
  shift 3
  printf '[%s/%s] %s\n' "$n" "$total" "$what" >&2
  _venv_quietly "$@" || return $?
  printf '      done in %ds\n' $((SECONDS - started)) >&2
}

# What this caller needs, and the stamp that says it is installed.
case "$(basename "$0")" in
  demo) extras="" stamp=.venv/.sendq-installed-runtime ;;
  *) extras="[test]" stamp=.venv/.sendq-installed ;;
esac
if [ -f .venv/.sendq-installed ] && [ ! pyproject.toml -nt .venv/.sendq-installed ]; then
  stamp=.venv/.sendq-installed  # the full install covers the demo too
fi

if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  if [ -x .venv/bin/python ]; then
    echo "updating .venv (pyproject.toml changed, or the test tools are missing)..." >&2
    total=1
  else
    echo "setting up .venv (first run only, about a minute)..." >&2
    total=3
    _venv_step 1 3 "creating .venv" "$PY" -m venv .venv
    _venv_step 2 3 "updating pip" "${PIP[@]}" install --quiet --upgrade pip
  fi
  if [ -n "$extras" ]; then
    what="installing sendq, its dependencies and the test tools (providers' SDKs, pytest, ruff, mypy)"
  else
    what="installing sendq and its dependencies"
  fi
  _venv_step "$total" "$total" "$what" "${PIP[@]}" install --quiet -e ".$extras"
  touch "$stamp"
  echo ".venv ready in $((SECONDS - _venv_started))s" >&2
fi
unset -f _venv_quietly _venv_step
