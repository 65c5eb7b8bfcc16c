import CShims
import Glibc

/// Whether this process can use io_uring, and if not, why and how to fix it.
///
/// Granary does all its I/O through io_uring, so a kernel or sandbox that refuses it is a
/// reason to stop at start-up with a message that names the cause and the fix: never a
/// crash or a hang later.
public enum IOUringSupport {
    /// The opcodes the reactor uses. A kernel without one of them is refused at start-up.
    public static let requiredOpcodes: [(opcode: Int32, name: String)] = [
        (Int32(IORING_OP_NOP.rawValue), "NOP"),
        (Int32(IORING_OP_READ.rawValue), "READ"),
        (Int32(IORING_OP_WRITE.rawValue), "WRITE"),
        (Int32(IORING_OP_READ_FIXED.rawValue), "READ_FIXED"),
        (Int32(IORING_OP_WRITE_FIXED.rawValue), "WRITE_FIXED"),
        (Int32(IORING_OP_FSYNC.rawValue), "FSYNC"),
        (Int32(IORING_OP_FALLOCATE.rawValue), "FALLOCATE"),
        (Int32(IORING_OP_OPENAT.rawValue), "OPENAT"),
        (Int32(IORING_OP_CLOSE.rawValue), "CLOSE"),
        (Int32(IORING_OP_RENAMEAT.rawValue), "RENAMEAT"),
        (Int32(IORING_OP_UNLINKAT.rawValue), "UNLINKAT"),
        (Int32(IORING_OP_ACCEPT.rawValue), "ACCEPT"),
        (Int32(IORING_OP_CONNECT.rawValue), "CONNECT"),
        (Int32(IORING_OP_RECV.rawValue), "RECV"),
        (Int32(IORING_OP_SEND.rawValue), "SEND"),
        (Int32(IORING_OP_TIMEOUT.rawValue), "TIMEOUT"),
        (Int32(IORING_OP_LINK_TIMEOUT.rawValue), "LINK_TIMEOUT"),
        (Int32(IORING_OP_ASYNC_CANCEL.rawValue), "ASYNC_CANCEL"),
    ]

    /// Why io_uring cannot be used, as a message for the operator.
    public struct Unavailable: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Creates a ring with the reactor's settings: single issuer and cooperative task
    /// running with its flag where the kernel has them (Linux 6.0+), plain otherwise.
    /// Returns whether the kernel raises IORING_SQ_TASKRUN when completions wait for us.
    static func makeRing() throws(Errno) -> (ring: io_uring, hasTaskRunFlag: Bool) {
        var ring = io_uring()
        var parameters = io_uring_params()
        parameters.flags =
            UInt32(IORING_SETUP_CQSIZE) | granary_IORING_SETUP_SINGLE_ISSUER
            | granary_IORING_SETUP_COOP_TASKRUN | granary_IORING_SETUP_TASKRUN_FLAG
        var hasTaskRunFlag = true
        parameters.cq_entries = IOLimits.completionQueueEntries
        var result = io_uring_queue_init_params(IOLimits.submissionQueueEntries, &ring, &parameters)
        if result == -EINVAL {
            // An older kernel that lacks the newer flags.
            hasTaskRunFlag = false
            parameters = io_uring_params()
            parameters.flags = UInt32(IORING_SETUP_CQSIZE)
            parameters.cq_entries = IOLimits.completionQueueEntries
            result = io_uring_queue_init_params(IOLimits.submissionQueueEntries, &ring, &parameters)
        }
        if result < 0 { throw Errno(result: result) }
        return (ring, hasTaskRunFlag)
    }

    /// Checks, once at start-up, that a ring can be created and has every opcode we use.
    public static func check() throws(Unavailable) {
        var ring = io_uring()
        let result = io_uring_queue_init(8, &ring, 0)
        if result < 0 {
            throw Unavailable(description: diagnose(setupErrno: -result, disabledSysctl: readDisabledSysctl()))
        }
        defer { io_uring_queue_exit(&ring) }
        guard let probe = io_uring_get_probe_ring(&ring) else {
            throw Unavailable(
                description: diagnose(missingOpcodes: [
                    "(the kernel has no IORING_REGISTER_PROBE: Linux 5.6 or later is needed)"
                ]))
        }
        defer { io_uring_free_probe(probe) }
        let missing = requiredOpcodes.filter { granary_probe_supports(probe, $0.opcode) == 0 }.map(\.name)
        if !missing.isEmpty {
            throw Unavailable(description: diagnose(missingOpcodes: missing))
        }
    }

    /// The value of `kernel.io_uring_disabled` (0 allowed, 1 restricted to a group, 2 off),
    /// or nil on kernels before 6.6 that lack the knob.
    public static func readDisabledSysctl() -> Int? {
        guard let file = fopen("/proc/sys/kernel/io_uring_disabled", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 16)
        guard fgets(&line, Int32(line.count), file) != nil else { return nil }
        return Int(line.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }.filter(\.isNumber))
    }

    /// The operator's message for a failed `io_uring_setup`. Pure, so tests cover every case.
    public static func diagnose(setupErrno: Int32, disabledSysctl: Int?) -> String {
        let prefix = "granary: io_uring is not available (io_uring_setup failed: \(Errno(setupErrno)))."
        switch (setupErrno, disabledSysctl) {
        case (EPERM, .some(let value)) where value != 0:
            return prefix + """
                 Cause: the kernel.io_uring_disabled sysctl is \(value), which forbids io_uring\
                \(value == 1 ? " outside the io_uring group" : "").
                 Fix: run `sysctl -w kernel.io_uring_disabled=0` (as root), or persist it in \
                /etc/sysctl.d/.
                """
        case (EPERM, _):
            return prefix + """
                 Cause: a seccomp profile blocks the io_uring system calls (a container runtime's \
                default profile does).
                 Fix: run with a seccomp profile that allows io_uring_setup, io_uring_enter and \
                io_uring_register (for Docker: --security-opt seccomp=<profile>, or seccomp=unconfined).
                """
        case (ENOSYS, _):
            return prefix + """
                 Cause: this kernel was built without io_uring (CONFIG_IO_URING), or a seccomp \
                profile hides it.
                 Fix: run on Linux 6.0 or later with io_uring enabled.
                """
        case (ENOMEM, _):
            return prefix + """
                 Cause: the kernel could not allocate or lock the ring's memory.
                 Fix: raise the locked-memory limit (`ulimit -l`, LimitMEMLOCK= in systemd) or \
                free memory.
                """
        default:
            return prefix + " Fix: run on Linux 6.0 or later with io_uring enabled."
        }
    }

    /// The operator's message for a kernel that lacks opcodes the reactor uses.
    public static func diagnose(missingOpcodes: [String]) -> String {
        """
        granary: this kernel's io_uring lacks operations Granary needs: \
        \(missingOpcodes.joined(separator: ", ")).
         Fix: run on Linux 6.0 or later.
        """
    }
}
