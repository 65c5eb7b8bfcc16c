import CShims
import Glibc
import GranaryIO

/// The file a cluster member keeps in a partition's directory while the partition's
/// replica recovers (`Replica.Recovery`): a directory with no log and no tree is marked,
/// durably, before its replica first opens, and the mark goes once the replica has caught
/// up. A replica that finds the mark starts recovering, so a node that comes back with an
/// empty or lost data directory votes only once it knows what it may have forgotten, and a
/// crash during recovery starts it over.
enum RecoveryMark {
    static let name = "recovering"

    static func path(in directory: String) -> String { "\(directory)/\(name)" }

    /// Whether the replica in `directory` must recover: it holds the mark, or nothing at
    /// all (then it is marked first). Runs at start-up, before the reactors serve.
    static func isRecovering(_ directory: String) throws(Node.StartupFailure) -> Bool {
        let mark = path(in: directory)
        if access(mark, F_OK) == 0 { return true }
        guard let handle = opendir(directory) else {
            throw Node.StartupFailure(description: "granary: cannot list \(directory): \(Errno(errno))")
        }
        defer { closedir(handle) }
        while let entry = readdir(handle) {
            let file = withUnsafeBytes(of: entry.pointee.d_name) {
                String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
            }
            if file != "." && file != ".." { return false }
        }
        let descriptor = open(mark, O_CREAT | O_WRONLY | granary_O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw Node.StartupFailure(description: "granary: cannot create \(mark): \(Errno(errno))")
        }
        let written = fsync(descriptor) == 0
        close(descriptor)
        let directoryDescriptor = open(directory, O_RDONLY | O_DIRECTORY | granary_O_CLOEXEC)
        let synced = directoryDescriptor >= 0 && fsync(directoryDescriptor) == 0
        if directoryDescriptor >= 0 { close(directoryDescriptor) }
        guard written && synced else {
            throw Node.StartupFailure(description: "granary: cannot make \(mark) durable: \(Errno(errno))")
        }
        return true
    }

    /// The replica has caught up, durably. Losing the removal in a crash only means
    /// recovering again.
    static func remove(in directory: String) {
        unlink(path(in: directory))
    }
}
