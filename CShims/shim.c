// See include/CShims.h. O_DIRECT, CPU_SET and pthread_setaffinity_np need _GNU_SOURCE
// before the first system header. It is defined here and not for the whole module, so
// that the header Swift imports sees the same feature macros as Swift's Glibc module.
#define _GNU_SOURCE 1

#include "CShims.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <nmmintrin.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <isa-l/crc.h>

const uint8_t granary_IOSQE_IO_LINK = IOSQE_IO_LINK;
const uint8_t granary_IOSQE_ASYNC = IOSQE_ASYNC;
const uint8_t granary_IOSQE_FIXED_FILE = IOSQE_FIXED_FILE;
const uint32_t granary_IORING_FSYNC_DATASYNC = IORING_FSYNC_DATASYNC;
const uint32_t granary_IORING_CQE_F_MORE = IORING_CQE_F_MORE;
const uint32_t granary_IORING_SETUP_SINGLE_ISSUER = IORING_SETUP_SINGLE_ISSUER;
const uint32_t granary_IORING_SETUP_COOP_TASKRUN = IORING_SETUP_COOP_TASKRUN;
const uint32_t granary_IORING_SETUP_DEFER_TASKRUN = IORING_SETUP_DEFER_TASKRUN;
const uint32_t granary_IORING_SETUP_TASKRUN_FLAG = IORING_SETUP_TASKRUN_FLAG;
const uint32_t granary_IORING_SQ_TASKRUN = IORING_SQ_TASKRUN;
const uint32_t granary_IORING_SQ_CQ_OVERFLOW = IORING_SQ_CQ_OVERFLOW;
const int granary_O_DIRECT = O_DIRECT;
const int granary_O_CLOEXEC = O_CLOEXEC;
const long granary_TMPFS_MAGIC = TMPFS_MAGIC;

// Swift reads these structures field by field through liburing's own header; the asserts
// catch a liburing whose layout differs from the kernel ABI this code was written against.
_Static_assert(sizeof(struct io_uring_sqe) == 64, "io_uring_sqe is 64 bytes");
_Static_assert(sizeof(struct io_uring_cqe) == 16, "io_uring_cqe is 16 bytes");
_Static_assert(sizeof(struct __kernel_timespec) == 16, "__kernel_timespec is 16 bytes");

int granary_pin_current_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

int granary_available_cpus(int *cpus, int capacity) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -errno;
    int count = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && count < capacity; cpu++) {
        if (CPU_ISSET(cpu, &set)) cpus[count++] = cpu;
    }
    return count;
}

int granary_gettid(void) { return (int)syscall(SYS_gettid); }

static _Thread_local void *current_reactor;
void *granary_current_reactor(void) { return current_reactor; }
void granary_set_current_reactor(void *reactor) { current_reactor = reactor; }

int granary_probe_supports(const struct io_uring_probe *probe, int opcode) {
    return io_uring_opcode_supported(probe, opcode);
}

uint32_t granary_crc32c(uint32_t crc, const void *data, size_t length) {
    // crc32_iscsi takes and returns the raw register: invert on the way in and out.
    return ~crc32_iscsi((unsigned char *)data, (int)length, ~crc);
}

uint32_t granary_crc32(uint32_t crc, const void *data, size_t length) {
    // Unlike crc32_iscsi, crc32_gzip_refl inverts on the way in and out itself.
    return crc32_gzip_refl(crc, (const unsigned char *)data, length);
}

__attribute__((target("sse4.2")))
uint32_t granary_crc32c_sse42(uint32_t crc, const void *data, size_t length) {
    const unsigned char *bytes = data;
    uint64_t state = ~crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, bytes, 8);
        state = _mm_crc32_u64(state, word);
        bytes += 8;
        length -= 8;
    }
    uint32_t state32 = (uint32_t)state;
    while (length > 0) {
        state32 = _mm_crc32_u8(state32, *bytes);
        bytes++;
        length--;
    }
    return ~state32;
}

int granary_inflate_init(z_stream *stream, int windowBits) {
    return inflateInit2(stream, windowBits);
}

int granary_deflate_init(z_stream *stream, int level, int windowBits) {
    return deflateInit2(stream, level, Z_DEFLATED, windowBits, 8, Z_DEFAULT_STRATEGY);
}
