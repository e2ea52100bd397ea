/// One metadata value of a GGUF file (the spec's gguf_metadata_value_type).
public enum GGUFValue: Sendable, Equatable, CustomStringConvertible {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16)
    case uint32(UInt32), int32(Int32), uint64(UInt64), int64(Int64)
    case float32(Float), float64(Double)
    case bool(Bool)
    case string(String)
    case array([GGUFValue])

    /// The value as an integer, if it is one of the integer types.
    public var int: Int? {
        switch self {
        case let .uint8(v): return Int(v)
        case let .int8(v): return Int(v)
        case let .uint16(v): return Int(v)
        case let .int16(v): return Int(v)
        case let .uint32(v): return Int(v)
        case let .int32(v): return Int(v)
        case let .uint64(v): return Int(exactly: v)
        case let .int64(v): return Int(v)
        default: return nil
        }
    }

    /// The value as a float, if it is numeric.
    public var float: Double? {
        switch self {
        case let .float32(v): return Double(v)
        case let .float64(v): return v
        default: return int.map(Double.init)
        }
    }

    public var string: String? { if case let .string(s) = self { return s } else { return nil } }
    public var bool: Bool? { if case let .bool(b) = self { return b } else { return nil } }
    public var array: [GGUFValue]? { if case let .array(a) = self { return a } else { return nil } }

    public var description: String {
        switch self {
        case let .string(s): return s.debugDescription
        case let .array(a):
            let head = a.prefix(8).map(\.description).joined(separator: ", ")
            return a.count > 8 ? "[\(head), … (\(a.count) items)]" : "[\(head)]"
        case let .bool(b): return String(b)
        case let .float32(v): return String(v)
        case let .float64(v): return String(v)
        default: return String(int ?? 0)
        }
    }
}
