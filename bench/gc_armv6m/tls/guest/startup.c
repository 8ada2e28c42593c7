/* Minimal bare-metal startup for qemu mps2-an385 (code runs as Cortex-M0+ Thumb-1). */
#include <stdint.h>
#include <stddef.h>
#include <errno.h>
extern uint32_t _estack, _sidata, _sdata, _edata, _sbss, _ebss, _end_heap_start;
int main(int, char **);

static int semihost(int op, void *arg) {
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
void semihost_write0(const char *s) { semihost(0x04, (void *)s); }
void semihost_exit(int code) {
    (void)code;
    semihost(0x18, (void *)0x20026);   /* ADP_Stopped_ApplicationExit */
    for (;;) {}
}
static void put_hex(uint32_t v) {
    char b[12] = "0x00000000\n"; for (int i = 0; i < 8; i++) b[9 - i] = "0123456789abcdef"[(v >> (4 * i)) & 15];
    semihost_write0(b);
}
void hardfault_handler(void) {
    uint32_t *sp; __asm__ volatile("mrs %0, msp" : "=r"(sp));
    semihost_write0("HardFault, pc="); put_hex(sp[6]); semihost_exit(1);
}
void default_handler(void) { semihost_write0("unexpected exception\n"); semihost_exit(1); }

void reset_handler(void) {
    uint32_t *s = &_sidata, *d = &_sdata;
    while (d < &_edata) *d++ = *s++;
    for (d = &_sbss; d < &_ebss; d++) *d = 0;
    char *argv[] = { "tlsbench", NULL };
    main(1, argv);
    semihost_exit(0);
}

__attribute__((section(".isr_vector"), used)) const void *const vectors[16] = {
    &_estack, reset_handler, default_handler, hardfault_handler,
    default_handler, default_handler, default_handler, 0, 0, 0, 0,
    default_handler, default_handler, 0, default_handler, default_handler,
};

/* heap for newlib malloc */
static char *heap_ptr;
extern char _heap_start, _heap_end;
void *_sbrk(ptrdiff_t incr) {
    if (!heap_ptr) heap_ptr = &_heap_start;
    if (heap_ptr + incr > &_heap_end) { errno = ENOMEM; return (void *)-1; }
    char *p = heap_ptr; heap_ptr += incr; return p;
}
