#include "py/runtime.h"
#include "py/mpthread.h"
#include "py/mperrno.h"
struct _mp_state_thread_t *core_state[2] = { &mp_state_ctx.thread, NULL };
volatile unsigned stub_core_num = 0;
__attribute__((noinline)) void stub_mutex_init(void *m) { ((volatile int *)m)[0] = 0; }
__attribute__((noinline)) void stub_mutex_enter(void *m) { ((volatile int *)m)[0] = 1; }
__attribute__((noinline)) int stub_mutex_try(void *m) { ((volatile int *)m)[0] = 1; return 1; }
__attribute__((noinline)) void stub_mutex_exit(void *m) { ((volatile int *)m)[0] = 0; }
void mp_thread_init(void) {}
void mp_thread_deinit(void) {}
void mp_thread_gc_others(void) {}
mp_uint_t mp_thread_get_id(void) { return 1; }
void mp_thread_start(void) {}
void mp_thread_finish(void) {}
mp_uint_t mp_thread_create(void *(*entry)(void *), void *arg, size_t *stack_size) {
    mp_raise_OSError(MP_EINVAL);
}
