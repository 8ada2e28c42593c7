/* TLS 1.2 client public-key crypto micro-benchmark, mbedTLS with MicroPython's rp2 config.
   Built for the qemu mps2-an385 guest (-DBENCH_GUEST, code for Cortex-M0+) and for the host.
   Guest: bench_begin()/bench_end() bracket each timed operation (the trace profiler keys on
   their addresses); the CMSDK timer (25 MHz, 40 ns = 40 instructions with -icount shift=0)
   gives an independent count. Host: median of many repetitions, clock_gettime. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>
#include "mbedtls/sha256.h"
#include "mbedtls/pk.h"
#include "mbedtls/ecdh.h"
#include "mbedtls/ecp.h"
#include "mbedtls/x509_crt.h"
#include "mbedtls/ctr_drbg.h"
#include "mbedtls/version.h"
#include "vectors.h"

/* ---- hooks the rp2 mbedtls config expects ---- */
static unsigned long n_calloc, n_free, calloc_bytes;   /* allocation statistics per op */
void *m_tracked_calloc(size_t nmemb, size_t size) { n_calloc++; calloc_bytes += nmemb * size; return calloc(nmemb, size); }
void m_tracked_free(void *ptr) { if (ptr) n_free++; free(ptr); }
time_t rp2_rtctime_seconds(time_t *timer) { time_t t = 1767225600; if (timer) *timer = t; return t; }
mbedtls_ms_time_t mbedtls_ms_time(void) { return 0; }
int mbedtls_hardware_poll(void *data, unsigned char *output, size_t len, size_t *olen) {
    (void)data; memset(output, 0x5a, len); *olen = len; return 0;
}

#ifdef BENCH_GUEST
void semihost_write0(const char *s);
void semihost_exit(int code);
#define PRINT(...) do { char b_[200]; snprintf(b_, sizeof b_, __VA_ARGS__); semihost_write0(b_); } while (0)
#define TIMER0_VALUE (*(volatile uint32_t *)0x40000004)
static inline uint32_t now_ticks(void) { return TIMER0_VALUE; }   /* counts DOWN at 25 MHz */
#else
#define PRINT(...) printf(__VA_ARGS__)
static inline uint64_t now_ns(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}
#endif

__attribute__((noinline)) void bench_begin(int id) { __asm__ volatile("" ::"r"(id) : "memory"); }
__attribute__((noinline)) void bench_end(int id) { __asm__ volatile("" ::"r"(id) : "memory"); }

/* ---- deterministic RNG: CTR_DRBG seeded from a fixed "entropy" source ---- */
static mbedtls_ctr_drbg_context drbg;
static int fixed_entropy(void *p, unsigned char *out, size_t len) {
    (void)p; for (size_t i = 0; i < len; i++) out[i] = (unsigned char)(i * 37 + 11); return 0;
}

/* ---- state shared by setup/run/teardown ---- */
static unsigned char buf1k[1024], out32[32];
static mbedtls_pk_context pk;
static mbedtls_x509_crt crt;
static mbedtls_ecp_group grp;
static mbedtls_mpi d, z;
static mbedtls_ecp_point Q, Qp;

static void nop(void) {}
static int run_sha256(void) { return mbedtls_sha256(buf1k, sizeof buf1k, out32, 0); }
static void setup_crt(void) { mbedtls_x509_crt_init(&crt); }
static int run_x509(void) { return mbedtls_x509_crt_parse_der(&crt, cert_der, sizeof cert_der); }
static void free_crt(void) { mbedtls_x509_crt_free(&crt); }
static void setup_pk_ca(void) { mbedtls_pk_init(&pk); if (mbedtls_pk_parse_public_key(&pk, ca_pub, sizeof ca_pub)) PRINT("parse ca_pub failed\n"); }
static void setup_pk_leaf(void) { mbedtls_pk_init(&pk); if (mbedtls_pk_parse_public_key(&pk, leaf_pub, sizeof leaf_pub)) PRINT("parse leaf_pub failed\n"); }
static void setup_pk_rsa(void) { mbedtls_pk_init(&pk); if (mbedtls_pk_parse_public_key(&pk, rsa_pub, sizeof rsa_pub)) PRINT("parse rsa_pub failed\n"); }
static void free_pk(void) { mbedtls_pk_free(&pk); }
static void setup_pk_init(void) { mbedtls_pk_init(&pk); }
static int run_pk_parse_ec(void) { return mbedtls_pk_parse_public_key(&pk, leaf_pub, sizeof leaf_pub); }
static int run_pk_parse_rsa(void) { return mbedtls_pk_parse_public_key(&pk, rsa_pub, sizeof rsa_pub); }
static int run_verify_cert(void) { return mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, cert_tbs_hash, 32, cert_sig, sizeof cert_sig); }
static int run_verify_ske(void) { return mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, ske_hash, 32, ske_sig, sizeof ske_sig); }
static int run_verify_rsa(void) { return mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, rsa_hash, 32, rsa_sig, sizeof rsa_sig); }
static void setup_rsa_warm(void) { setup_pk_rsa(); run_verify_rsa(); }   /* RN (R^2 mod N) already cached */
static void setup_ecdh(void) {
    mbedtls_ecp_group_init(&grp); mbedtls_mpi_init(&d); mbedtls_mpi_init(&z);
    mbedtls_ecp_point_init(&Q); mbedtls_ecp_point_init(&Qp);
    mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1);
    mbedtls_ecp_point_read_binary(&grp, &Qp, peer_pt, sizeof peer_pt);
}
static int run_ecdh_gen(void) { return mbedtls_ecdh_gen_public(&grp, &d, &Q, mbedtls_ctr_drbg_random, &drbg); }
static void setup_ecdh_shared(void) { setup_ecdh(); run_ecdh_gen(); }
static int run_ecdh_shared(void) { return mbedtls_ecdh_compute_shared(&grp, &z, &Qp, &d, mbedtls_ctr_drbg_random, &drbg); }
static void free_ecdh(void) {
    mbedtls_ecp_group_free(&grp); mbedtls_mpi_free(&d); mbedtls_mpi_free(&z);
    mbedtls_ecp_point_free(&Q); mbedtls_ecp_point_free(&Qp);
}

typedef struct { const char *name; void (*setup)(void); int (*run)(void); void (*teardown)(void); } op_t;
static const op_t ops[] = {
    { "sha256_1k",          nop,               run_sha256,       nop },
    { "x509_parse_476B",    setup_crt,         run_x509,         free_crt },
    { "pk_parse_ec_p256",   setup_pk_init,     run_pk_parse_ec,  free_pk },
    { "ecdsa_p256_verify_cert", setup_pk_ca,   run_verify_cert,  free_pk },
    { "ecdsa_p256_verify_ske",  setup_pk_leaf, run_verify_ske,   free_pk },
    { "ecdh_p256_gen_public",   setup_ecdh,    run_ecdh_gen,     free_ecdh },
    { "ecdh_p256_compute_shared", setup_ecdh_shared, run_ecdh_shared, free_ecdh },
    { "pk_parse_rsa2048",   setup_pk_init,     run_pk_parse_rsa, free_pk },
    { "rsa2048_verify_fresh", setup_pk_rsa,    run_verify_rsa,   free_pk },
    { "rsa2048_verify_warm",  setup_rsa_warm,  run_verify_rsa,   free_pk },
};
#define NOPS (int)(sizeof ops / sizeof ops[0])

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b; return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    for (int i = 0; i < (int)sizeof buf1k; i++) buf1k[i] = (unsigned char)i;
    mbedtls_ctr_drbg_init(&drbg);
    if (mbedtls_ctr_drbg_seed(&drbg, fixed_entropy, NULL, (const unsigned char *)"tlsbench", 8)) PRINT("drbg seed failed\n");
    PRINT("# %s, sizeof(mbedtls_mpi_uint)=%d, ECP_WINDOW_SIZE=%d, FIXED_POINT_OPTIM=%d, MPI_WINDOW_SIZE=%d, HAVE_ASM=%d, NIST_OPTIM=%d\n",
          MBEDTLS_VERSION_STRING_FULL, (int)sizeof(mbedtls_mpi_uint), MBEDTLS_ECP_WINDOW_SIZE, MBEDTLS_ECP_FIXED_POINT_OPTIM,
          MBEDTLS_MPI_WINDOW_SIZE,
#ifdef MBEDTLS_HAVE_ASM
          1,
#else
          0,
#endif
#ifdef MBEDTLS_ECP_NIST_OPTIM
          1
#else
          0
#endif
    );
#ifdef BENCH_GUEST
    (void)argc; (void)argv;
    /* CMSDK timer 0: free-running 32-bit down counter at 25 MHz */
    *(volatile uint32_t *)0x40000008 = 0xffffffffu;  /* RELOAD */
    *(volatile uint32_t *)0x40000004 = 0xffffffffu;  /* VALUE */
    *(volatile uint32_t *)0x40000000 = 1u;           /* CTRL: enable */
    PRINT("# op  ret  timer_ticks(40ns)  guest_insns(=ticks*40)  allocations inside the op\n");
    for (int i = 0; i < NOPS; i++) {
        ops[i].setup();
        n_calloc = n_free = calloc_bytes = 0;
        uint32_t t0 = now_ticks();
        bench_begin(i);
        int r = ops[i].run();
        bench_end(i);
        uint32_t t1 = now_ticks();
        unsigned long nc = n_calloc, nf = n_free, nb = calloc_bytes;
        ops[i].teardown();
        PRINT("%-26s %d %lu %lu  callocs %lu frees %lu bytes %lu\n", ops[i].name, r, (unsigned long)(t0 - t1), (unsigned long)(t0 - t1) * 40ul, nc, nf, nb);
    }
    semihost_exit(0);
    return 0;
#else
    int reps = argc > 1 ? atoi(argv[1]) : 101;
    uint64_t *t = malloc(sizeof(uint64_t) * reps);
    PRINT("# op  ret  median_us  min_us  reps\n");
    for (int i = 0; i < NOPS; i++) {
        int r = 0;
        for (int k = 0; k < reps; k++) {
            ops[i].setup();
            uint64_t t0 = now_ns();
            bench_begin(i);
            r |= ops[i].run();
            bench_end(i);
            t[k] = now_ns() - t0;
            ops[i].teardown();
        }
        qsort(t, reps, sizeof t[0], cmp_u64);
        PRINT("%-26s %d %.2f %.2f %d\n", ops[i].name, r, t[reps / 2] / 1000.0, t[0] / 1000.0, reps);
    }
    return 0;
#endif
}
