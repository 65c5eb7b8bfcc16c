import Foundation
import GranaryPaxos
import Testing

/// Readable transcripts of message exchanges, replayed (etcd-raft's testdata style): each
/// `> command` line drives the cluster, and the lines under it are what the replicas sent
/// (and what the command reports). A run must print exactly what the file says. After a
/// deliberate change in the protocol, `GRANARY_REWRITE_TRANSCRIPTS=1 swift test --filter
/// TranscriptTests` writes what runs now; read the diff before committing it.
@Suite struct TranscriptTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
        "transcripts")

    static var files: [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: directory.path))?.filter { $0.hasSuffix(".txt") }.sorted()
            ?? []
    }

    @Test func thereAreTranscripts() {
        #expect(Self.files.count >= 4)
    }

    @Test(arguments: files)
    func replay(_ name: String) throws {
        let url = Self.directory.appendingPathComponent(name)
        let text = try String(contentsOf: url, encoding: .utf8)
        let replayed = Transcript.replay(text)
        if ProcessInfo.processInfo.environment["GRANARY_REWRITE_TRANSCRIPTS"] == "1" {
            try replayed.write(to: url, atomically: true, encoding: .utf8)
            return
        }
        let expected = text.split(separator: "\n", omittingEmptySubsequences: false)
        let actual = replayed.split(separator: "\n", omittingEmptySubsequences: false)
        let firstDifference =
            (0..<min(expected.count, actual.count)).first { expected[$0] != actual[$0] }
            ?? min(expected.count, actual.count)
        #expect(
            replayed == text,
            "\(name): first difference at line \(firstDifference + 1): expected '\(firstDifference < expected.count ? expected[firstDifference] : "<end>")', got '\(firstDifference < actual.count ? actual[firstDifference] : "<end>")'"
        )
    }
}

/// The transcript language. Commands (node ids are numbers):
///   start 1,2,3 [log-only 3]  a group of fresh replicas with that founding membership
///   tick N [COUNT]            N's clock advances; what it sends is printed
///   deliver [N,...]           one round: every message in flight reaches its recipient (or
///                             only those to the listed nodes; the rest stay in flight)
///   drop [FROM->TO]           loses the messages in flight (all, or on one link)
///   propose N TEXT            a command at N: its slot, or "refused"
///   transfer N M | add N M | remove N M | compact N
///                             N hands leadership to M / adds or removes M / snapshots
///   status                    each replica: role, ballot, chosen, whether it serves strong reads
enum Transcript {
    static func replay(_ text: String) -> String {
        var cluster = Cluster()
        var output: [String] = []
        var skipping = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("> ") {
                output.append(String(line))
                output += run(line.dropFirst(2).split(separator: " ").map(String.init), &cluster)
                skipping = true
            } else if line.hasPrefix("#") || line.isEmpty {
                output.append(String(line))
                skipping = false
            } else if !skipping {
                output.append(String(line))
            }
        }
        return output.joined(separator: "\n")
    }

    static func ids(_ text: String) -> [NodeID] { text.split(separator: ",").map { NodeID($0)! } }

    static func run(_ words: [String], _ cluster: inout Cluster) -> [String] {
        let before = cluster.sent.count
        var report: [String] = []
        switch words.first {
        case "start":
            let logOnly = words.count > 3 && words[2] == "log-only" ? Set(ids(words[3])) : []
            cluster = Cluster(members: ids(words[1]), logOnly: logOnly)
            return []
        case "tick":
            cluster.tick(NodeID(words[1])!, words.count > 2 ? Int(words[2])! : 1)
        case "deliver":
            let only = words.count > 1 ? Set(ids(words[1])) : nil
            let batch = cluster.sent
            cluster.sent = []
            var kept: [Envelope] = []
            for envelope in batch {
                guard only?.contains(envelope.to) ?? true else { kept.append(envelope); continue }
                guard cluster.replicas[envelope.to] != nil else { continue }
                cluster.replicas[envelope.to]!.step(envelope)
                cluster.flush(envelope.to)
            }
            let produced = cluster.sent
            cluster.sent = kept + produced
            return produced.map(\.description)
        case "drop":
            if words.count > 1 {
                let link = words[1].split(separator: "-").map {
                    NodeID($0.trimmingCharacters(in: CharacterSet(charactersIn: ">")))!
                }
                cluster.sent.removeAll { $0.from == link[0] && $0.to == link[1] }
            } else {
                cluster.sent = []
            }
            return []
        case "propose":
            let id = NodeID(words[1])!
            let slot = cluster.replicas[id]!.propose(.value(Array(words[2].utf8)))
            report.append(slot.map { "slot \($0)" } ?? "refused")
            cluster.flush(id)
        case "transfer":
            let id = NodeID(words[1])!
            report.append(cluster.replicas[id]!.transferLeadership(to: NodeID(words[2])!) ? "transferring" : "refused")
            cluster.flush(id)
        case "add", "remove":
            let id = NodeID(words[1])!, member = NodeID(words[2])!
            let latest = cluster.replicas[id]!.latestMembership
            if words[0] == "add" && cluster.replicas[member] == nil { cluster.start(member) }
            let slot = cluster.replicas[id]!.proposeMembership(
                words[0] == "add" ? latest.adding(member) : latest.removing(member))
            report.append(slot.map { "slot \($0)" } ?? "refused")
            cluster.flush(id)
        case "compact":
            let id = NodeID(words[1])!
            cluster.compact(id)
            report.append("snapshot through \(cluster.replicas[id]!.durable.snapshot?.slot ?? 0)")
        case "status":
            for id in cluster.replicas.keys.sorted() {
                let replica = cluster.replicas[id]!
                report.append(
                    "\(id): \(replica.role) ballot \(replica.promised) chosen \(replica.chosen) members \(replica.latestMembership)"
                        + (replica.canServeStrongRead ? " serves strong reads" : ""))
            }
        default:
            report.append("unknown command: \(words.joined(separator: " "))")
        }
        return report + cluster.sent[before...].map(\.description)
    }
}
