/// Evaluating conditions and reading document paths against an item.

extension Dictionary where Key == String, Value == AttributeValue {
    /// The value at `path`, or nil when any step is missing or of the wrong kind.
    public func value(at path: DocumentPath) -> AttributeValue? {
        var current: AttributeValue? = self[path.attributeName]
        for element in path.elements.dropFirst() {
            switch (element, current) {
            case (.attribute(let name), .m(let members)?): current = members[name]
            case (.index(let index), .l(let elements)?): current = index < elements.count ? elements[index] : nil
            default: return nil
            }
        }
        return current
    }
}

extension Condition {
    /// Whether the condition holds for `item` (nil: no item, every path missing).
    /// A comparison with a missing value or of mismatched types is false, as in DynamoDB,
    /// except `<>`, which holds.
    public func evaluate(_ item: Item?) -> Bool {
        let item = item ?? [:]
        switch self {
        case .compare(let left, let comparator, let right):
            // A missing value is unequal to anything, another missing value included; any
            // other comparison with a missing value is false.
            guard let a = left.resolve(item), let b = right.resolve(item) else { return comparator == .notEqual }
            switch comparator {
            case .equal: return a == b
            case .notEqual: return a != b
            default:
                guard let order = AttributeValue.compare(a, b) else { return false }
                switch comparator {
                case .less: return order < 0
                case .lessOrEqual: return order <= 0
                case .greater: return order > 0
                default: return order >= 0
                }
            }
        case .between(let subject, let lower, let upper):
            guard let value = subject.resolve(item), let low = lower.resolve(item), let high = upper.resolve(item),
                let above = AttributeValue.compare(value, low), let below = AttributeValue.compare(value, high)
            else { return false }
            return above >= 0 && below <= 0
        case .isIn(let subject, let options):
            guard let value = subject.resolve(item) else { return false }
            return options.contains { $0.resolve(item) == value }
        case .and(let left, let right): return left.evaluate(item) && right.evaluate(item)
        case .or(let left, let right): return left.evaluate(item) || right.evaluate(item)
        case .not(let inner): return !inner.evaluate(item)
        case .exists(let path): return item.value(at: path) != nil
        case .notExists(let path): return item.value(at: path) == nil
        case .hasType(let path, let type):
            guard let value = item.value(at: path), case .s(let name)? = type.resolve(item) else { return false }
            return value.typeName == name
        case .beginsWith(let subject, let prefix):
            switch (subject.resolve(item), prefix.resolve(item)) {
            case (.s(let text)?, .s(let start)?): return text.utf8.starts(with: start.utf8)
            case (.b(let bytes)?, .b(let start)?): return bytes.starts(with: start)
            default: return false
            }
        case .contains(let subject, let operand):
            guard let container = subject.resolve(item), let element = operand.resolve(item) else { return false }
            switch (container, element) {
            case (.s(let text), .s(let part)): return part.isEmpty || text.contains(part)
            case (.b(let bytes), .b(let part)): return part.isEmpty || bytes.firstRange(of: part) != nil
            case (.ss(let texts), .s(let text)): return texts.contains(text)
            case (.ns(let numbers), .n(let number)): return numbers.contains(number)
            case (.bs(let blobs), .b(let blob)): return blobs.contains(blob)
            case (.l(let elements), _): return elements.contains(element)
            default: return false
            }
        }
    }
}

extension Operand {
    /// The operand's value for `item`; nil when a path is missing or size does not apply.
    func resolve(_ item: Item) -> AttributeValue? {
        switch self {
        case .path(let path): return item.value(at: path)
        case .value(let value): return value
        case .size(let path):
            guard let size = item.value(at: path)?.size else { return nil }
            return .n(Number(size))
        case .ifNotExists, .listAppend, .plus, .minus:
            preconditionFailure("update operands are resolved by the update evaluator")
        }
    }
}

extension Condition {
    /// The top-level attributes the condition reads (Query refuses a filter on a key).
    public var attributeNames: Set<String> {
        var names: Set<String> = []
        collectNames(into: &names)
        return names
    }

    private func collectNames(into names: inout Set<String>) {
        func add(_ operand: Operand) {
            switch operand {
            case .path(let path), .size(let path): names.insert(path.attributeName)
            default: break
            }
        }
        switch self {
        case .compare(let left, _, let right), .beginsWith(let left, let right), .contains(let left, let right):
            add(left); add(right)
        case .between(let subject, let low, let high): add(subject); add(low); add(high)
        case .isIn(let subject, let options): add(subject); options.forEach(add)
        case .and(let left, let right), .or(let left, let right):
            left.collectNames(into: &names); right.collectNames(into: &names)
        case .not(let inner): inner.collectNames(into: &names)
        case .exists(let path), .notExists(let path), .hasType(let path, _): names.insert(path.attributeName)
        }
    }
}

extension AttributeValue {
    /// What `size()` returns: bytes of a string or binary, elements of a set, list or map;
    /// nil for the types without a size.
    public var size: Int? {
        switch self {
        case .s(let text): text.utf8.count
        case .b(let bytes): bytes.count
        case .ss(let texts): texts.count
        case .ns(let numbers): numbers.count
        case .bs(let blobs): blobs.count
        case .m(let members): members.count
        case .l(let elements): elements.count
        case .n, .bool, .null: nil
        }
    }
}
