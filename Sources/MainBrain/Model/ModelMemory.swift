import Foundation
import Kernels

/// What a model needs in RAM to serve: every weight is read per token, so the whole file
/// must stay resident, plus the KV cache of the longest context, one batch's activations and
/// the engine's own. Checked against what the machine has before anything is loaded.
public struct MemoryRequirement: Sendable, Equatable, CustomStringConvertible {
    public let weights: Int
    public let kvCache: Int
    public let working: Int
    public let contextTokens: Int
    /// Sequences served at once, each with a cache of `contextTokens`.
    public let sequences: Int
    public var total: Int { weights + kvCache + working }

    /// Tokenizer tables, code, OpenBLAS's buffers, the learning brain's working set.
    static let runtimeAllowance = 128 << 20

    public init(gguf: GGUFFile, config: ModelConfig, contextTokens: Int, kvPrecision: KVPrecision, batch: Int, sequences: Int = 1) {
        weights = gguf.file.bytes.count
        self.contextTokens = min(contextTokens, config.contextLength)
        self.sequences = sequences
        kvCache = sequences * KVCache.bytes(config: config, positions: self.contextTokens, precision: kvPrecision)
        let activations = 4 * batch * (4 * config.dim + 2 * config.qDim + 2 * config.kvDim + 2 * config.ffnDim)
        working = activations + 4 * config.vocabSize + 4 * QuantizedProducts.tileElements + Self.runtimeAllowance
    }

    /// Throws `ModelError.insufficientMemory` when this is more than `available` (nil: unknown, allowed).
    public func check(available: Int?) throws {
        if let available, total > available { throw ModelError.insufficientMemory(needed: self, available: available) }
    }

    public var description: String {
        "weights \(Self.mebibytes(weights)) + KV cache for \(sequences == 1 ? "" : "\(sequences) sequences of ")\(contextTokens) tokens "
            + "\(Self.mebibytes(kvCache)) + working memory \(Self.mebibytes(working))"
    }

    static func mebibytes(_ bytes: Int) -> String {
        bytes >= 10 << 30 ? String(format: "%.0f GiB", Double(bytes) / Double(1 << 30))
            : bytes >= 1 << 30 ? String(format: "%.1f GiB", Double(bytes) / Double(1 << 30))
            : "\(bytes >> 20) MiB"
    }
}

/// Memory the machine can give a new process without swapping (MemAvailable), or nil where
/// /proc/meminfo cannot be read.
public enum MachineMemory {
    public static func available() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let fields = line.split(separator: " ")
            if fields.count >= 2, let kib = Int(fields[1]) { return kib * 1024 }
        }
        return nil
    }
}
