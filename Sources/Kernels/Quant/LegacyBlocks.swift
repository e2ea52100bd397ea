// ggml's 32-element block formats (ggml-common.h). Each block stores one or two
// f16 constants followed by packed quants; element order is given per type.

/// Q4_0, 18 bytes, 4.5 bits/weight: `d: f16, qs: [16]u8`.
/// Element j (0..<16) is the low nibble of qs[j], element j+16 the high nibble; x = (q - 8) * d.
public enum BlockQ4_0 {
    public static let bytes = 18
    static func dequantize(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, blocks: Int) {
        for b in 0..<blocks {
            let block = src + b * bytes
            let out = dst + b * 32
            let d = halfToFloat(loadU16(block, 0))
            let qs = (block + 2).assumingMemoryBound(to: UInt8.self)
            for j in 0..<16 {
                out[j] = Float(Int(qs[j] & 0x0F) - 8) * d
                out[j + 16] = Float(Int(qs[j] >> 4) - 8) * d
            }
        }
    }
}

/// Q4_1, 20 bytes, 5 bits/weight: `d: f16, m: f16, qs: [16]u8`; x = q * d + m, nibble order as Q4_0.
public enum BlockQ4_1 {
    public static let bytes = 20
    static func dequantize(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, blocks: Int) {
        for b in 0..<blocks {
            let block = src + b * bytes
            let out = dst + b * 32
            let d = halfToFloat(loadU16(block, 0))
            let m = halfToFloat(loadU16(block, 2))
            let qs = (block + 4).assumingMemoryBound(to: UInt8.self)
            for j in 0..<16 {
                out[j] = Float(qs[j] & 0x0F) * d + m
                out[j + 16] = Float(qs[j] >> 4) * d + m
            }
        }
    }
}

/// Q5_0, 22 bytes, 5.5 bits/weight: `d: f16, qh: u32 (LE), qs: [16]u8`.
/// Bit j of qh is the fifth bit of element j, bit j+16 that of element j+16; x = (q - 16) * d.
public enum BlockQ5_0 {
    public static let bytes = 22
    static func dequantize(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, blocks: Int) {
        for b in 0..<blocks {
            let block = src + b * bytes
            let out = dst + b * 32
            let d = halfToFloat(loadU16(block, 0))
            let qh = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
            let qs = (block + 6).assumingMemoryBound(to: UInt8.self)
            for j in 0..<16 {
                let h0 = ((qh >> UInt32(j)) << 4) & 0x10
                let h1 = (qh >> UInt32(j + 12)) & 0x10
                out[j] = Float(Int32(UInt32(qs[j] & 0x0F) | h0) - 16) * d
                out[j + 16] = Float(Int32(UInt32(qs[j] >> 4) | h1) - 16) * d
            }
        }
    }
}

/// Q5_1, 24 bytes, 6 bits/weight: `d: f16, m: f16, qh: u32 (LE), qs: [16]u8`; x = q * d + m, bits as Q5_0.
public enum BlockQ5_1 {
    public static let bytes = 24
    static func dequantize(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, blocks: Int) {
        for b in 0..<blocks {
            let block = src + b * bytes
            let out = dst + b * 32
            let d = halfToFloat(loadU16(block, 0))
            let m = halfToFloat(loadU16(block, 2))
            let qh = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            let qs = (block + 8).assumingMemoryBound(to: UInt8.self)
            for j in 0..<16 {
                let h0 = ((qh >> UInt32(j)) << 4) & 0x10
                let h1 = (qh >> UInt32(j + 12)) & 0x10
                out[j] = Float(UInt32(qs[j] & 0x0F) | h0) * d + m
                out[j + 16] = Float(UInt32(qs[j] >> 4) | h1) * d + m
            }
        }
    }
}

/// Q8_0, 34 bytes, 8.5 bits/weight: `d: f16, qs: [32]i8`; x = q * d.
public enum BlockQ8_0 {
    public static let bytes = 34
    static func dequantize(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, blocks: Int) {
        for b in 0..<blocks {
            let block = src + b * bytes
            let out = dst + b * 32
            let d = halfToFloat(loadU16(block, 0))
            let qs = (block + 2).assumingMemoryBound(to: Int8.self)
            for j in 0..<32 { out[j] = Float(qs[j]) * d }
        }
    }
}
