// Eigen-decomposition of a symmetric matrix by LAPACK (bundled in OpenBLAS).
import CBLAS

public struct EigenError: Error, CustomStringConvertible {
    public let info: Int32
    public var description: String { "LAPACK ssyev failed (info \(info))" }
}

/// Eigenvalues and eigenvectors of the symmetric n×n matrix `a` (row-major; only its upper
/// triangle is read), largest eigenvalue first. `vectors` holds one unit eigenvector per row,
/// in the order of `values`.
public func symmetricEigen(_ a: [Float], n: Int) throws -> (values: [Float], vectors: [Float]) {
    precondition(a.count == n * n && n > 0)
    // Row-major upper = column-major lower of the same symmetric matrix; LAPACK returns the
    // eigenvectors as columns (column-major), i.e. as rows of a row-major array.
    var matrix = a, values = [Float](repeating: 0, count: n), info: Int32 = 0
    var size = Int32(n), lda = Int32(n), query: Float = 0, lwork: Int32 = -1
    ssyev_("V", "L", &size, &matrix, &lda, &values, &query, &lwork, &info)
    guard info == 0 else { throw EigenError(info: info) }
    lwork = Int32(query)
    var work = [Float](repeating: 0, count: Int(lwork))
    ssyev_("V", "L", &size, &matrix, &lda, &values, &work, &lwork, &info)
    guard info == 0 else { throw EigenError(info: info) }
    // LAPACK sorts ascending; callers want the largest first.
    var vectors = [Float](repeating: 0, count: n * n)
    for i in 0..<n { vectors.replaceSubrange(i * n..<(i + 1) * n, with: matrix[(n - 1 - i) * n..<(n - i) * n]) }
    return (values.reversed(), vectors)
}
