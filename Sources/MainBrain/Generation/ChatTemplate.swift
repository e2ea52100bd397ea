import Foundation

/// One chat message.
public struct ChatMessage: Sendable, Equatable, Codable {
    public var role: String
    public var content: String
    public init(role: String, content: String) { self.role = role; self.content = content }
}

public enum ChatTemplateError: Error, CustomStringConvertible, Equatable {
    case unsupported(String)

    public var description: String {
        switch self {
        case let .unsupported(why):
            return "cannot render this model's chat template: \(why). twinbrain renders ChatML templates "
                + "(SmolLM2, Qwen); use plain completion (/v1/generate) with this model"
        }
    }
}

/// The chat template of a model, recognised from `tokenizer.chat_template`.
///
/// GGUF files carry Jinja source. Rather than run arbitrary Jinja, twinbrain recognises the
/// ChatML family and renders it natively, including a default system message that the
/// template inserts when the conversation has none (SmolLM2 and Qwen2 both do).
public struct ChatTemplate: Sendable, Equatable {
    public enum Format: Sendable, Equatable { case chatML }
    public let format: Format
    public private(set) var defaultSystemMessage: String?

    public init(source: String?, tokenizer: Tokenizer) throws {
        guard let source else {
            // llama.cpp falls back to ChatML when a file has no template.
            guard tokenizer.id(of: "<|im_start|>") != nil else {
                throw ChatTemplateError.unsupported("the model file has no chat template and no ChatML tokens")
            }
            format = .chatML
            defaultSystemMessage = nil
            return
        }
        guard source.contains("<|im_start|>"), source.contains("<|im_end|>"),
              source.contains("message['role']") || source.contains("message.role") else {
            throw ChatTemplateError.unsupported("the template is not ChatML")
        }
        format = .chatML
        // `{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nTEXT<|im_end|>\n' }}`
        // (the newline may be a real one or a `\n` escape inside the Jinja string).
        defaultSystemMessage = nil
        guard source.contains("!= 'system'") || source.contains("!= \"system\"") else { return }
        for opener in ["<|im_start|>system\n", "<|im_start|>system\\n"] {
            if let open = source.range(of: opener),
               let close = source.range(of: "<|im_end|>", range: open.upperBound..<source.endIndex) {
                defaultSystemMessage = String(source[open.upperBound..<close.lowerBound]).replacingOccurrences(of: "\\n", with: "\n")
                return
            }
        }
    }

    /// The prompt text for `messages`, ending with the assistant's turn opener when
    /// `addGenerationPrompt` is set. Tokenise it with `parseSpecial: true`.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) -> String {
        var out = ""
        if let system = defaultSystemMessage, messages.first?.role != "system" {
            out += "<|im_start|>system\n\(system)<|im_end|>\n"
        }
        for m in messages { out += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n" }
        if addGenerationPrompt { out += "<|im_start|>assistant\n" }
        return out
    }

    /// Where the last user message's text is in a rendered prompt (special tokens rendered as
    /// text), or nil when it holds none: what passage recall reads of a conversation, and where
    /// the recalled passages go.
    public func lastUserMessage(inRendered text: String) -> Range<String.Index>? {
        guard let open = text.range(of: "<|im_start|>user\n", options: .backwards),
              let close = text.range(of: "<|im_end|>", range: open.upperBound..<text.endIndex) else { return nil }
        return open.upperBound..<close.lowerBound
    }
}
