# MPS2-AN385 (Cortex-M3 machine in QEMU) but code compiled for ARMv6-M / Cortex-M0+ (RP2040 ISA)
QEMU_ARCH = arm
QEMU_MACHINE = mps2-an385

CFLAGS += -mthumb -mcpu=cortex-m0plus -mfloat-abi=soft
CFLAGS += -DQEMU_SOC_MPS2
CFLAGS += -DMICROPY_HW_MCU_NAME='"Cortex-M0+ code on M3, thread stubs"'

LDSCRIPT = mcu/arm/mps2.ld

SRC_BOARD_O = shared/runtime/gchelper_native.o shared/runtime/gchelper_thumb1.o

MPY_CROSS_FLAGS += -march=armv6m
# Enable MICROPY_PY_THREAD (no GIL) like rp2, with single-core stubs, so that py/gc.c is
# compiled with the same configuration as on rp2.
CFLAGS += -DMICROPY_PY_THREAD=1 -DMICROPY_PY_THREAD_GIL=0 -I$(BOARD_DIR)
SRC_C += $(BOARD_DIR)/threadstub.c
