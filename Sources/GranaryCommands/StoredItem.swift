import GranaryModel

/// An item in the form a partition stores and returns it (`ItemCodec`): a reader decodes
/// only what it must look into (a filter, a projection) and writes the rest out as it is.
public enum StoredItem {
    public static func decode(_ stored: [UInt8]) throws(DynamoError) -> Item {
        do { return try ItemCodec.decode(stored) } catch { throw corrupt(error) }
    }

    /// Writes the item's DynamoDB JSON without decoding it.
    public static func writeJSON(_ stored: [UInt8], to output: inout [UInt8]) throws(DynamoError) {
        do { try ItemCodec.writeJSON(stored, to: &output) } catch { throw corrupt(error) }
    }

    /// DynamoDB's size of the item, without decoding it.
    public static func size(_ stored: [UInt8]) throws(DynamoError) -> Int {
        do { return try ItemCodec.storedSize(stored) } catch { throw corrupt(error) }
    }

    /// Whether the item has a top-level attribute named `name`, without decoding it.
    public static func has(_ name: String, in stored: [UInt8]) throws(DynamoError) -> Bool {
        do { return try ItemCodec.hasAttribute(named: name, in: stored) } catch { throw corrupt(error) }
    }

    private static func corrupt(_ error: ItemCodec.DecodingError) -> DynamoError {
        DynamoError("InternalServerError", "\(error)")
    }
}
