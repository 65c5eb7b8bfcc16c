import CShims
import Glibc
import GranaryIO

/// The node's data directory: created if missing, checked to support O_DIRECT, and locked
/// so that a second process cannot open the same data.
public struct DataDirectory: Sendable {
    public let path: String
    private let lockDescriptor: Int32

    /// Why a data directory cannot be used, as a message for the operator.
    public struct Unusable: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Opens (creating it if needed) and locks `path`. Runs at start-up, before any
    /// reactor, so blocking system calls are fine here.
    public static func open(_ path: String) throws(Unusable) -> DataDirectory {
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw Unusable(description: "granary: cannot create the data directory \(path): \(Errno(errno))")
        }
        var filesystem = statfs()
        guard statfs(path, &filesystem) == 0 else {
            throw Unusable(description: "granary: cannot inspect the data directory \(path): \(Errno(errno))")
        }
        if filesystem.f_type == granary_TMPFS_MAGIC {
            throw Unusable(
                description: """
                    granary: the data directory \(path) is on tmpfs, which is memory, not a disk: \
                    data there would not survive a reboot, and tmpfs refuses O_DIRECT.
                     Fix: pass --data-dir on a disk filesystem (ext4, xfs, btrfs).
                    """)
        }
        try probeDirectIO(path)
        let lockPath = path + "/LOCK"
        let descriptor = Glibc.open(lockPath, O_RDWR | O_CREAT | granary_O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw Unusable(description: "granary: cannot open \(lockPath): \(Errno(errno))")
        }
        if flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            Glibc.close(descriptor)
            throw Unusable(
                description: """
                    granary: the data directory \(path) is in use by another granary process \
                    (\(lockPath) is locked).
                     Fix: stop that process, or pass another --data-dir.
                    """)
        }
        return DataDirectory(path: path, lockDescriptor: descriptor)
    }

    /// Opens a scratch file with O_DIRECT and writes one aligned block, which is what the
    /// storage engine will do: a filesystem that refuses either is named now.
    private static func probeDirectIO(_ path: String) throws(Unusable) {
        let probePath = path + "/.direct-io-probe"
        let descriptor = Glibc.open(probePath, O_RDWR | O_CREAT | O_TRUNC | granary_O_DIRECT | granary_O_CLOEXEC, 0o600)
        defer { unlink(probePath) }
        guard descriptor >= 0 else {
            let code = errno
            throw Unusable(
                description: code == EINVAL
                    ? """
                    granary: the filesystem of \(path) does not support O_DIRECT (direct I/O).
                     Fix: pass --data-dir on ext4, xfs or btrfs.
                    """
                    : "granary: cannot create files in the data directory \(path): \(Errno(code))")
        }
        defer { Glibc.close(descriptor) }
        var block: UnsafeMutableRawPointer?
        guard posix_memalign(&block, IOLimits.directIOAlignment, IOLimits.directIOAlignment) == 0, let block else {
            throw Unusable(description: "granary: out of memory at start-up")
        }
        defer { free(block) }
        memset(block, 0, IOLimits.directIOAlignment)
        if pwrite(descriptor, block, IOLimits.directIOAlignment, 0) != IOLimits.directIOAlignment {
            throw Unusable(
                description: """
                    granary: the filesystem of \(path) refused a direct (O_DIRECT) write: \(Errno(errno)).
                     Fix: pass --data-dir on ext4, xfs or btrfs with free space.
                    """)
        }
    }
}
