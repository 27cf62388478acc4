#!/usr/bin/env bash
# `make acceptance INVENTORY=... HOST=...`: the hardware acceptance of one Pi from a checkout.
# playbooks/acceptance.yml does everything that runs on the host and ships in the collection; the
# steps that need this checkout run here around it:
#   1. the testinfra suite (tests/infra) against the host; its result goes into the verdict
#      (acceptance_testinfra_rc and _summary);
#   2. the playbook (ACCEPTANCE_PLAYBOOK: the checkout's, or an installed collection's), keeping
#      the report, the device's HailoRT record and the release's manifest in build/acceptance;
#   3. when the device answered, its HailoRT record compared with the lab's stand-in
#      (lab/scripts/fidelity.py: where the lab's HailoRT differs from the device, one line each).
# Exit status: the playbook's (the verdict). Arguments after HOST go to ansible-playbook.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 1
INVENTORY="${1:?usage: $0 INVENTORY HOST [ansible-playbook args]}"
HOST="${2:?usage: $0 INVENTORY HOST [ansible-playbook args]}"
shift 2
PLAYBOOK="${ACCEPTANCE_PLAYBOOK:-playbooks/acceptance.yml}"
OUT="$ROOT/build/acceptance"
mkdir -p "$OUT"
rm -f "$OUT/$HOST"{,-fidelity,-manifest}.json

python -m pytest tests/infra -q -p no:cacheprovider -rfE --tb=line --ansible-inventory="$INVENTORY" \
  --hosts="ansible://$HOST" | tee "$OUT/$HOST-testinfra.txt"
infra_rc="${PIPESTATUS[0]}"
# As JSON: the summary has spaces (-e KEY=VALUE would keep its first word).
extra="$(python -c 'import json, sys; print(json.dumps({"acceptance_report_dir": sys.argv[1],
  "acceptance_testinfra_rc": int(sys.argv[2]), "acceptance_testinfra_summary": sys.argv[3]}))' \
  "$OUT" "$infra_rc" "$(tail -n 1 "$OUT/$HOST-testinfra.txt")")"
ansible-playbook "$PLAYBOOK" -i "$INVENTORY" -l "$HOST" -e "$extra" "$@"
rc=$?
if [ -f "$OUT/$HOST-fidelity.json" ]; then
  echo "stand-in fidelity (the device against the lab's HailoRT stand-in):"
  python lab/scripts/fidelity.py "$OUT/$HOST-fidelity.json" "$OUT/$HOST-manifest.json" | sed 's/^/  /'
fi
exit "$rc"
