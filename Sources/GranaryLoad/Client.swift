import GranaryIO
import GranaryModel

/// One simulated client: a connection, its own random stream and key chooser, running
/// operations one after another on its reactor until the run stops.
final class Client {
    private let run: LoadRun
    private let options: RunOptions
    private let layout: RecordLayout
    private let shared: SharedRunState
    private let reactor: Reactor
    private let statistics: RunStatistics
    private let dynamo: DynamoClient
    private let index: Int
    private var random: FastRandom
    private var chooser: KeyChooser
    /// Set when the server could not be reached: the next operation waits a little, so a
    /// client does not spin on a refused connection (it is not a retry: the failure counts).
    private var backOff = false

    init(run: LoadRun, index: Int, reactor: Reactor, statistics: RunStatistics) {
        self.run = run
        options = run.options
        layout = options.layout
        shared = run.shared
        self.reactor = reactor
        self.statistics = statistics
        self.index = index
        dynamo = DynamoClient(
            reactor: reactor, endpoint: options.endpoint, credentials: options.credentials,
            timeout: options.requestTimeout)
        random = FastRandom(seed: options.seed &* 0x100_0000_01B3 &+ UInt64(index))
        chooser = KeyChooser(options.workload.distribution)
    }

    func run(start: UInt64) async {
        defer { dynamo.close() }
        // Open loop: this client's share of the rate, its first start staggered so that
        // the clients' requests interleave evenly.
        let interval = options.rate.map { UInt64(Double(options.concurrency) * 1e9 / $0) }
        var intended = start + (interval ?? 0) * UInt64(index) / UInt64(options.concurrency)
        while !shared.stopped.load(ordering: .relaxed) {
            if backOff {
                backOff = false
                try? await reactor.sleep(for: .milliseconds(10))
            }
            var began = monotonicNanoseconds()
            if let interval {
                if intended > began {
                    try? await reactor.sleep(for: .nanoseconds(Int64(intended - began)))
                    if shared.stopped.load(ordering: .relaxed) { return }
                }
                began = intended  // latency counts from when the request should have gone
                intended += interval
            }
            if run.loading {
                let record = shared.nextInsert.loadThenWrappingIncrement(ordering: .relaxed)
                guard record < options.records else { return }
                await insert(record, began: began)
                continue
            }
            switch options.workload.operation(for: random.unit()) {
            case .read: await read(began: began)
            case .update: await update(began: began)
            case .insert: await insert(shared.nextInsert.loadThenWrappingIncrement(ordering: .relaxed), began: began)
            case .scan: await scan(began: began)
            case .readModifyWrite: await readModifyWrite(began: began)
            }
        }
    }

    // MARK: Operations

    private func finish(_ operation: Workload.Operation, began: UInt64, error: String?) {
        finish(operation.rawValue, began: began, error: error)
    }

    private func finish(_ operation: String, began: UInt64, error: String?) {
        let elapsed = (monotonicNanoseconds() - began) / 1000
        statistics.record(
            operation, microseconds: max(1, elapsed), error: error,
            measured: shared.measuring.load(ordering: .relaxed))
        if let error, error.hasPrefix("Connection") { backOff = true }
    }

    private func existingRecord() -> Int {
        chooser.next(items: max(1, shared.existing.load(ordering: .relaxed)), using: &random)
    }

    /// A record to write, with no other write to it in flight when verifying.
    private func claimRecord() -> Int {
        while true {
            let record = existingRecord()
            if options.verify?.claim(record) ?? true { return record }
        }
    }

    private func read(began: UInt64) async {
        let record = existingRecord()
        let body =
            #"{"TableName":"\#(layout.table)","Key":{\#(layout.keyJSON(record))}\#(options.consistentReads ? #","ConsistentRead":true"# : "")}"#
        let outcome = await dynamo.call("GetItem", body)
        finish(.read, began: began, error: outcome.error)
    }

    private func update(began: UInt64) async {
        let record = claimRecord()
        defer { options.verify?.release(record) }
        let field = Int(random.next() % UInt64(layout.fieldCount))
        let sequence = shared.sequence.loadThenWrappingIncrement(ordering: .relaxed)
        let value = layout.value(record: record, field: field, sequence: sequence)
        let body =
            #"{"TableName":"\#(layout.table)","Key":{\#(layout.keyJSON(record))},"UpdateExpression":"SET \#(RecordLayout.fieldName(field)) = :v","ExpressionAttributeValues":{":v":{"S":"\#(value)"}}}"#
        let outcome = await dynamo.call("UpdateItem", body)
        if outcome.error == nil { options.verify?.acknowledged(record: record, field: field, sequence: sequence) }
        finish(.update, began: began, error: outcome.error)
    }

    private func insert(_ record: Int, began: UInt64) async {
        let sequence = shared.sequence.loadThenWrappingIncrement(ordering: .relaxed)
        var item = layout.keyJSON(record)
        for field in 0..<layout.fieldCount {
            item +=
                #","\#(RecordLayout.fieldName(field))":{"S":"\#(layout.value(record: record, field: field, sequence: sequence))"}"#
        }
        let outcome = await dynamo.call("PutItem", #"{"TableName":"\#(layout.table)","Item":{\#(item)}}"#)
        if outcome.error == nil {
            options.verify?.acknowledged(record: record, field: -1, sequence: sequence)
            shared.existing.wrappingIncrement(ordering: .relaxed)
        }
        finish(.insert, began: began, error: outcome.error)
    }

    /// A short range: a Query from a record onward within its group, 1...100 items.
    private func scan(began: UInt64) async {
        let record = existingRecord()
        let length = 1 + Int(random.next() % UInt64(Workload.maxRangeLength))
        let body =
            #"{"TableName":"\#(layout.table)","KeyConditionExpression":"pk = :p AND sk >= :s","ExpressionAttributeValues":{":p":{"S":"\#(layout.partitionKey(record))"},":s":{"N":"\#(record)"}},"Limit":\#(length)}"#
        let outcome = await dynamo.call("Query", body)
        finish(.scan, began: began, error: outcome.error)
    }

    /// Reads a record, then writes one field of it on the condition that the field still
    /// holds what was read (optimistic concurrency: a concurrent writer makes it fail with
    /// ConditionalCheckFailedException, counted as such). The read and the write are also
    /// counted alone (as YCSB does), under their own names.
    private func readModifyWrite(began: UInt64) async {
        let record = claimRecord()
        defer { options.verify?.release(record) }
        let field = Int(random.next() % UInt64(layout.fieldCount))
        let name = RecordLayout.fieldName(field)
        let readBody =
            #"{"TableName":"\#(layout.table)","Key":{\#(layout.keyJSON(record))},"ProjectionExpression":"\#(name)","ConsistentRead":true}"#
        let read = await dynamo.call("GetItem", readBody)
        finish("read-modify-write.read", began: began, error: read.error)
        guard case .success(let bytes) = read else {
            finish(.readModifyWrite, began: began, error: read.error)
            return
        }
        guard case .string(let old)? = (try? JSON.parse(bytes))?["Item"]?[name]?["S"] else {
            finish(.readModifyWrite, began: began, error: "ItemNotFound")
            return
        }
        let writeBegan = monotonicNanoseconds()
        let sequence = shared.sequence.loadThenWrappingIncrement(ordering: .relaxed)
        let value = layout.value(record: record, field: field, sequence: sequence)
        let body =
            #"{"TableName":"\#(layout.table)","Key":{\#(layout.keyJSON(record))},"UpdateExpression":"SET \#(name) = :v","ConditionExpression":"\#(name) = :old","ExpressionAttributeValues":{":v":{"S":"\#(value)"},":old":{"S":\#(String(decoding: JSON.string(old).serialized(), as: UTF8.self))}}}"#
        let write = await dynamo.call("UpdateItem", body)
        if write.error == nil { options.verify?.acknowledged(record: record, field: field, sequence: sequence) }
        finish("read-modify-write.update", began: writeBegan, error: write.error)
        finish(.readModifyWrite, began: began, error: write.error)
    }
}

extension CallOutcome {
    var error: String? {
        if case .failure(let type) = self { return type }
        return nil
    }
}
