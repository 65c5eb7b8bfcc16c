import Dispatch
import Foundation
import GranaryIO
import GranaryModel

/// Reads back every record a verify log names and compares it with what was acknowledged.
public struct VerifyCheck {
    public struct Report: Sendable, CustomStringConvertible {
        public var records = 0
        /// Records absent, or a field older than its last acknowledged write.
        public var lost = 0
        /// A field whose bytes are not what any write of this layout sent.
        public var garbled = 0
        /// Records that could not be read (an error answer or no answer).
        public var unreadable = 0
        public var examples: [String] = []

        public var passed: Bool { lost == 0 && garbled == 0 && unreadable == 0 }

        public var description: String {
            var text = "checked \(records) records: \(lost) lost, \(garbled) garbled, \(unreadable) unreadable"
            for example in examples { text += "\n  \(example)" }
            return text
        }

        mutating func merge(_ other: Report) {
            records += other.records
            lost += other.lost
            garbled += other.garbled
            unreadable += other.unreadable
            examples += other.examples.prefix(max(0, 10 - examples.count))
        }
    }

    public let endpoint: Endpoint
    public let credentials: Credentials?
    public let path: String
    public let concurrency: Int

    public init(endpoint: Endpoint, credentials: Credentials?, path: String, concurrency: Int) {
        self.endpoint = endpoint
        self.credentials = credentials
        self.path = path
        self.concurrency = concurrency
    }

    public func execute() throws -> Report {
        let (header, expected) = try VerifyLog.read(path: path)
        let layout = header.layout
        let records = expected.sorted { $0.key < $1.key }
        let endpoint = endpoint, credentials = credentials, concurrency = max(1, concurrency)
        return try onReactor { reactor in
            let reports = try await withThrowingTaskGroup(of: Report.self) { group in
                for worker in 0..<concurrency {
                    group.addTask(executorPreference: reactor) {
                        let client = DynamoClient(
                            reactor: reactor, endpoint: endpoint, credentials: credentials, timeout: .seconds(30))
                        defer { client.close() }
                        var report = Report()
                        for (record, fields) in records[worker...].enumerated().filter({ $0.offset % concurrency == 0 })
                            .map(\.element)
                        {
                            report.merge(
                                await Self.check(record: record, fields: fields, layout: layout, client: client))
                        }
                        return report
                    }
                }
                var total = Report()
                for try await report in group { total.merge(report) }
                return total
            }
            return reports
        }
    }

    static func check(record: Int, fields: [Int], layout: RecordLayout, client: DynamoClient) async -> Report {
        var report = Report(records: 1)
        let body = #"{"TableName":"\#(layout.table)","Key":{\#(layout.keyJSON(record))},"ConsistentRead":true}"#
        guard case .success(let bytes) = await client.call("GetItem", body), let answer = try? JSON.parse(bytes) else {
            report.unreadable = 1
            report.examples.append("record \(record): could not be read")
            return report
        }
        guard let item = answer["Item"] else {
            report.lost = 1
            report.examples.append(
                "record \(record) (\(layout.partitionKey(record))): missing, acknowledged through sequence \(fields.max() ?? -1)"
            )
            return report
        }
        for (field, acknowledged) in fields.enumerated() where acknowledged >= 0 {
            let name = RecordLayout.fieldName(field)
            guard case .string(let value)? = item[name]?["S"] else {
                report.lost = 1
                report.examples.append("record \(record): \(name) missing, acknowledged sequence \(acknowledged)")
                return report
            }
            guard let sequence = layout.sequence(inValue: value, record: record, field: field) else {
                report.garbled = 1
                report.examples.append("record \(record): \(name) holds bytes no write sent: \(value.prefix(40))...")
                return report
            }
            if sequence < acknowledged {
                report.lost = 1
                report.examples.append(
                    "record \(record): \(name) at sequence \(sequence), acknowledged \(acknowledged)")
                return report
            }
        }
        return report
    }
}
