// Single-core stub thread port modelled on ports/rp2/mpthreadport.h (same inline structure,
// external calls where rp2 calls pico-sdk mutex functions).
#ifndef GCQ_MPTHREADPORT_H
#define GCQ_MPTHREADPORT_H
typedef struct { volatile int owner; } mp_thread_mutex_t;
typedef struct { volatile int owner; volatile int count; } mp_thread_recursive_mutex_t;
struct _mp_state_thread_t;
extern struct _mp_state_thread_t *core_state[2];
extern volatile unsigned stub_core_num;
void stub_mutex_init(void *m);
void stub_mutex_enter(void *m);
int stub_mutex_try(void *m);
void stub_mutex_exit(void *m);
void mp_thread_init(void);
void mp_thread_deinit(void);
void mp_thread_gc_others(void);
static inline void mp_thread_set_state(struct _mp_state_thread_t *state) { core_state[stub_core_num] = state; }
static inline struct _mp_state_thread_t *mp_thread_get_state(void) { return core_state[stub_core_num]; }
static inline void mp_thread_mutex_init(mp_thread_mutex_t *m) { stub_mutex_init(m); }
static inline int mp_thread_mutex_lock(mp_thread_mutex_t *m, int wait) {
    if (wait) { stub_mutex_enter(m); return 1; } else { return stub_mutex_try(m); }
}
static inline void mp_thread_mutex_unlock(mp_thread_mutex_t *m) { stub_mutex_exit(m); }
static inline void mp_thread_recursive_mutex_init(mp_thread_recursive_mutex_t *m) { stub_mutex_init(m); }
static inline int mp_thread_recursive_mutex_lock(mp_thread_recursive_mutex_t *m, int wait) {
    if (wait) { stub_mutex_enter(m); return 1; } else { return stub_mutex_try(m); }
}
static inline void mp_thread_recursive_mutex_unlock(mp_thread_recursive_mutex_t *m) { stub_mutex_exit(m); }
#endif
