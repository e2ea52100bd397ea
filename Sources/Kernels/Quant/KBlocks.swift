// ggml's 256-element "k-quant" super-blocks (ggml-common.h, QK_K = 256).

/// 6-bit scale and min number `j` (0..<8) of the 12-byte packed scales of Q4_K and Q5_K.
/// Scales 0-3 are the low 6 bits of bytes 0-3 (mins: bytes 4-7); scales 4-7 take their
/// low 4 bits from bytes 8-11 and their top 2 bits from the spare bits of bytes 0-3 (mins: 4-7).
@inline(__always)
func scaleMinK4(_ j: Int, _ q: UnsafePointer<UInt8>) -> (scale: UInt8, min: UInt8) {
    if j < 4 { return (q[j] & 63, q[j + 4] & 63) }
    return ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
}

/// Q4_K, 144 bytes, 4.5 bits/weight: `d: f16, dmin: f16, scales: [12]u8, qs: [128]u8`.
/// Eight sub-blocks of 32; each 64 elements use 32 bytes of qs: low nibbles first, then high.
/// x = d * scale * q - dmin * min.
public enum BlockQ4_K {
    public static let bytes = 144
    static func dequantize(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, blocks: Int) {
        for b in 0..<blocks {
            let block = src + b * bytes
            var out = dst + b * 256
            let d = halfToFloat(loadU16(block, 0))
            let dmin = halfToFloat(loadU16(block, 2))
            let scales = (block + 4).assumingMemoryBound(to: UInt8.self)
            var q = (block + 16).assumingMemoryBound(to: UInt8.self)
            var sub = 0
            for _ in 0..<4 {
                let (sc1, m1) = scaleMinK4(sub, scales)
                let (sc2, m2) = scaleMinK4(sub + 1, scales)
                let d1 = d * Float(sc1), min1 = dmin * Float(m1)
                let d2 = d * Float(sc2), min2 = dmin * Float(m2)
                for l in 0..<32 { out[l] = d1 * Float(q[l] & 0x0F) - min1 }
                for l in 0..<32 { out[l + 32] = d2 * Float(q[l] >> 4) - min2 }
                out += 64; q += 32; sub += 2
            }
        }
    }
}

/// Q5_K, 176 bytes, 5.5 bits/weight: `d: f16, dmin: f16, scales: [12]u8, qh: [32]u8, qs: [128]u8`.
/// As Q4_K, plus a fifth bit per element: sub-block pair i uses bits 2i and 2i+1 of qh[l].
public enum BlockQ5_K {
    public static let bytes = 176
    static func dequantize(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, blocks: Int) {
        for b in 0..<blocks {
            let block = src + b * bytes
            var out = dst + b * 256
            let d = halfToFloat(loadU16(block, 0))
            let dmin = halfToFloat(loadU16(block, 2))
            let scales = (block + 4).assumingMemoryBound(to: UInt8.self)
            let qh = (block + 16).assumingMemoryBound(to: UInt8.self)
            var ql = (block + 48).assumingMemoryBound(to: UInt8.self)
            var u1: UInt8 = 1, u2: UInt8 = 2
            var sub = 0
            for _ in 0..<4 {
                let (sc1, m1) = scaleMinK4(sub, scales)
                let (sc2, m2) = scaleMinK4(sub + 1, scales)
                let d1 = d * Float(sc1), min1 = dmin * Float(m1)
                let d2 = d * Float(sc2), min2 = dmin * Float(m2)
                for l in 0..<32 {
                    out[l] = d1 * Float((ql[l] & 0x0F) + (qh[l] & u1 != 0 ? 16 : 0)) - min1
                }
                for l in 0..<32 {
                    out[l + 32] = d2 * Float((ql[l] >> 4) + (qh[l] & u2 != 0 ? 16 : 0)) - min2
                }
                out += 64; ql += 32; sub += 2
                u1 <<= 2; u2 <<= 2
            }
        }
    }
}

/// Q6_K, 210 bytes, 6.5625 bits/weight: `ql: [128]u8, qh: [64]u8, scales: [16]i8, d: f16`.
/// Each half (128 elements) takes 64 bytes of ql (low 4 bits), 32 of qh (top 2 bits) and
/// 8 scales; x = d * scale * (q - 32).
public enum BlockQ6_K {
    public static let bytes = 210
    static func dequantize(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, blocks: Int) {
        for b in 0..<blocks {
            let block = src + b * bytes
            var out = dst + b * 256
            var ql = block.assumingMemoryBound(to: UInt8.self)
            var qh = (block + 128).assumingMemoryBound(to: UInt8.self)
            var sc = (block + 192).assumingMemoryBound(to: Int8.self)
            let d = halfToFloat(loadU16(block, 208))
            for _ in 0..<2 {
                for l in 0..<32 {
                    let s = l / 16
                    let q1 = Int(ql[l] & 0x0F | ((qh[l] >> 0) & 3) << 4) - 32
                    let q2 = Int(ql[l + 32] & 0x0F | ((qh[l] >> 2) & 3) << 4) - 32
                    let q3 = Int(ql[l] >> 4 | ((qh[l] >> 4) & 3) << 4) - 32
                    let q4 = Int(ql[l + 32] >> 4 | ((qh[l] >> 6) & 3) << 4) - 32
                    out[l] = d * Float(sc[s]) * Float(q1)
                    out[l + 32] = d * Float(sc[s + 2]) * Float(q2)
                    out[l + 64] = d * Float(sc[s + 4]) * Float(q3)
                    out[l + 96] = d * Float(sc[s + 6]) * Float(q4)
                }
                out += 128; ql += 64; qh += 32; sc += 8
            }
        }
    }
}
