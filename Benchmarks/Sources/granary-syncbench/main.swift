// granary-syncbench: the floor under the write-ahead log. One 4 KiB O_DIRECT write made
// durable at a time, in a loop, for 3 seconds, three ways: through the reactor as a write
// then an fdatasync ("split"), through the reactor as one RWF_DSYNC write ("dsync"), and
// as blocking pwrite and fdatasync system calls on the same thread ("blocking", what fio's
// psync engine does). Comparing it with granary-walbench's one-writer figure shows what
// the log's own layers cost.
//
//     granary-syncbench split|dsync|blocking [--dir PATH]
import CShims
import BenchmarkSupport
import Dispatch
import Glibc
import GranaryIO

/// Results, touched only on the reactor thread; read after the semaphore.
final class Tally: @unchecked Sendable {
    var operations = 0
    var latencies: [UInt64] = []
}

let arguments = CommandLine.arguments
guard arguments.count >= 2, ["split", "dsync", "blocking"].contains(arguments[1]) else {
    print("usage: granary-syncbench split|dsync|blocking [--dir PATH]")
    exit(2)
}
let mode = arguments[1]
let directory = arguments.count >= 4 && arguments[2] == "--dir" ? arguments[3] : ".build/bench-data"
mkdir(directory, 0o755)
let path = directory + "/syncbench.dat"
let group = try ReactorGroup(cpus: [ReactorGroup.availableCPUs().first])
let reactor = group.reactors[0]
let tally = Tally()
runAndWait(on: reactor) {
    let descriptor = open(path, O_RDWR | O_CREAT | granary_O_DIRECT, 0o644)
    precondition(descriptor >= 0, "cannot open \(path)")
    var memory: UnsafeMutableRawPointer?
    posix_memalign(&memory, 4096, 4096)
    let buffer = memory!
    memset(buffer, 0x5A, 4096)
    let bytes = UnsafeRawBufferPointer(start: buffer, count: 4096)
    // Lay the file out first, so every timed write overwrites written blocks.
    for block in 0..<4096 { _ = pwrite(descriptor, buffer, 4096, off_t(block * 4096)) }
    fdatasync(descriptor)
    let deadline = nowNanoseconds() + 3_000_000_000
    var block: UInt64 = 0
    while nowNanoseconds() < deadline {
        let began = nowNanoseconds()
        switch mode {
        case "split":
            _ = try! await reactor.write(descriptor, from: bytes, at: block * 4096)
            try! await reactor.synchronizeData(descriptor)
        case "dsync":
            _ = try! await reactor.write(descriptor, from: bytes, at: block * 4096, durable: true)
        default:
            _ = pwrite(descriptor, buffer, 4096, off_t(block * 4096))
            fdatasync(descriptor)
        }
        tally.latencies.append(nowNanoseconds() - began)
        block = (block + 1) % 4096
        tally.operations += 1
    }
    close(descriptor)
    unlink(path)
}
group.stop()
tally.latencies.sort()
print(
    """
    {"tool":"granary-syncbench","mode":"\(mode)","ops_per_s":\(tally.operations / 3),\
    "p50_us":\(Double(tally.latencies[tally.latencies.count / 2]) / 1000)}
    """)
