import GranaryModel

// The commands a partition evaluates, and their results: plain values, Codable, so that a
// call to a partition on this core, on another core and (with replication) at another
// node's leader is one message of one shape. The partition does the work that needs the
// stored item (reading it, checking a condition, applying an update); the router only
// parses the request and builds the command.

/// A single-item write: read the stored item, check the condition, compute the new item,
/// log it durably.
public struct WriteCommand: Sendable, Codable {
    public enum Action: Sendable, Codable {
        /// Store this item (PutItem, a BatchWriteItem put).
        case put(Item)
        /// Remove the item (DeleteItem, a BatchWriteItem delete).
        case delete
        /// Apply the actions to the stored item, or to `keyItem` (the key's attributes) when
        /// nothing is stored (UpdateItem). When every action removes or deletes and nothing
        /// is stored, nothing is created, as in DynamoDB.
        case update([UpdateAction], keyItem: Item)
        /// Only check the condition (a transaction's ConditionCheck): nothing is written.
        case check
    }

    public var table: UInt32
    /// The item's key in the partition's B-tree (`TableInfo.storageKey`).
    public var key: [UInt8]
    public var condition: Condition?
    public var action: Action
    /// Whether the result needs the stored item (a condition, an update, ReturnValues or a
    /// capacity report): a put or delete that does not leaves it undecoded.
    public var readsOld: Bool
    /// ReturnValuesOnConditionCheckFailure ALL_OLD: a failed condition carries the item.
    public var returnsOldOnFailure: Bool
    /// The table's secondary indexes that the partition keeps with the item, if any.
    public var indexes: IndexMaintenance?

    public init(
        table: UInt32, key: [UInt8], condition: Condition? = nil, action: Action, readsOld: Bool = true,
        returnsOldOnFailure: Bool = false, indexes: IndexMaintenance? = nil
    ) {
        self.table = table
        self.key = key
        self.condition = condition
        self.action = action
        switch action {
        case .update, .check: self.readsOld = true  // they evaluate against the stored item
        // An index entry of the old item is deleted or replaced.
        case .put, .delete: self.readsOld = readsOld || condition != nil || indexes != nil
        }
        self.returnsOldOnFailure = returnsOldOnFailure
        self.indexes = indexes
    }

    /// What the write stores, given the item stored now: nil deletes (or leaves nothing).
    /// Throws ConditionalCheckFailedException when the condition does not hold, and a
    /// ValidationException when the update cannot apply or the item outgrows 400 KB.
    public func newItem(replacing stored: Item?) throws(DynamoError) -> Item? {
        if let condition, !condition.evaluate(stored) {
            throw .conditionalCheckFailed(item: returnsOldOnFailure ? stored : nil)
        }
        switch action {
        case .put(let item):
            try indexes?.checkIndexKeys(item)
            return item
        case .delete:
            return nil
        case .check:
            return stored
        case .update(let actions, let keyItem):
            let onlyRemoves = actions.allSatisfy { action in
                switch action {
                case .remove, .delete: true
                case .set, .add: false
                }
            }
            if stored == nil && !actions.isEmpty && onlyRemoves { return nil }
            let updated = try UpdateEvaluation.apply(actions, to: stored ?? keyItem)
            try ItemLimits.checkItemSize(updated)
            try indexes?.checkIndexKeys(updated)
            return updated
        }
    }
}

extension WriteCommand {
    /// Whether the command changes the item (all but a condition check).
    public var writes: Bool {
        if case .check = action { return false }
        return true
    }
}

/// A partition's answer to a transaction's prepare: its keys are locked and every command
/// evaluated against the stored items (nothing stored yet), or a key was held by another
/// transaction and nothing is locked.
public enum PrepareOutcome: Sendable, Codable {
    /// Each command's outcome or the error that cancels the transaction, in command order.
    case prepared([PreparedWrite])
    /// The index of the command whose key another transaction holds.
    case conflict(Int)
}

/// One command's outcome in a prepared transaction.
public enum PreparedWrite: Sendable, Codable {
    case ready(WriteOutcome)
    case refused(DynamoError)
}

/// What a write found and left: the item before (nil when absent, or when the command did
/// not read it) and after (nil when deleted or absent).
public struct WriteOutcome: Sendable, Codable {
    public var old: Item?
    public var new: Item?
    /// In a table with local indexes: the size of the item's collection after the write.
    public var collectionBytes: Int?

    public init(old: Item?, new: Item?, collectionBytes: Int? = nil) {
        self.old = old
        self.new = new
        self.collectionBytes = collectionBytes
    }
}

/// A page of a Query or Scan: the items of `range` after `after` (the last key a previous
/// page returned), forward or backward, at most `limit` of them and about `byteLimit`
/// bytes (DynamoDB's 1 MB page, counted before any filter).
public struct RangeRead: Sendable, Codable {
    public var range: KeyRange
    public var after: [UInt8]?
    public var reverse: Bool
    public var limit: Int
    public var byteLimit: Int
    /// Strongly consistent (answered by the leader), or eventually (by any replica).
    public var consistent: Bool

    public init(
        _ range: KeyRange, after: [UInt8]?, reverse: Bool = false, limit: Int, byteLimit: Int, consistent: Bool = true
    ) {
        self.consistent = consistent
        self.range = range
        self.after = after
        self.reverse = reverse
        self.limit = limit
        self.byteLimit = byteLimit
    }
}

/// Keys from `lower` (inclusive) to `upper` (exclusive), in B-tree order.
public struct KeyRange: Sendable, Codable {
    public var lower: [UInt8]
    public var upper: [UInt8]
    public init(lower: [UInt8], upper: [UInt8]) { self.lower = lower; self.upper = upper }
}

/// One page of a range walk: the items in walk order, their DynamoDB size, the key of the
/// last one, and whether the range holds more.
public struct RangePage: Sendable, Codable {
    /// The items in their stored form (`ItemCodec`): the reader decodes what it must look
    /// into (a filter, a projection) and writes the rest out as it is stored.
    public var storedItems: [[UInt8]] = []
    public var bytes = 0
    public var lastKey: [UInt8]?
    public var more = false
    public init() {}
}

/// One write of a committed transaction: the final image of an item (nil: deleted), and
/// the table's indexes to keep with it.
public struct TransactionWrite: Sendable, Codable {
    public var table: UInt32
    public var key: [UInt8]
    public var item: Item?
    public var indexes: IndexMaintenance?
    public init(table: UInt32, key: [UInt8], item: Item?, indexes: IndexMaintenance? = nil) {
        self.table = table
        self.key = key
        self.item = item
        self.indexes = indexes
    }
}
