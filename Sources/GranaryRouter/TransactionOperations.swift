import Crypto
import GranarySigV4
import Foundation
import GranaryModel
import GranaryCommands

/// TransactWriteItems and TransactGetItems: up to 100 actions on items anywhere on the
/// node, all or nothing, isolated from other writes.
///
/// A transaction prepares in every partition it touches (partition by partition in index
/// order, keys in order): the partition's leader locks the items, checks every
/// condition, and makes the locks durable. Then the ledger (TransactionLedger) commits
/// it in one partition, the coordinator, and each participant applies its writes. A key
/// already held by another transaction cancels this one with TransactionConflict at
/// once, so transactions never wait for each other; single-item writes queue behind a
/// transaction's lock and transactions behind theirs, both bounded.
extension DynamoService {
    static let transactionActionsMax = 100
    static let transactionBytesMax = 4 << 20

    /// One action of a TransactWriteItems, validated: the command its partition evaluates.
    private struct PlannedWrite {
        var info: TableInfo
        var partition: Int
        var command: WriteCommand
    }

    // MARK: TransactWriteItems

    func transactWriteItems(_ fields: RequestFields) async throws(DynamoError) -> JSON {
        let actions = try transactionActions(fields)
        _ = try fields.enumeration("ReturnItemCollectionMetrics", allowed: ["SIZE", "NONE"])
        let token = try fields.string("ClientRequestToken")
        if let token, !(1...36).contains(token.utf8.count) {
            throw .validation(
                "1 validation error detected: Value '\(token)' at 'clientRequestToken' failed to satisfy constraint: Member must have length less than or equal to 36"
            )
        }
        let writes = try plannedWrites(actions)
        let requestHash = SigV4.hex(SHA256.hash(data: JSON.object(fields.members).canonicalSerialized()))
        let coordinator = token.map { partitionIndex(hash: KeyEncoding.hash(.s($0))) } ?? writes[0].partition
        let now = Date().timeIntervalSince1970
        if let token, let header = try await TransactionLedger.header(token, in: coordinator, over: transport),
            header.state == .done && header.time + TransactionLedger.tokenLifetimeSeconds <= now
        {
            try await TransactionLedger.forget(token, in: coordinator, over: transport)
        } else if let token, let header = try await TransactionLedger.header(token, in: coordinator, over: transport) {
            guard header.requestHash == requestHash else {
                throw DynamoError(
                    "IdempotentParameterMismatchException",
                    "The request uses the same client token as a previous, but non-identical request.")
            }
            guard header.state == .done else {
                throw DynamoError(
                    "TransactionInProgressException",
                    "The transaction with the given request token is already in progress.")
            }
            // Already applied: answer as then.
            return try transactionResponse(fields, units: writes.map { ($0.info, 2.0) })
        }

        let transaction = TransactionID(UUID().uuidString)
        let (locked, results) = try await prepare(writes, as: transaction, coordinator: coordinator)
        // Phase two: commit when every command may go ahead, else cancel with the reasons.
        var reasons: [JSON] = []
        var images: [Int: [TransactionWrite]] = [:]
        var units: [(TableInfo, ConsumedUnits)] = []
        for (write, result) in zip(writes, results) {
            switch result {
            case .ready(let outcome):
                let old = outcome.old?.sizeBytes ?? 0
                if write.command.writes {
                    images[write.partition, default: []].append(
                        TransactionWrite(
                            table: write.info.id, key: write.command.key, item: outcome.new,
                            indexes: write.command.indexes))
                    units.append((write.info, .write(write.info, old: outcome.old, new: outcome.new) * 2))
                } else {
                    units.append((write.info, ConsumedUnits(table: 2 * Self.writeUnits(old))))
                }
                reasons.append(["Code": "None"])
            case .refused(let error):
                reasons.append(Self.cancellationReason(error))
            }
        }
        guard reasons.allSatisfy({ $0 == ["Code": "None"] }) else {
            await release(transaction, in: locked)
            throw Self.transactionCanceled(reasons)
        }
        do throws(DynamoError) {
            try await TransactionLedger.commit(
                transaction, token: token, requestHash: requestHash, began: now, writes: images, participants: locked,
                coordinator: coordinator, over: transport, faults: transactionFaults)
        } catch  where error.type == "TransactionCanceledException" {
            // A participant's leader aborted it first (it took longer than they wait).
            throw Self.transactionCanceled(writes.map { _ in Self.conflictReason })
        }
        return try transactionResponse(fields, units: units)
    }

    /// A transaction's first phase: every partition locks its keys and evaluates its
    /// commands, partition by partition in index order. Returns the partitions that hold
    /// locks and each write's result, in request order; on a conflict or a failure nothing
    /// stays locked.
    private func prepare(
        _ writes: [PlannedWrite], as transaction: TransactionID, coordinator: Int
    ) async throws(DynamoError) -> (locked: [Int], results: [PreparedWrite]) {
        var byPartition: [Int: [Int]] = [:]  // partition to the indexes of its writes
        for (index, write) in writes.enumerated() { byPartition[write.partition, default: []].append(index) }
        var locked: [Int] = []
        var results = [PreparedWrite?](repeating: nil, count: writes.count)
        for (partition, indexes) in byPartition.sorted(by: { $0.key < $1.key }) {
            let outcome: PrepareOutcome
            do throws(DynamoError) {
                outcome = try await transport.prepare(
                    transaction, indexes.map { writes[$0].command }, coordinator: coordinator, at: partition)
            } catch {
                // Its outcome is unknown: the partition may hold the locks.
                await release(transaction, in: locked + [partition])
                throw error
            }
            switch outcome {
            case .conflict(let position):
                await release(transaction, in: locked)
                let conflicting = indexes[position]
                throw Self.transactionCanceled(
                    writes.indices.map { $0 == conflicting ? Self.conflictReason : ["Code": "None"] })
            case .prepared(let prepared):
                for (index, result) in zip(indexes, prepared) { results[index] = result }
                // A partition that refused a command keeps no locks (the transaction is
                // cancelled); the others are still asked, for their reasons.
                if prepared.allSatisfy({ if case .ready = $0 { true } else { false } }) { locked.append(partition) }
            }
        }
        return (locked, results.map { $0! })
    }

    /// Releases the keys `transaction` holds in the partitions `locked`; returns whether
    /// every one of them still held them (a leader's memory loses a read lock when another
    /// replica takes over). One it cannot reach resolves its locks itself.
    @discardableResult
    private func release(_ transaction: TransactionID, in locked: [Int]) async -> Bool {
        var held = true
        for partition in locked {
            held = ((try? await transport.release(transaction, at: partition)) ?? false) && held
        }
        return held
    }

    /// Every action validated, each item named once, the puts within 4 MB together.
    private func plannedWrites(_ actions: [JSON]) throws(DynamoError) -> [PlannedWrite] {
        var writes: [PlannedWrite] = []
        var seen: Set<[UInt8]> = []
        var requestBytes = 0
        for action in actions {
            let write = try plannedWrite(action)
            guard seen.insert(write.command.key).inserted else {
                throw .validation("Transaction request cannot include multiple operations on one item")
            }
            if case .put(let item) = write.command.action { requestBytes += item.sizeBytes }
            writes.append(write)
        }
        guard requestBytes <= Self.transactionBytesMax else {
            throw .validation("Transaction request cannot be larger than 4 MB")
        }
        return writes
    }

    private func plannedWrite(_ action: JSON) throws(DynamoError) -> PlannedWrite {
        guard case .object(let members) = action else {
            throw RequestFields.wrongType("TransactItems", action, expected: "a structure")
        }
        let present = members.filter { $0.value != .null }
        guard present.count == 1, let (name, body) = present.first,
            ["ConditionCheck", "Put", "Delete", "Update"].contains(name)
        else {
            throw .validation("TransactItems can only contain one of Check, Put, Update or Delete")
        }
        let request = try RequestFields(body)
        let info = try table(request)
        let updateText = try request.string("UpdateExpression")
        let conditionText = try request.string("ConditionExpression")
        let context = try request.expressionContext(usesExpressions: updateText != nil || conditionText != nil)
        let condition = try conditionText.map { (text) throws(DynamoError) in
            try ExpressionParser.condition(text, context: context)
        }
        var action: WriteCommand.Action
        let key: Item
        switch name {
        case "Put":
            guard let item = try request.item("Item") else { throw RequestFields.missing("Item") }
            try ItemLimits.checkItemSize(item)
            key = item
            action = .put(item)
        case "Update":
            guard let text = updateText else { throw RequestFields.missing("UpdateExpression") }
            guard let given = try request.item("Key") else { throw RequestFields.missing("Key") }
            let actions = try ExpressionParser.update(text, context: context)
            for action in actions where info.keyNames.contains(action.path.attributeName) {
                throw .validation(
                    "One or more parameter values were invalid: Cannot update attribute \(action.path.attributeName). This attribute is part of the key"
                )
            }
            key = given
            action = .update(actions, keyItem: [:])
        default:
            guard let given = try request.item("Key") else { throw RequestFields.missing("Key") }
            if name == "ConditionCheck" && condition == nil { throw RequestFields.missing("ConditionExpression") }
            key = given
            action = name == "Delete" ? .delete : .check
        }
        if name != "Update", updateText != nil {
            throw .validation("UpdateExpression can only be used in an Update action")
        }
        try context.checkAllUsed()
        let (partitionKey, sortKey) = try info.primaryKey(of: key, keyOnly: name != "Put")
        if case .update(let actions, _) = action {
            action = .update(actions, keyItem: key.filter { info.keyNames.contains($0.key) })
        }
        let command = WriteCommand(
            table: info.id, key: info.storageKey(partition: partitionKey, sort: sortKey), condition: condition,
            action: action,
            returnsOldOnFailure: try request.enumeration(
                "ReturnValuesOnConditionCheckFailure", allowed: ["ALL_OLD", "NONE"]) == "ALL_OLD",
            indexes: info.indexMaintenance)
        return PlannedWrite(
            info: info, partition: partitionIndex(hash: KeyEncoding.hash(partitionKey)), command: command)
    }

    // MARK: TransactGetItems

    func transactGetItems(_ fields: RequestFields) async throws(DynamoError) -> JSON {
        let actions = try transactionActions(fields)
        var reads: [(info: TableInfo, partition: Int, key: [UInt8], projection: [DocumentPath]?)] = []
        var seen: Set<[UInt8]> = []
        for action in actions {
            guard case .object(let members) = action, let get = members["Get"],
                members.filter({ $0.value != .null }).count == 1
            else {
                throw .validation("TransactItems can only contain Get in TransactGetItems")
            }
            let request = try RequestFields(get)
            let info = try table(request)
            guard let key = try request.item("Key") else { throw RequestFields.missing("Key") }
            let context = try request.expressionContext(usesExpressions: request.has("ProjectionExpression"))
            let projection = try Self.projection(request, context: context)
            try context.checkAllUsed()
            let (partitionKey, sortKey) = try info.primaryKey(of: key, keyOnly: true)
            let storageKey = info.storageKey(partition: partitionKey, sort: sortKey)
            guard seen.insert(storageKey).inserted else {
                throw .validation("Transaction request cannot include multiple operations on one item")
            }
            reads.append((info, partitionIndex(hash: KeyEncoding.hash(partitionKey)), storageKey, projection))
        }
        let items = try await withTransactionLocks(reads.map { ($0.partition, $0.key) }) {
            () async throws(DynamoError) -> [[UInt8]?] in
            try await concurrently(reads.map { ($0.partition, $0.key) }) {
                [transport] (partition, key) throws(DynamoError) in try await transport.get(key, at: partition)
            }
        } conflict: { index in
            Self.transactionCanceled(reads.indices.map { $0 == index ? Self.conflictReason : ["Code": "None"] })
        }
        var responses: [JSON] = []
        var units: [(TableInfo, Double)] = []
        for (read, stored) in zip(reads, items) {
            var itemBytes = 0
            if let stored {
                let shown = try Self.shownItem(stored, projection: read.projection)
                responses.append(["Item": shown.json])
                itemBytes = shown.itemBytes
            } else {
                responses.append([:])
            }
            units.append((read.info, 2 * Self.readUnits(itemBytes)))
        }
        var result = try transactionResponse(fields, units: units)
        if case .object(var members) = result { members["Responses"] = .array(responses); result = .object(members) }
        return result
    }

    // MARK: Helpers

    private func transactionActions(_ fields: RequestFields) throws(DynamoError) -> [JSON] {
        guard let actions = try fields.array("TransactItems") else { throw RequestFields.missing("TransactItems") }
        guard !actions.isEmpty else {
            throw .validation(
                "1 validation error detected: Value '[]' at 'transactItems' failed to satisfy constraint: Member must have length greater than or equal to 1"
            )
        }
        guard actions.count <= Self.transactionActionsMax else {
            throw .validation(
                "1 validation error detected: Value at 'transactItems' failed to satisfy constraint: Member must have length less than or equal to \(Self.transactionActionsMax)"
            )
        }
        return actions
    }

    /// Runs `body` with every key locked for a transaction, and unlocks whatever happens.
    /// On a conflict, throws `conflict(index of the conflicting key)`.
    private func withTransactionLocks<T>(
        _ keys: [(partition: Int, key: [UInt8])], _ body: () async throws(DynamoError) -> T,
        conflict: (Int) -> DynamoError
    ) async throws(DynamoError) -> T {
        let transaction = TransactionID(UUID().uuidString)
        var byPartition: [Int: [Int]] = [:]  // partition to the indexes of its keys
        for (index, key) in keys.enumerated() { byPartition[key.partition, default: []].append(index) }
        var taken: [Int] = []
        for (partition, indexes) in byPartition.sorted(by: { $0.key < $1.key }) {
            let conflicting: Int?
            do throws(DynamoError) {
                conflicting = try await transport.lock(transaction, keys: indexes.map { keys[$0].key }, at: partition)
            } catch {
                await release(transaction, in: taken)
                throw error
            }
            if let conflicting {
                await release(transaction, in: taken)
                throw conflict(indexes[conflicting])
            }
            taken.append(partition)
        }
        let outcome: Result<T, DynamoError>
        do throws(DynamoError) { outcome = .success(try await body()) } catch { outcome = .failure(error) }
        // Reads under locks a new leader does not know of may not have been isolated.
        guard await release(transaction, in: taken) else { throw conflict(0) }
        return try outcome.get()
    }

    private func transactionResponse(_ fields: RequestFields, units: [(TableInfo, Double)]) throws(DynamoError) -> JSON
    {
        try transactionResponse(fields, units: units.map { ($0, ConsumedUnits(table: $1)) })
    }

    private func transactionResponse(
        _ fields: RequestFields, units: [(TableInfo, ConsumedUnits)]
    ) throws(DynamoError) -> JSON {
        var result: [String: JSON] = [:]
        try addConsumedCapacity(fields, units: units, to: &result)
        return .object(result)
    }

    private static let conflictReason: JSON = [
        "Code": "TransactionConflict", "Message": "Transaction is ongoing for the item",
    ]

    private static func cancellationReason(_ error: DynamoError) -> JSON {
        switch error.type {
        case "ConditionalCheckFailedException":
            var reason: [String: JSON] = ["Code": "ConditionalCheckFailed", "Message": .string(error.message)]
            if let item = error.item { reason["Item"] = item.json }
            return .object(reason)
        case "ValidationException": return ["Code": "ValidationError", "Message": .string(error.message)]
        default: return ["Code": .string(error.type), "Message": .string(error.message)]
        }
    }

    private static func transactionCanceled(_ reasons: [JSON]) -> DynamoError {
        let codes = reasons.map { reason -> String in
            if case .object(let members) = reason, case .string(let code)? = members["Code"] { return code }
            return "None"
        }
        var error = DynamoError(
            "TransactionCanceledException",
            "Transaction cancelled, please refer cancellation reasons for specific reasons [\(codes.joined(separator: ", "))]"
        )
        error.details["CancellationReasons"] = .array(reasons)
        return error
    }
}
