import ArgumentParser
import GranaryNode
import GranaryStorage

struct StorageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage",
        abstract: "Exercise and check a storage engine directory (the write-ahead log).",
        subcommands: [Stress.self, Check.self])

    struct LogOptions: ParsableArguments {
        @Option(name: .customLong("dir"), help: "The log's directory (on a disk filesystem: O_DIRECT).")
        var directory: String

        @Option(name: .customLong("segment-bytes"), help: "Bytes per new segment file (a multiple of 4096).")
        var segmentBytes: Int = 64 << 20

        @Option(help: "How a group is made durable: fdatasync (write, then fdatasync) or dsync (one RWF_DSYNC write).")
        var durability: String = "fdatasync"

        func walOptions() throws -> WALOptions {
            var options = WALOptions()
            guard segmentBytes % 4096 == 0, segmentBytes >= options.groupBytesMax + 4096, segmentBytes <= 1 << 30 else {
                throw ValidationError("--segment-bytes must be a multiple of 4096 between \(options.groupBytesMax + 4096) and 1 GiB")
            }
            options.segmentBytes = segmentBytes
            switch durability {
            case "fdatasync": options.durability = .writeThenDataSync
            case "dsync": options.durability = .dataSyncedWrite
            default: throw ValidationError("--durability must be fdatasync or dsync")
            }
            return options
        }
    }

    struct Stress: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Append records from concurrent writers, printing 'ack <lsn> <key>' for each durable one.")

        @OptionGroup var log: LogOptions

        @Option(help: "Concurrent writers (1...1024).")
        var writers: Int = 16

        @Option(name: .customLong("value-bytes"), help: "Bytes of value per record (0...65536).")
        var valueBytes: Int = 100

        @Option(help: "Stop after this many seconds (at most 3600).")
        var seconds: Double = 10

        func run() throws {
            guard (1...1024).contains(writers) else { throw ValidationError("--writers must be 1...1024") }
            guard (0...65536).contains(valueBytes) else { throw ValidationError("--value-bytes must be 0...65536") }
            guard seconds > 0 && seconds <= 3600 else { throw ValidationError("--seconds must be in (0, 3600]") }
            var options = StorageExercise.StressOptions(directory: log.directory)
            options.writers = writers
            options.valueBytes = valueBytes
            options.seconds = seconds
            options.wal = try log.walOptions()
            _ = try StorageExercise.stress(options)
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Read a log back without changing it; exit 1 on corruption, 2 on a garbled record.")

        @OptionGroup var log: LogOptions

        @Flag(help: "Print 'record <lsn> <key>' for every record.")
        var print = false

        func run() throws {
            let (records, garbled) = try StorageExercise.check(directory: log.directory, wal: try log.walOptions(), printRecords: print)
            FileHandleStandardError.write("granary storage check: \(records) records, \(garbled) garbled\n")
            if garbled > 0 { throw ExitCode(2) }
        }
    }
}
