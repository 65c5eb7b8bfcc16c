import Glibc

/// The `Date` header's value (RFC 9110's IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT"),
/// written straight into a response's bytes: every response carries one, as DynamoDB's do,
/// so it costs a clock read and some arithmetic: no formatter, no string, and no gmtime_r,
/// which takes glibc's time-zone lock, shared by every core, on each call.
enum HTTPDate {
    private static let weekdays: [[UInt8]] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"].map { Array($0.utf8) }
    private static let months: [[UInt8]] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .map { Array($0.utf8) }

    static func append(secondsSince1970 seconds: Int, to bytes: inout [UInt8]) {
        // The civil date of a day count: Howard Hinnant's civil_from_days, in 400-year eras.
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthFromMarch = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthFromMarch + 2) / 5 + 1
        let month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        let weekday = ((days % 7) + 11) % 7  // 1970-01-01 was a Thursday
        func two(_ value: Int) {
            bytes.append(UInt8(truncatingIfNeeded: 0x30 + value / 10))
            bytes.append(UInt8(truncatingIfNeeded: 0x30 + value % 10))
        }
        bytes.append(contentsOf: weekdays[weekday])
        bytes.append(contentsOf: [0x2C, 0x20])  // ", "
        two(day)
        bytes.append(0x20)
        bytes.append(contentsOf: months[month - 1])
        bytes.append(0x20)
        two(year / 100 % 100)
        two(year % 100)
        bytes.append(0x20)
        two(secondOfDay / 3600)
        bytes.append(0x3A)
        two(secondOfDay / 60 % 60)
        bytes.append(0x3A)
        two(secondOfDay % 60)
        bytes.append(contentsOf: " GMT".utf8)
    }

    static func now() -> Int { Int(time(nil)) }
}
