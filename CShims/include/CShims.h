// CShims: the thin C layer under Granary. It exposes liburing, libnuma and a few Linux
// facilities to Swift. liburing's `static inline` functions (io_uring_get_sqe,
// io_uring_prep_*, io_uring_peek_cqe, ...) import into Swift as they are and are called
// directly; this header only adds what Swift cannot import: flag macros built from other
// macros, glibc constants that need _GNU_SOURCE, CPU_SET, thread-locals, and CRC32C.
// No logic and no allocation policy live here.
#ifndef GRANARY_CSHIMS_H
#define GRANARY_CSHIMS_H

// System headers first, under the default feature macros, so that their types match
// Swift's Glibc module: liburing.h defines _XOPEN_SOURCE and _GNU_SOURCE for itself,
// which would otherwise give this module a different `fd_set` than Glibc's.
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <sys/vfs.h>
#include <signal.h>
#include <fcntl.h>
#include <time.h>
#include <sched.h>
#include <netinet/in.h>
// The kernel's own io_uring header, before liburing's bundled copy of it (both use the
// guard LINUX_IO_URING_H, so only the first counts). swift-system's CSystem module
// includes the kernel's; a program that imports both modules then sees one definition of
// `struct io_uring_sqe`, not two that Clang refuses to merge.
#include <linux/io_uring.h>

#include <liburing.h>
#include <numa.h>
#include <zlib.h>

// Submission flags (macros of the form (1U << BIT), which Swift does not import).
extern const uint8_t granary_IOSQE_IO_LINK;
extern const uint8_t granary_IOSQE_ASYNC;
extern const uint8_t granary_IOSQE_FIXED_FILE;
extern const uint32_t granary_IORING_FSYNC_DATASYNC;
extern const uint32_t granary_IORING_CQE_F_MORE;
extern const uint32_t granary_IORING_SETUP_SINGLE_ISSUER;
extern const uint32_t granary_IORING_SETUP_COOP_TASKRUN;
extern const uint32_t granary_IORING_SETUP_DEFER_TASKRUN;
extern const uint32_t granary_IORING_SETUP_TASKRUN_FLAG;
// Set in the submission ring's flags when completions wait for the task to enter the kernel.
extern const uint32_t granary_IORING_SQ_TASKRUN;
extern const uint32_t granary_IORING_SQ_CQ_OVERFLOW;

// open(2) flags that glibc only defines under _GNU_SOURCE.
extern const int granary_O_DIRECT;
extern const int granary_O_CLOEXEC;

// Filesystem magic numbers (statfs f_type) for filesystems that refuse O_DIRECT.
extern const long granary_TMPFS_MAGIC;

// Pins the calling thread to one CPU. Returns 0 or an errno value.
int granary_pin_current_thread(int cpu);

// Writes the CPUs in this process's affinity mask to `cpus` (at most `capacity`);
// returns how many, or -errno.
int granary_available_cpus(int *cpus, int capacity);

// The Linux thread id of the calling thread (gettid).
int granary_gettid(void);

// A per-thread pointer: the reactor that owns the calling thread, or NULL.
void *granary_current_reactor(void);
void granary_set_current_reactor(void *reactor);

// Opcode support from a probe (io_uring_opcode_supported is static inline over a struct
// with a flexible array member, which Swift imports poorly).
int granary_probe_supports(const struct io_uring_probe *probe, int opcode);

// CRC32C (Castagnoli), the checksum of every on-disk structure. Standard form: initial
// value 0, the usual pre- and post-inversion handled inside, so that
// granary_crc32c(0, "123456789", 9) == 0xE3069283. `crc` chains calls over pieces.
// Backed by Intel ISA-L (crc32_iscsi); see BENCHMARKS.md for why.
uint32_t granary_crc32c(uint32_t crc, const void *data, size_t length);
// The same checksum with the SSE4.2 crc32 instruction, one 8-byte word at a time. Kept
// for the benchmark that chose between the two.
uint32_t granary_crc32c_sse42(uint32_t crc, const void *data, size_t length);

// CRC32 (IEEE 802.3, reflected: zlib's and gzip's crc32), with ISA-L's crc32_gzip_refl,
// about ten times faster than zlib's crc32 on a 1 KB body (BENCHMARKS.md, "CRC32C").
// Same form as zlib: granary_crc32(0, "123456789", 9) == 0xCBF43926; `crc` chains calls.
uint32_t granary_crc32(uint32_t crc, const void *data, size_t length);

// zlib: inflateInit2 is a macro over inflateInit2_ with the library's version and struct
// size. windowBits: 15 + 32 detects gzip or zlib (deflate) headers. Returns zlib's code.
int granary_inflate_init(z_stream *stream, int windowBits);
// deflateInit2, a macro for the same reason. windowBits: 15 + 16 writes a gzip wrapper,
// 15 a zlib one (what HTTP's "deflate" means). Returns zlib's code.
int granary_deflate_init(z_stream *stream, int level, int windowBits);

#endif
