import Foundation
import Kernels

/// The linear map from the main brain's hidden states to token-memory keys: the leading
/// principal components of hidden states over public text (`twinbrain-eval fit-gate`), so a
/// key keeps most of what tells contexts apart in a third of the numbers (storage and search
/// cost follow the key's length). Fitted once on public text and shipped, never on customer
/// data, so forgetting a document stays exact.
///
/// The map is not centred: distances between keys are what matter, and a shared offset changes
/// none of them.
public struct KeyProjection: Sendable, Equatable {
    public let inputDimension: Int
    public let outputDimension: Int
    /// `outputDimension` rows of `inputDimension`: the principal directions, largest first.
    public let matrix: [Float]

    public init(inputDimension: Int, outputDimension: Int, matrix: [Float]) {
        precondition(matrix.count == inputDimension * outputDimension && outputDimension <= inputDimension)
        self.inputDimension = inputDimension
        self.outputDimension = outputDimension
        self.matrix = matrix
    }

    /// Projects rows of `inputDimension` floats.
    public func project(_ rows: [Float]) -> [Float] {
        let n = rows.count / inputDimension
        precondition(rows.count == n * inputDimension)
        guard n > 0 else { return [] }
        var out = [Float](repeating: 0, count: n * outputDimension)
        rows.withUnsafeBufferPointer { x in
            matrix.withUnsafeBufferPointer { w in
                out.withUnsafeMutableBufferPointer { o in
                    matmul(o.baseAddress!, x.baseAddress!, w.baseAddress!, rows: n, outFeatures: outputDimension,
                           inFeatures: inputDimension)
                }
            }
        }
        return out
    }

    /// Names the projection in segment files, so keys made by another projection are never
    /// mixed with these: "p<dimension>.<CRC-32 of the matrix>".
    public var name: String {
        let crc = matrix.withUnsafeBytes { CRC32.checksum(Data($0)) }
        return "p\(outputDimension).\(String(crc, radix: 16))"
    }

    /// Principal component analysis of `rows` (each `dimension` floats): the `keep` directions
    /// of largest variance, and the share of the total variance they hold.
    public static func fit(rows: [Float], dimension: Int, keep: Int) throws -> (projection: KeyProjection, explained: Double) {
        let n = rows.count / dimension
        precondition(n > 1 && rows.count == n * dimension && keep > 0 && keep <= dimension)
        var mean = [Double](repeating: 0, count: dimension)
        for r in 0..<n { for j in 0..<dimension { mean[j] += Double(rows[r * dimension + j]) } }
        let centred = (0..<rows.count).map { rows[$0] - Float(mean[$0 % dimension] / Double(n)) }
        var covariance = [Float](repeating: 0, count: dimension * dimension)
        centred.withUnsafeBufferPointer { x in
            covariance.withUnsafeMutableBufferPointer { c in
                gemm(transA: true, transB: false, m: dimension, n: dimension, k: n, alpha: 1 / Float(n - 1),
                     x.baseAddress!, lda: dimension, x.baseAddress!, ldb: dimension, c.baseAddress!, ldc: dimension)
            }
        }
        let (values, vectors) = try symmetricEigen(covariance, n: dimension)
        let total = values.reduce(0) { $0 + Double(max($1, 0)) }
        let kept = values.prefix(keep).reduce(0) { $0 + Double(max($1, 0)) }
        return (KeyProjection(inputDimension: dimension, outputDimension: keep, matrix: Array(vectors.prefix(keep * dimension))),
                total > 0 ? kept / total : 0)
    }

    /// As shipped in source: the matrix as f16, base64. Decoding gives the exact projection
    /// that is used (the f16 values), so fitting the gate on the decoded one fits what ships.
    public var encoded: String { ShippedFloats.encode(matrix) }

    public init?(inputDimension: Int, outputDimension: Int, encoded: String) {
        guard let matrix = ShippedFloats.decode(encoded, count: inputDimension * outputDimension) else { return nil }
        self.init(inputDimension: inputDimension, outputDimension: outputDimension, matrix: matrix)
    }

    /// The rounded-to-shipped form of a projection (what `encoded` decodes to).
    public var asShipped: KeyProjection {
        KeyProjection(inputDimension: inputDimension, outputDimension: outputDimension, encoded: encoded)!
    }
}
