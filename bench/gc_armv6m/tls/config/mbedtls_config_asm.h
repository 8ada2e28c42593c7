/* rp2 configuration plus MBEDTLS_HAVE_ASM (variant, NOT what the rp2 port builds). */
#include "mbedtls_config_port.h"
#define MBEDTLS_HAVE_ASM
