// The tensor element types of GGUF (ggml_type), as data: block size, block bytes,
// and a row dequantiser. Only this module knows bit layouts; the engine asks for f32.

public enum GGMLType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q4_1 = 3
    case q5_0 = 6
    case q5_1 = 7
    case q8_0 = 8
    case q4_K = 12
    case q5_K = 13
    case q6_K = 14
    case bf16 = 30

    /// Elements per block.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: return 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0: return 32
        case .q4_K, .q5_K, .q6_K: return 256
        }
    }

    /// Bytes per block (ggml's type_size).
    public var blockBytes: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .q4_0: return BlockQ4_0.bytes
        case .q4_1: return BlockQ4_1.bytes
        case .q5_0: return BlockQ5_0.bytes
        case .q5_1: return BlockQ5_1.bytes
        case .q8_0: return BlockQ8_0.bytes
        case .q4_K: return BlockQ4_K.bytes
        case .q5_K: return BlockQ5_K.bytes
        case .q6_K: return BlockQ6_K.bytes
        }
    }

    public var description: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q5_0: return "Q5_0"
        case .q5_1: return "Q5_1"
        case .q8_0: return "Q8_0"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        }
    }

    /// Bytes needed for `count` elements, or nil if `count` is not a whole number of
    /// blocks or the size overflows.
    public func byteCount(elements count: Int) -> Int? {
        guard count >= 0, count % blockSize == 0 else { return nil }
        let (bytes, overflow) = (count / blockSize).multipliedReportingOverflow(by: blockBytes)
        return overflow ? nil : bytes
    }

    /// Dequantises `count` elements (a whole number of blocks) from `src` into `dst`.
    public func dequantize(_ src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>, count: Int) {
        precondition(count % blockSize == 0, "dequantize: \(count) is not a multiple of \(blockSize)")
        let blocks = count / blockSize
        switch self {
        case .f32:
            UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: count * 4)
        case .f16:
            halfToFloatTable.withUnsafeBufferPointer { table in
                for i in 0..<count { dst[i] = table[Int(loadU16(src, 2 * i))] }
            }
        case .bf16:
            for i in 0..<count { dst[i] = bfloat16ToFloat(loadU16(src, 2 * i)) }
        case .q4_0: BlockQ4_0.dequantize(src, dst, blocks: blocks)
        case .q4_1: BlockQ4_1.dequantize(src, dst, blocks: blocks)
        case .q5_0: BlockQ5_0.dequantize(src, dst, blocks: blocks)
        case .q5_1: BlockQ5_1.dequantize(src, dst, blocks: blocks)
        case .q8_0: BlockQ8_0.dequantize(src, dst, blocks: blocks)
        case .q4_K: BlockQ4_K.dequantize(src, dst, blocks: blocks)
        case .q5_K: BlockQ5_K.dequantize(src, dst, blocks: blocks)
        case .q6_K: BlockQ6_K.dequantize(src, dst, blocks: blocks)
        }
    }
}
