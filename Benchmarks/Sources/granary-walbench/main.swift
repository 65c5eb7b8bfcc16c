// granary-walbench: durable appends to the write-ahead log from N concurrent writers for a
// fixed time; prints one JSON line (appends per second, latency percentiles, groups per
// second) for tools/bench-wal to set beside fio's write+fdatasync on the same filesystem.
//
//     granary-walbench --dir PATH --writers 16 --record-bytes 100 --seconds 5 [--durability dsync|fdatasync]
import BenchmarkSupport
import Dispatch
import Glibc
import GranaryIO
import GranaryStorage
import Histogram

struct Options {
    var directory = ""
    var writers = 1
    var recordBytes = 100
    var seconds = 5.0
    var durability = "dsync"

    init(_ arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        while let flag = iterator.next() {
            guard let value = iterator.next() else { fail("granary-walbench", "\(flag) needs a value") }
            switch flag {
            case "--dir": directory = value
            case "--writers": writers = Int(value) ?? 0
            case "--record-bytes": recordBytes = Int(value) ?? -1
            case "--seconds": seconds = Double(value) ?? 0
            case "--durability": durability = value
            default: fail("granary-walbench", "unknown flag \(flag)")
            }
        }
        guard !directory.isEmpty, (1...4096).contains(writers), (0...(1 << 20)).contains(recordBytes), seconds > 0,
            ["fdatasync", "dsync"].contains(durability)
        else {
            fail(
                "granary-walbench",
                "usage: granary-walbench --dir PATH --writers N --record-bytes B --seconds S [--durability fdatasync|dsync]"
            )
        }
    }
}

/// Results, touched only on the reactor thread; read after the semaphore.
final class Tally: @unchecked Sendable {
    var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    var appends = 0
    var errors = 0
    var elapsed = 0.0
    var segments = 0
}

let options = Options(CommandLine.arguments)
if mkdir(options.directory, 0o755) != 0 && errno != EEXIST {
    fail("granary-walbench", "cannot create \(options.directory)")
}
let group = try ReactorGroup(cpus: [ReactorGroup.availableCPUs().first])
let reactor = group.reactors[0]
let tally = Tally()
runAndWait(on: reactor) {
    var walOptions = WALOptions()
    walOptions.durability = options.durability == "dsync" ? .dataSyncedWrite : .writeThenDataSync
    let storage = ReactorStorage(path: options.directory, reactor: reactor)
    let (log, _) = try! await WriteAheadLog.open(storage: storage, options: walOptions, executor: reactor)
    let record = [UInt8](repeating: 0x5A, count: options.recordBytes)
    let start = nowNanoseconds()
    let deadline = start + UInt64(options.seconds * 1e9)
    await withTaskGroup(of: Void.self) { writers in
        for _ in 0..<options.writers {
            writers.addTask {
                while true {
                    let began = nowNanoseconds()
                    if began >= deadline { return }
                    do {
                        _ = try await log.append(record)
                        tally.appends += 1
                    } catch {
                        tally.errors += 1
                        return
                    }
                    _ = tally.histogram.record(nowNanoseconds() - began)
                }
            }
        }
    }
    tally.elapsed = Double(nowNanoseconds() - start) / 1e9
    tally.segments = await log.segmentCount
    await log.close()
}
group.stop()
let microseconds = { (quantile: Double) in Double(tally.histogram.valueAtPercentile(quantile)) / 1000 }
print(
    """
    {"tool":"granary-wal","durability":"\(options.durability)","writers":\(options.writers),\
    "record_bytes":\(options.recordBytes),"appends_per_s":\(Int(Double(tally.appends) / tally.elapsed)),\
    "p50_us":\(microseconds(50)),"p99_us":\(microseconds(99)),"errors":\(tally.errors)}
    """)
