/* Stub for the benchmark: mbedtls_config_common.h includes py/mpconfig.h only to read
   MICROPY_PY_SSL_DTLS. rp2 (ROM level EXTRA_FEATURES) has it enabled. */
#define MICROPY_PY_SSL_DTLS (1)
