import Glibc

/// The `Date` header's value (RFC 9110's IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT"),
/// written straight into a response's bytes: every response carries one, as DynamoDB's do,
/// so it costs a clock read and a gmtime_r, no formatter and no string.
enum HTTPDate {
    private static let days: [[UInt8]] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"].map { Array($0.utf8) }
    private static let months: [[UInt8]] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .map { Array($0.utf8) }

    static func append(secondsSince1970 seconds: Int, to bytes: inout [UInt8]) {
        var clock = time_t(seconds)
        var parts = tm()
        gmtime_r(&clock, &parts)
        func two(_ value: Int32) {
            bytes.append(UInt8(truncatingIfNeeded: 0x30 + value / 10))
            bytes.append(UInt8(truncatingIfNeeded: 0x30 + value % 10))
        }
        bytes.append(contentsOf: days[Int(parts.tm_wday) % 7])
        bytes.append(contentsOf: [0x2C, 0x20])  // ", "
        two(parts.tm_mday)
        bytes.append(0x20)
        bytes.append(contentsOf: months[Int(parts.tm_mon) % 12])
        bytes.append(0x20)
        let year = parts.tm_year + 1900
        two(year / 100)
        two(year % 100)
        bytes.append(0x20)
        two(parts.tm_hour)
        bytes.append(0x3A)
        two(parts.tm_min)
        bytes.append(0x3A)
        two(parts.tm_sec)
        bytes.append(contentsOf: " GMT".utf8)
    }

    static func now() -> Int { Int(time(nil)) }
}
