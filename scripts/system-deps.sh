#!/usr/bin/env bash
# Debian packages the full pipeline and test suite use (run by `make setup`). Idempotent; needs root.
#   dataset-fashion-mnist   the image preset's dataset (/usr/share/datasets/fashion-mnist)
#   chromium                the headless browser the report tests open results/report.html in (tests/report/browser.py)
set -euo pipefail
PACKAGES=(dataset-fashion-mnist chromium)
missing=()
for package in "${PACKAGES[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "note: missing Debian packages: ${missing[*]} (the image preset and the browser tests need them)." >&2
    echo "      install them with: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 0
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
