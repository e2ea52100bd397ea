// Half-precision formats found in GGUF files: IEEE binary16 (F16) and bfloat16 (BF16).
//
// F16 goes through a 64K-entry table: the baseline x86-64 target has no F16C
// instruction, and a table lookup beats the soft-float conversion by far.
import CQuant

/// All 65,536 f16 bit patterns as f32, built once.
public let halfToFloatTable: [Float] = (0...0xFFFF).map { halfToFloatExact(UInt16($0)) }

/// Exact binary16 -> binary32 conversion (subnormals, infinities and NaN included).
@inlinable
public func halfToFloatExact(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = UInt32(h >> 10) & 0x1F
    var mantissa = UInt32(h & 0x3FF)
    if exponent == 0 {
        if mantissa == 0 { return Float(bitPattern: sign) }
        // Subnormal: normalise it.
        var e: UInt32 = 127 - 15 + 1
        while mantissa & 0x400 == 0 { mantissa <<= 1; e -= 1 }
        mantissa &= 0x3FF
        return Float(bitPattern: sign | (e << 23) | (mantissa << 13))
    }
    if exponent == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13)) }
    return Float(bitPattern: sign | ((exponent + 127 - 15) << 23) | (mantissa << 13))
}

/// f16 bits -> f32 by table.
@inline(__always)
public func halfToFloat(_ h: UInt16) -> Float {
    halfToFloatTable.withUnsafeBufferPointer { $0[Int(h)] }
}

/// bfloat16 is the top half of an f32.
@inline(__always)
public func bfloat16ToFloat(_ b: UInt16) -> Float {
    Float(bitPattern: UInt32(b) << 16)
}

/// `count` floats rounded to f16 into `out` (F16C when the CPU has it): an f16 KV cache's rows.
public func storeHalves(_ x: UnsafePointer<Float>, into out: UnsafeMutableRawPointer, count: Int) {
    cq_store_half(x, out, count)
}

/// f32 -> f16 bits, round to nearest even (used by tests and by writers of f16 data).
public func floatToHalf(_ f: Float) -> UInt16 {
    Float16(f).bitPattern
}

/// Reads a little-endian u16 at a possibly unaligned address.
@inline(__always)
public func loadU16(_ p: UnsafeRawPointer, _ offset: Int) -> UInt16 {
    UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
}
