import Foundation
import Store

/// The packaged model ships with `<model>.sha256` (sha256sum's format) beside it; when that
/// file exists the model is hashed before loading, so a damaged or replaced file stops the start
/// with what to do instead of answering with a different brain.
enum ModelIntegrity {
    struct Mismatch: Error, CustomStringConvertible {
        let description: String
    }

    /// The expected digest from `<path>.sha256`, or nil when there is no such file.
    static func expectedDigest(for path: String) throws -> String? {
        let sidecar = path + ".sha256"
        guard FileManager.default.fileExists(atPath: sidecar) else { return nil }
        let text = try String(contentsOfFile: sidecar, encoding: .utf8)
        guard let digest = text.split(whereSeparator: \.isWhitespace).first.map(String.init)?.lowercased(),
              digest.count == 64, digest.allSatisfy(\.isHexDigit) else {
            throw Mismatch(description: "\(sidecar) does not hold a SHA-256 digest; reinstall the package (apt-get install --reinstall twinbrain)")
        }
        return digest
    }

    /// The SHA-256 of a model file (hex).
    static func digest(of path: String) throws -> String {
        do {
            return try SHA256.hex(ofFileAt: path)
        } catch {
            throw Mismatch(description: "cannot read the model \(path)")
        }
    }

    /// Throws when `<path>.sha256` exists and the model's digest differs from it; returns the
    /// digest when it was computed (nil without a sidecar), so nothing hashes the file twice.
    @discardableResult
    static func check(_ path: String) throws -> String? {
        guard let expected = try expectedDigest(for: path) else { return nil }
        let actual = try digest(of: path)
        guard actual == expected else {
            throw Mismatch(description: "the model \(path) is damaged or was replaced (SHA-256 \(actual), expected \(expected)); "
                           + "reinstall the package (apt-get install --reinstall twinbrain) or point `model` at another file")
        }
        return actual
    }
}
