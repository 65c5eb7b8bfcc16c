/// Applying an update expression's actions to an item, as DynamoDB does: every right-hand
/// side is evaluated against the item as it was before the update, then the actions are
/// applied in order.
public enum UpdateEvaluation {
    static let invalidPath = DynamoError.validation(
        "The document path provided in the update expression is invalid for update")
    static let wrongType = DynamoError.validation("An operand in the update expression has an incorrect data type")

    /// The item after `actions`. `original` is the stored item, or a new one holding only
    /// the key when nothing was stored.
    public static func apply(_ actions: [UpdateAction], to original: Item) throws(DynamoError) -> Item {
        // Resolve every SET value against the original item first.
        var resolved: [AttributeValue?] = []
        resolved.reserveCapacity(actions.count)
        for action in actions {
            if case .set(_, let operand) = action {
                resolved.append(try value(of: operand, in: original))
            } else {
                resolved.append(nil)
            }
        }
        var item = original
        var removals: [DocumentPath] = []
        for (action, value) in zip(actions, resolved) {
            switch action {
            case .set(let path, _):
                try assign(value!, at: path, in: &item)
            case .remove(let path):
                removals.append(path)
            case .add(let path, let operand):
                let sum: AttributeValue
                switch (item.value(at: path), operand) {
                case (nil, _): sum = operand
                case (.n(let current)?, .n(let increment)): sum = .n(try current + increment)
                case (.ss(let current)?, .ss(let more)): sum = .ss(current + more.filter { !current.contains($0) })
                case (.ns(let current)?, .ns(let more)): sum = .ns(current + more.filter { !current.contains($0) })
                case (.bs(let current)?, .bs(let more)): sum = .bs(current + more.filter { !current.contains($0) })
                default: throw wrongType
                }
                try assign(sum, at: path, in: &item)
            case .delete(let path, let operand):
                let remaining: AttributeValue?
                switch (item.value(at: path), operand) {
                case (nil, _): continue
                case (.ss(let current)?, .ss(let less)):
                    remaining = setOrNil(.ss(current.filter { !less.contains($0) }))
                case (.ns(let current)?, .ns(let less)):
                    remaining = setOrNil(.ns(current.filter { !less.contains($0) }))
                case (.bs(let current)?, .bs(let less)):
                    remaining = setOrNil(.bs(current.filter { !less.contains($0) }))
                default: throw wrongType
                }
                if let remaining { try assign(remaining, at: path, in: &item) } else { removals.append(path) }
            }
        }
        // Removals last, list elements from the highest index down, so that the indexes
        // written in the expression all refer to the list as it was.
        func lastIndex(_ path: DocumentPath) -> Int {
            if case .index(let index)? = path.elements.last { return index }
            return -1
        }
        let ordered = removals.sorted { lastIndex($0) > lastIndex($1) }
        for path in ordered { remove(path, from: &item) }
        return item
    }

    private static func setOrNil(_ value: AttributeValue) -> AttributeValue? {
        switch value {
        case .ss(let texts) where texts.isEmpty: nil
        case .ns(let numbers) where numbers.isEmpty: nil
        case .bs(let blobs) where blobs.isEmpty: nil
        default: value
        }
    }

    static func value(of operand: Operand, in item: Item) throws(DynamoError) -> AttributeValue {
        switch operand {
        case .value(let value):
            return value
        case .path(let path):
            guard let value = item.value(at: path) else {
                throw .validation("The provided expression refers to an attribute that does not exist in the item")
            }
            return value
        case .size:
            throw .validation(
                "Invalid UpdateExpression: The function is not allowed in an update expression; function: size")
        case .ifNotExists(let path, let fallback):
            if let value = item.value(at: path) { return value }
            return try value(of: fallback, in: item)
        case .listAppend(let first, let second):
            guard case .l(let head) = try value(of: first, in: item),
                case .l(let tail) = try value(of: second, in: item)
            else {
                throw wrongType
            }
            return .l(head + tail)
        case .plus(let left, let right), .minus(let left, let right):
            guard case .n(let a) = try value(of: left, in: item), case .n(let b) = try value(of: right, in: item) else {
                throw wrongType
            }
            if case .plus = operand { return .n(try a + b) }
            return .n(try a - b)
        }
    }

    /// Sets the value at `path`: the parent must exist and be a map (for a name) or a list
    /// (for an index; an index past the end appends).
    static func assign(_ value: AttributeValue, at path: DocumentPath, in item: inout Item) throws(DynamoError) {
        let name = path.attributeName
        if path.elements.count == 1 { item[name] = value; return }
        guard var root = item[name] else { throw invalidPath }
        try assign(value, at: path.elements.dropFirst(), in: &root)
        item[name] = root
    }

    private static func assign(
        _ value: AttributeValue, at elements: ArraySlice<PathElement>, in container: inout AttributeValue
    ) throws(DynamoError) {
        let element = elements.first!
        let rest = elements.dropFirst()
        switch (element, container) {
        case (.attribute(let name), .m(var members)):
            if rest.isEmpty {
                members[name] = value
            } else {
                guard var child = members[name] else { throw invalidPath }
                try assign(value, at: rest, in: &child)
                members[name] = child
            }
            container = .m(members)
        case (.index(let index), .l(var list)):
            if rest.isEmpty {
                if index < list.count { list[index] = value } else { list.append(value) }
            } else {
                guard index < list.count else { throw invalidPath }
                var child = list[index]
                try assign(value, at: rest, in: &child)
                list[index] = child
            }
            container = .l(list)
        default:
            throw invalidPath
        }
    }

    /// Removes the value at `path`; a missing path is no change.
    static func remove(_ path: DocumentPath, from item: inout Item) {
        let name = path.attributeName
        if path.elements.count == 1 { item[name] = nil; return }
        guard var root = item[name] else { return }
        remove(path.elements.dropFirst(), from: &root)
        item[name] = root
    }

    private static func remove(_ elements: ArraySlice<PathElement>, from container: inout AttributeValue) {
        let element = elements.first!
        let rest = elements.dropFirst()
        switch (element, container) {
        case (.attribute(let name), .m(var members)):
            if rest.isEmpty {
                members[name] = nil
            } else if var child = members[name] {
                remove(rest, from: &child)
                members[name] = child
            }
            container = .m(members)
        case (.index(let index), .l(var list)) where index < list.count:
            if rest.isEmpty {
                list.remove(at: index)
            } else {
                remove(rest, from: &list[index])
            }
            container = .l(list)
        default:
            return
        }
    }
}

/// ProjectionExpression: the parts of an item a read returns.
public enum Projection {
    public static func apply(_ paths: [DocumentPath], to item: Item) -> Item {
        var result: Item = [:]
        for path in paths {
            guard let value = item.value(at: path) else { continue }
            if path.elements.count == 1 {
                result[path.attributeName] = value
                continue
            }
            // Rebuild the path's containers in the result; list elements keep their order
            // but close up (DynamoDB returns projected list elements compacted).
            var partial = result[path.attributeName]
            insert(value, at: path.elements.dropFirst(), into: &partial, shape: item[path.attributeName]!)
            result[path.attributeName] = partial
        }
        return result
    }

    private static func insert(
        _ value: AttributeValue, at elements: ArraySlice<PathElement>, into partial: inout AttributeValue?,
        shape: AttributeValue
    ) {
        guard let element = elements.first else { partial = value; return }
        let rest = elements.dropFirst()
        switch (element, shape) {
        case (.attribute(let name), .m(let members)):
            var map: [String: AttributeValue] = [:]
            if case .m(let existing)? = partial { map = existing }
            var child = map[name]
            insert(value, at: rest, into: &child, shape: members[name]!)
            map[name] = child
            partial = .m(map)
        case (.index(let index), .l(let list)):
            var elementsSoFar: [AttributeValue] = []
            if case .l(let existing)? = partial { elementsSoFar = existing }
            var child: AttributeValue? = nil
            insert(value, at: rest, into: &child, shape: list[index])
            if let child { elementsSoFar.append(child) }
            partial = .l(elementsSoFar)
        default:
            return
        }
    }
}
