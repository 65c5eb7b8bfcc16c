import Glibc

/// An errno value as a Swift error. io_uring reports failures as `-errno` in a
/// completion's result; `Errno(result:)` turns that into this type.
public struct Errno: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32

    public init(_ rawValue: Int32) {
        self.rawValue = rawValue
    }

    /// The errno of a negative io_uring completion result.
    public init(result: Int32) {
        precondition(result < 0, "only a negative completion result is an errno")
        self.rawValue = -result
    }

    public static let interrupted = Errno(EINTR)
    public static let wouldBlock = Errno(EAGAIN)
    public static let busy = Errno(EBUSY)
    public static let canceled = Errno(ECANCELED)
    public static let timedOut = Errno(ETIME)
    public static let invalidArgument = Errno(EINVAL)
    public static let noBufferSpace = Errno(ENOBUFS)
    public static let permissionDenied = Errno(EPERM)
    public static let notImplemented = Errno(ENOSYS)

    public var description: String {
        "\(String(cString: strerror(rawValue))) (errno \(rawValue))"
    }
}

/// Calls a libc function that reports failure as -1 with `errno` set, retrying on EINTR.
///
/// `@inline(never)` keeps anything from running between the call and the read of `errno`
/// (swift-nio's `System.swift` does the same, for the same reason). EBADF and EFAULT are
/// programming errors, not conditions to handle, so they stop the process.
@inline(never)
public func systemCall<Result: BinaryInteger>(
    _ name: StaticString, retryOnInterrupt: Bool = true, _ body: () -> Result
) throws(Errno) -> Result {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = errno
        if code == EINTR && retryOnInterrupt { continue }
        precondition(code != EBADF && code != EFAULT, "\(name) failed with errno \(code): a programming error")
        throw Errno(code)
    }
}
