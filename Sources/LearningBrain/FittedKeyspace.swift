import MainBrain

/// What `make gate` fitted for one model shape, on public text only: the projection of hidden
/// states to memory keys and the gate. Both depend on the model's hidden states, so another
/// model needs its own fit; without one the token memory stays off (the main brain alone).
/// The fitted values themselves live in the generated FittedKeyspaces.swift.
public struct FittedKeyspace: Sendable {
    public let gate: MemoryGate
    public let projection: KeyProjection

    init(gate: MemoryGate, projectionInput: Int, projectionOutput: Int, projection encoded: String) {
        self.gate = gate
        // A shipped projection that does not decode is a build defect, not a run-time condition.
        projection = KeyProjection(inputDimension: projectionInput, outputDimension: projectionOutput, encoded: encoded)!
    }

    public init(gate: MemoryGate, projection: KeyProjection) {
        self.gate = gate
        self.projection = projection
    }

    public static func shape(_ c: ModelConfig) -> String {
        "\(c.architecture.rawValue) layers=\(c.layers) dim=\(c.dim) ffn=\(c.ffnDim) vocab=\(c.vocabSize)"
    }

    public static func forModel(_ config: ModelConfig) -> FittedKeyspace? { fittedByShape[shape(config)] }
}

extension KNNLanguageModel {
    /// The learning brain as shipped: projected keys and the fitted gate.
    public convenience init(model: Model, fitted: FittedKeyspace) {
        self.init(model: model, projection: fitted.projection)
        gate = fitted.gate
    }
}
