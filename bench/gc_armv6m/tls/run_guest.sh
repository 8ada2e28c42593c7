#!/bin/sh
# usage: run_guest.sh ELF [extra qemu args]   (1 ns virtual time per guest instruction)
ELF=$1; shift
exec qemu-system-arm -machine mps2-an385 -nographic -monitor null -serial null \
     -semihosting-config enable=on,target=native -icount shift=0 "$@" -kernel "$ELF"
