import MainBrain

extension MemoryGate {
    /// Gates fitted by `make gate` (`twinbrain-eval fit-gate` on the public text of
    /// scripts/gate_calibration_text.py; the figures are in docs/results/gate-fit.json), by the
    /// shape of the model they were fitted for. Distances depend on the model's hidden states,
    /// so another model needs its own fit.
    static let fittedByShape: [String: MemoryGate] = [
        // SmolLM2-135M-Instruct (make gate, 2026-11-29): on the unrelated texts (licences) the gate
        // opened on 0.4% of tokens and left the NLL as it was (2.66164 → 2.66164); on related
        // unseen man pages NLL 2.87 → 1.73; re-reading the learned ones 2.91 → 0.15.
        "llama layers=30 dim=576 ffn=1536 vocab=49152": MemoryGate(lambdaMax: 0.8, inner: 0.05789397, radius: 0.11578794),
    ]

    static func shape(_ c: ModelConfig) -> String {
        "\(c.architecture.rawValue) layers=\(c.layers) dim=\(c.dim) ffn=\(c.ffnDim) vocab=\(c.vocabSize)"
    }

    /// The fitted gate for a model, or nil when none was fitted for its shape (the memory then
    /// stays closed: the main brain's output exactly).
    public static func fitted(for config: ModelConfig) -> MemoryGate? { fittedByShape[shape(config)] }
}
