/// Everything that can be wrong with a model file, each naming the problem and where.
public enum GGUFError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, reason: String)
    case badMagic(found: UInt32)
    case unsupportedVersion(UInt32)
    case truncated(what: String, offset: Int)
    case absurdCount(what: String, count: UInt64)
    case invalidUTF8(what: String, offset: Int)
    case unknownValueType(UInt32, key: String)
    case nestingTooDeep(key: String)
    case duplicateKey(String)
    case duplicateTensor(String)
    case badAlignment(UInt64)
    case unknownTensorType(UInt32, tensor: String)
    case badDimensions(tensor: String, dims: [UInt64])
    case tensorOutOfBounds(tensor: String, offset: UInt64, bytes: UInt64, dataBytes: UInt64)
    case misalignedTensor(tensor: String, offset: UInt64, alignment: Int)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason):
            return "cannot open model file \(path): \(reason)"
        case let .badMagic(found):
            return "not a GGUF file: magic is 0x\(String(found, radix: 16)), expected 0x46554747 (\"GGUF\")"
        case let .unsupportedVersion(v):
            return "GGUF version \(v) is not supported (twinbrain reads versions 2 and 3)"
        case let .truncated(what, offset):
            return "model file is truncated: \(what) at byte \(offset) runs past the end of the file"
        case let .absurdCount(what, count):
            return "model file is damaged: \(what) is \(count), more than the file could hold"
        case let .invalidUTF8(what, offset):
            return "model file is damaged: \(what) at byte \(offset) is not valid UTF-8"
        case let .unknownValueType(type, key):
            return "model file is damaged: metadata key '\(key)' has unknown value type \(type)"
        case let .nestingTooDeep(key):
            return "model file is damaged: metadata key '\(key)' nests arrays too deeply"
        case let .duplicateKey(key):
            return "model file is damaged: metadata key '\(key)' appears twice"
        case let .duplicateTensor(name):
            return "model file is damaged: tensor '\(name)' appears twice"
        case let .badAlignment(a):
            return "model file is damaged: general.alignment is \(a), expected a power of two"
        case let .unknownTensorType(type, tensor):
            return "tensor '\(tensor)' has type \(type), which twinbrain cannot read "
                + "(supported: \(GGMLTypeNames.supported)); convert the model to one of these"
        case let .badDimensions(tensor, dims):
            return "model file is damaged: tensor '\(tensor)' has impossible dimensions \(dims)"
        case let .tensorOutOfBounds(tensor, offset, bytes, dataBytes):
            return "model file is truncated or damaged: tensor '\(tensor)' needs bytes \(offset)..<\(offset + bytes) "
                + "of a data section of \(dataBytes) bytes"
        case let .misalignedTensor(tensor, offset, alignment):
            return "model file is damaged: tensor '\(tensor)' starts at \(offset), not a multiple of \(alignment)"
        }
    }
}

import Kernels

enum GGMLTypeNames {
    static var supported: String { GGMLType.allCases.map(\.description).joined(separator: ", ") }
}
