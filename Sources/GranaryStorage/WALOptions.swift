/// How a write-ahead log is laid out and made durable.
public struct WALOptions: Sendable {
    /// Bytes per segment file. 64 MiB: a roll (and its directory sync) every few hundred
    /// thousand small records, and a bounded amount of log to read back at recovery.
    public var segmentBytes = 64 << 20
    /// The most bytes one group (one durable write) carries; records beyond wait for the
    /// next group. Also the size of the log's staging buffer.
    public var groupBytesMax = 2 << 20
    /// How a group is made durable. One RWF_DSYNC write: with one writer it ran 1.28x
    /// faster than a write then an fdatasync (two requests, the sync on an io-wq worker)
    /// in the same run, and at 0.96 of fio's psync write+fdatasync (BENCHMARKS.md).
    public var durability = WALDurability.dataSyncedWrite
    /// Whether new segment files are written with zeros before use. On ext4 and xfs a
    /// write into fallocate's unwritten extents makes every fdatasync also commit extent
    /// metadata; zeroing once at creation keeps the sync to data alone.
    public var zeroFillNewSegments = true
    /// Recycled segments kept for reuse; more are deleted.
    public var sparesMax = 4
    /// The largest record payload. An item is at most 400 KB; a record carries one write
    /// with its key and metadata, and 1 MiB leaves room for a batch of small ones.
    public var recordPayloadBytesMax = 1 << 20

    public init() {}

    func validate() {
        precondition(
            segmentBytes % StorageLimits.blockSize == 0 && groupBytesMax % StorageLimits.blockSize == 0,
            "WAL sizes must be whole blocks")
        precondition(
            recordPayloadBytesMax + WALFormat.recordHeaderBytes <= groupBytesMax,
            "a group must hold the largest record")
        precondition(groupBytesMax + StorageLimits.blockSize <= segmentBytes, "a segment must hold a group")
    }
}

public enum WALDurability: Sendable {
    /// A write, then fdatasync: two requests.
    case writeThenDataSync
    /// One write with RWF_DSYNC, durable when it completes.
    case dataSyncedWrite
}

/// One record of the log, as recovery hands it back.
public struct WALRecord: Sendable, Equatable {
    public var lsn: UInt64
    public var kind: LogRecordKind
    /// An entry's: the ballot it was accepted in. A state record's: the promised ballot.
    public var ballot: LogBallot
    /// An entry's slot (0 for the others).
    public var slot: UInt64
    /// Every slot up to here was known chosen when the record was written.
    public var chosen: UInt64
    public var payload: [UInt8]
}

/// A record to append: an entry (in `slot`, or the next one when nil) or a state record.
public struct LogAppend: Sendable {
    public var kind: LogRecordKind
    public var ballot: LogBallot
    public var slot: UInt64?
    public var chosen: UInt64
    public var payload: [UInt8]

    public init(_ payload: [UInt8], kind: LogRecordKind, ballot: LogBallot, slot: UInt64?, chosen: UInt64) {
        self.kind = kind
        self.ballot = ballot
        self.slot = slot
        self.chosen = chosen
        self.payload = payload
    }
}

/// What a log record is (`WALFormat`).
public enum LogRecordKind: UInt16, Sendable {
    /// A record of a version-1 log: a store operation, applied in LSN order.
    case legacy = 0
    /// An accepted entry: `slot` holds `payload`, accepted in `ballot`.
    case entry = 1
    /// The acceptor's state: it promised `ballot` and knows every slot up to `chosen` chosen.
    case state = 2
}

/// A Paxos ballot as the log stores it (GranaryPaxos's `Ballot`, without depending on it):
/// a round made unique by the proposing node's id, ordered round first.
public struct LogBallot: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var round: UInt64
    public var node: UInt32

    public init(round: UInt64, node: UInt32) {
        self.round = round
        self.node = node
    }

    public static let zero = LogBallot(round: 0, node: 0)

    public static func < (lhs: LogBallot, rhs: LogBallot) -> Bool { (lhs.round, lhs.node) < (rhs.round, rhs.node) }

    public var description: String { "\(round).\(node)" }
}
