#!/bin/sh
# verify-release DIR NAMESPACE REQUIRE_SIGNATURE ALLOWED_SIGNERS [REVOKED_KEYS [FILES_DIR]]: checks
# a release before it is used.
#   1. DIR/manifest.json.sig is an ssh-keygen -Y signature of DIR/manifest.json in NAMESPACE by a
#      key in ALLOWED_SIGNERS that is valid now and not in REVOKED_KEYS (when given and not empty);
#      REQUIRE_SIGNATURE=false accepts an unsigned release (never a wrongly signed one).
#   2. every file the manifest names (model.hef, model.onnx, golden.json) has the manifest's sha256,
#      in FILES_DIR (default DIR: the release folder already on the host when only the incoming
#      manifest and signature were staged).
# Prints what it checked; exits 1 naming the first problem. Reads only.
#
# verify-release --in-place FOLDER NAMESPACE REQUIRE_SIGNATURE: the same checks for a release whose
# folder is already on the host, in one run (the role's every run after the first): the incoming
# manifest and signature come base64-encoded in RELEASE_MANIFEST_B64 and RELEASE_SIGNATURE_B64 (empty:
# unsigned), the keys in RELEASE_ALLOWED_SIGNERS and RELEASE_REVOKED_KEYS; they are staged in a
# temporary folder of its own, removed on exit. FOLDER's files are checked against the incoming
# signed manifest, which must also be FOLDER's own manifest (a release folder never changes).
set -eu

if [ "${1:-}" = --in-place ]; then
  folder="$2"
  stage="$(mktemp -d)"
  trap 'rm -rf "$stage"' EXIT
  mkdir "$stage/release"
  printf '%s' "${RELEASE_MANIFEST_B64:?}" | base64 -d >"$stage/release/manifest.json"
  if [ -n "${RELEASE_SIGNATURE_B64:-}" ]; then
    printf '%s' "$RELEASE_SIGNATURE_B64" | base64 -d >"$stage/release/manifest.json.sig"
  fi
  : >"$stage/allowed_signers"
  : >"$stage/revoked_keys"
  [ -z "${RELEASE_ALLOWED_SIGNERS:-}" ] || printf '%s\n' "$RELEASE_ALLOWED_SIGNERS" >"$stage/allowed_signers"
  [ -z "${RELEASE_REVOKED_KEYS:-}" ] || printf '%s\n' "$RELEASE_REVOKED_KEYS" >"$stage/revoked_keys"
  sh "$0" "$stage/release" "$3" "$4" "$stage/allowed_signers" "$stage/revoked_keys" "$folder"
  if ! cmp -s "$stage/release/manifest.json" "$folder/manifest.json"; then
    echo "release $(basename "$folder"): $folder is in place with another manifest.json than this release's:" \
      "a release folder never changes. Give the new release a version of its own." >&2
    exit 1
  fi
  exit 0
fi

dir="$1" ns="$2" require="$3" allowed="$4" revoked_file="${5:-}" files_dir="${6:-$1}"
why="$(mktemp)"
trap 'rm -f "$why"' EXIT
fail() {
  echo "release $(basename "$dir"): $*" >&2
  exit 1
}
files_dir="$(cd "$files_dir" && pwd)" || fail "no folder $files_dir"
cd "$dir"
[ -f manifest.json ] || fail "no manifest.json"

if [ ! -f manifest.json.sig ]; then
  [ "$require" = false ] || fail "unsigned: no manifest.json.sig (sidecar_stack_require_signature is true)"
  echo "signature: none (unsigned release accepted: sidecar_stack_require_signature is false)"
else
  [ -s "$allowed" ] || fail "signed, but no allowed signers are configured (sidecar_stack_allowed_signers)"
  if ! principal="$(ssh-keygen -Y find-principals -s manifest.json.sig -f "$allowed" 2>"$why")"; then
    if grep -q "expired\|not yet valid" "$why"; then
      fail "signed by a key that is not valid now: $(grep -m1 'expired\|not yet valid' "$why")"
    fi
    fail "signed by a key that is not in the allowed signers (or the signature is damaged)"
  fi
  principal="$(echo "$principal" | head -n 1)"
  revoked=""
  if [ -n "$revoked_file" ] && [ -s "$revoked_file" ]; then revoked="-r $revoked_file"; fi
  # shellcheck disable=SC2086 # $revoked is an option and its file, or nothing
  if ! good="$(ssh-keygen -Y verify -f "$allowed" -I "$principal" -n "$ns" -s manifest.json.sig $revoked \
      <manifest.json 2>&1)"; then
    if [ -n "$revoked" ] && ssh-keygen -Y verify -f "$allowed" -I "$principal" -n "$ns" \
        -s manifest.json.sig <manifest.json >/dev/null 2>&1; then
      fail "signed by $principal with a revoked key (sidecar_stack_revoked_keys)"
    fi
    fail "the signature does not verify: manifest.json was changed after signing, or it was signed for another namespace than $ns"
  fi
  echo "signature: $good"
fi

python3 - "$PWD/manifest.json" "$files_dir" <<'PY'
import hashlib, json, os, sys
m = json.load(open(sys.argv[1]))
os.chdir(sys.argv[2])
files = {m.get("hef", "model.hef"): m.get("hef_sha256"), "model.onnx": m.get("onnx_sha256")}
gold = m.get("golden")
if isinstance(gold, dict):
    files[gold.get("file", "golden.json")] = gold.get("sha256")
for name, want in files.items():
    if not want:
        continue
    try:
        with open(name, "rb") as f:
            got = hashlib.file_digest(f, "sha256").hexdigest() if hasattr(hashlib, "file_digest") else hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        if name == "model.onnx":
            continue
        sys.exit(f"release: {name} is missing (the signed manifest names it)")
    if got != want:
        sys.exit(f"release: {name} has sha256 {got}, the signed manifest says {want}: changed after signing")
    print(f"file: {name} sha256 {got} (as signed)")
PY
