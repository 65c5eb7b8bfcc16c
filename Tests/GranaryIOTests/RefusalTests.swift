import Glibc
import GranaryIO
import Testing

/// The refusal path: what the operator reads when io_uring cannot be used.
@Suite struct RefusalTests {
    @Test func disabledBySysctl() {
        let message = IOUringSupport.diagnose(setupErrno: EPERM, disabledSysctl: 2)
        #expect(message.contains("kernel.io_uring_disabled sysctl is 2"))
        #expect(message.contains("sysctl -w kernel.io_uring_disabled=0"))
    }

    @Test func blockedBySeccomp() {
        let message = IOUringSupport.diagnose(setupErrno: EPERM, disabledSysctl: 0)
        #expect(message.contains("seccomp"))
        #expect(message.contains("io_uring_setup"))
    }

    @Test func kernelWithoutIOUring() {
        #expect(IOUringSupport.diagnose(setupErrno: ENOSYS, disabledSysctl: nil).contains("CONFIG_IO_URING"))
    }

    @Test func missingOpcode() {
        let message = IOUringSupport.diagnose(missingOpcodes: ["LINK_TIMEOUT"])
        #expect(message.contains("LINK_TIMEOUT") && message.contains("Linux 6.0"))
    }

    @Test func thisMachinePassesTheCheck() throws {
        try IOUringSupport.check()
    }
}
