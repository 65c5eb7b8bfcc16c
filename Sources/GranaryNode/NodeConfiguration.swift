import GranaryIO
import GranaryRouter

/// What one node runs with. The defaults are the embedded single node: one process, data in
/// ./granary-data, listening on 127.0.0.1:8000, every core.
public struct NodeConfiguration: Sendable {
    public var listen: SocketAddress
    public var dataDirectory: String
    /// The CPUs to run a reactor on, one each.
    public var cpus: [Int]
    /// Memory for the partitions' page caches, dirty pages and log buffers, shared equally.
    public var memoryBytes = 512 << 20
    /// Size of each write-ahead log segment file.
    public var logSegmentBytes = 64 << 20
    /// When set, every request must carry a SigV4 signature by one of these keys.
    public var credentials: SigV4Verifier?
    /// In a cluster, this node's place in it; nil for a node on its own.
    public var cluster: ClusterConfiguration?
    /// Whether an idle reactor polls for a moment before it sleeps (`Reactor`): faster
    /// answers on CPUs of its own, CPU taken from anything that shares them.
    public var pollsWhenIdle = true

    public init(
        listen: SocketAddress = SocketAddress("127.0.0.1:8000")!,
        dataDirectory: String = "./granary-data",
        cpus: [Int] = ReactorGroup.availableCPUs()
    ) {
        self.listen = listen
        self.dataDirectory = dataDirectory
        self.cpus = cpus
    }

    /// Parses a core list such as "0,2-3" into CPU numbers, in order and without repeats.
    public static func parseCPUList(_ text: String) -> [Int]? {
        var cpus: [Int] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count == 1 || bounds.count == 2,
                let low = Int(bounds[0]), let high = Int(bounds.last!), low >= 0, low <= high, high < 4096
            else { return nil }
            for cpu in low...high where !cpus.contains(cpu) { cpus.append(cpu) }
        }
        return cpus.isEmpty ? nil : cpus
    }
}
