#!/bin/sh
# usage: trace_guest.sh ELF OUT.txt  -- runs the guest with -d in_asm,exec,nochain into a fifo and profiles it
set -e
ELF=$1; OUT=$2
FIFO=$(mktemp -u /tmp/tls-trace.XXXXXX); mkfifo "$FIFO"
LABELS="sha256_1k x509_parse_476B pk_parse_ec_p256 ecdsa_p256_verify_cert ecdsa_p256_verify_ske ecdh_p256_gen_public ecdh_p256_compute_shared pk_parse_rsa2048 rsa2048_verify_fresh rsa2048_verify_warm"
python3 "$(dirname "$0")/profile_tls.py" "$FIFO" "$ELF" $LABELS > "$OUT" &
PY=$!
"$(dirname "$0")/run_guest.sh" "$ELF" -d in_asm,exec,nochain -D "$FIFO" > "$OUT.guest" 2>&1
wait $PY
rm -f "$FIFO"
