#!/usr/bin/env bash
# Encrypt and decrypt the same file (1 GiB by default) with `s32s3 crypt` (release build) and with rclone
# (crypt remote over a local directory: `rclone rcat` to encrypt, `rclone cat` to decrypt), on one core
# (`taskset -c 0`) and on all cores, in one run on this machine. Prints wall times, throughput and the
# s32s3/rclone ratios. Both write their output to the same place (tmpfs when available), and every
# output is checked against the plaintext.
#
#   benches/crypt-vs-rclone.sh                 # 1 GiB, one core and all cores
#   SIZE_MIB=256 MODES=all benches/crypt-vs-rclone.sh
#
# Environment: SIZE_MIB (default 1024), MODES ("one all", default both), REPEAT (runs per measurement,
# the fastest counts; default 3), WORK (scratch directory, default /dev/shm/s32s3-crypt-bench or a
# temporary directory), CARGO_TARGET_DIR (as for cargo).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MIB=${SIZE_MIB:-1024}
MODES=${MODES:-one all}
REPEAT=${REPEAT:-3}
if [[ -z "${WORK:-}" ]]; then
    if [[ -d /dev/shm && -w /dev/shm ]]; then WORK=/dev/shm/s32s3-crypt-bench; else WORK=$(mktemp -d); fi
fi
command -v rclone >/dev/null || { echo "rclone not found: run scripts/setup" >&2; exit 1; }
command -v taskset >/dev/null || { echo "taskset not found (util-linux)" >&2; exit 1; }

echo "building s32s3 (release)..." >&2
cargo build --release --quiet -p s32s3-cli
BIN="${CARGO_TARGET_DIR:-target}/release/s32s3"

rm -rf "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
unset AWS_CA_BUNDLE
export RCLONE_CONFIG="$WORK/rclone.conf"
export S32S3_CRYPT_PASSWORD="benchmark password" S32S3_CRYPT_PASSWORD2="benchmark salt"
cat >"$RCLONE_CONFIG" <<CONF
[bench]
type = crypt
remote = $WORK/rclone-raw
password = $("$BIN" obscure "$S32S3_CRYPT_PASSWORD")
password2 = $("$BIN" obscure "$S32S3_CRYPT_PASSWORD2")
CONF

PLAIN="$WORK/plain.bin"
echo "creating a ${SIZE_MIB} MiB file of random bytes in $WORK..." >&2
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$PLAIN"

# seconds CMD... : runs CMD, prints its wall time in seconds.
seconds() {
    local start end
    start=$(date +%s%N)
    "$@"
    end=$(date +%s%N)
    awk -v ns="$((end - start))" 'BEGIN { printf "%.3f", ns / 1e9 }'
}

# best CMD... : the fastest of REPEAT runs of CMD (other processes on the machine add noise, never speed).
best() {
    local t min=""
    for _ in $(seq "$REPEAT"); do
        t=$(seconds "$@")
        min=$(awk -v a="$t" -v b="${min:-$t}" 'BEGIN { print (a < b ? a : b) }')
    done
    echo "$min"
}

mibs() { awk -v mib="$SIZE_MIB" -v s="$1" 'BEGIN { printf "%.0f", mib / s }'; }
ratio() { awk -v ours="$1" -v theirs="$2" 'BEGIN { printf "%.2f", theirs / ours }'; }

printf '\nrclone %s, s32s3 %s, %s MiB, %s CPUs, best of %s runs, load average before: %s\n' \
    "$(rclone version | head -1 | awk '{print $2}')" "$("$BIN" --version | awk '{print $2}')" \
    "$SIZE_MIB" "$(nproc)" "$REPEAT" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %-8s %12s %12s %12s %12s %8s\n' mode op "s32s3 s" "s32s3 MiB/s" "rclone s" "rclone MiB/s" ratio

for mode in $MODES; do
    case $mode in
        one) pin=(taskset -c 0) ;;
        all) pin=() ;;
        *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
    rm -rf "$WORK/rclone-raw" "$WORK"/*.enc "$WORK"/*.out
    sync
    s_enc=$(best "${pin[@]}" "$BIN" crypt encrypt -i "$PLAIN" -o "$WORK/s32s3.enc")
    r_enc=$(best "${pin[@]}" sh -c 'rclone rcat bench:file.bin <"$1" 2>/dev/null' _ "$PLAIN")
    s_dec=$(best "${pin[@]}" "$BIN" crypt decrypt -i "$WORK/s32s3.enc" -o "$WORK/s32s3.out")
    r_dec=$(best "${pin[@]}" sh -c 'rclone cat bench:file.bin >"$1"' _ "$WORK/rclone.out")
    cmp -s "$PLAIN" "$WORK/s32s3.out" || { echo "s32s3 round trip differs" >&2; exit 1; }
    cmp -s "$PLAIN" "$WORK/rclone.out" || { echo "rclone round trip differs" >&2; exit 1; }
    label=$([[ $mode == one ]] && echo one-core || echo all-cores)
    printf '%-10s %-8s %12s %12s %12s %12s %7sx\n' "$label" encrypt "$s_enc" "$(mibs "$s_enc")" "$r_enc" \
        "$(mibs "$r_enc")" "$(ratio "$s_enc" "$r_enc")"
    printf '%-10s %-8s %12s %12s %12s %12s %7sx\n' "$label" decrypt "$s_dec" "$(mibs "$s_dec")" "$r_dec" \
        "$(mibs "$r_dec")" "$(ratio "$s_dec" "$r_dec")"
done
echo "(ratio = s32s3 throughput / rclone throughput; > 1 means s32s3 is faster; load average after: $(cut -d' ' -f1-3 /proc/loadavg))"
