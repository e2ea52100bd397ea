import Kernels

/// What an administrator sees of a model file, checked as the engine would load it: the
/// header, every tensor's bounds (`GGUFFile`), the configuration and every tensor the engine
/// reads (`ModelConfig`, `Weights`: an unknown tensor or a key that changes the math is
/// refused), without computing anything.
public struct ModelSummary: Sendable, Equatable {
    public let architecture: String
    /// `general.name`, when the file has one.
    public let name: String?
    /// Weights' elements, from the tensors' shapes.
    public let parameters: Int
    /// The file's quantisation as llama.cpp names it (`general.file_type`: "Q4_K_M", "Q4_1", …),
    /// else the type holding most of the weights' bytes ("Q4_K", "Q8_0", …).
    public let quantization: String
    public let fileBytes: Int
    public let contextLength: Int
    public let layers: Int

    public init(gguf: GGUFFile) throws {
        let config = try ModelConfig(gguf: gguf)
        _ = try Weights(gguf: gguf, config: config)
        architecture = config.architecture.rawValue
        name = gguf.metadata["general.name"]?.string
        parameters = gguf.tensors.reduce(0) { $0 + $1.elementCount }
        let bytesByType = Dictionary(grouping: gguf.tensors, by: \.type).mapValues { $0.reduce(0) { $0 + $1.byteCount } }
        let dominant = bytesByType.max { $0.value < $1.value }?.key.description ?? "none"
        quantization = gguf.metadata["general.file_type"]?.int.flatMap { Self.fileTypes[$0] } ?? dominant
        fileBytes = gguf.file.bytes.count
        contextLength = config.contextLength
        layers = config.layers
    }

    /// llama.cpp's `llama_ftype` values (the file's intended quantisation; a few tensors differ).
    static let fileTypes: [Int: String] = [
        0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M",
        13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 32: "BF16",
    ]
}
