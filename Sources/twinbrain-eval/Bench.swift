import ArgumentParser
import Foundation
import Kernels
import MainBrain

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prefill and decode speed, load time and peak memory.",
        discussion: """
            pp128/pp512: a prompt of that many tokens in one batch, logits for the last position \
            only (as llama-bench measures). tg128: 128 tokens decoded one at a time. Each figure is \
            the median of --runs runs (spread printed beside it).
            """)

    @OptionGroup var options: ModelOptions

    @Option(help: "Runs per figure.")
    var runs = 5

    @Flag(name: .customLong("all-runs"), help: "With --json, give every run's figure as a list instead of the median.")
    var allRuns = false

    func run() throws {
        options.applyThreads()
        let path = try options.resolvedModelPath()
        let start = Date()
        let gguf = try GGUFFile(path: path)
        let model = try Model(gguf: gguf)
        _ = try Tokenizer(gguf: gguf)
        let loadSeconds = Date().timeIntervalSince(start)

        // Fixed pseudo-random tokens, like llama-bench's.
        var rng = SeededGenerator(seed: 42)
        let vocab = UInt64(model.config.vocabSize)
        func tokens(_ n: Int) -> [Int32] { (0..<n).map { _ in Int32(rng.next() % vocab) } }
        let cache = model.makeCache(capacity: 1024)

        func prefill(_ n: Int) throws -> [Double] {
            let prompt = tokens(n)
            cache.clear()
            _ = try model.forward(prompt, cache: cache, logits: .last)  // warm-up
            return try (0..<runs).map { _ in
                cache.clear()
                let t0 = DispatchTime.now()
                _ = try model.forward(prompt, cache: cache, logits: .last)
                return Double(n) / seconds(since: t0)
            }
        }
        func decode(_ n: Int) throws -> [Double] {
            let input = tokens(n)
            return try (0..<runs + 1).map { _ in
                cache.clear()
                let t0 = DispatchTime.now()
                for token in input { _ = try model.forward([token], cache: cache, logits: .last) }
                return Double(n) / seconds(since: t0)
            }.dropFirst().map { $0 }
        }
        let pp128 = try prefill(128), pp512 = try prefill(512), tg128 = try decode(128)
        let rss = peakRSSMiB()
        let threads = BLASThreads.current
        if options.json && allRuns {
            printJSON(["threads": threads, "pp128": pp128, "pp512": pp512, "tg128": tg128,
                       "load_s": loadSeconds, "peak_rss_mib": rss])
        } else if options.json {
            printJSON(["threads": threads, "pp128_tok_s": median(pp128), "pp512_tok_s": median(pp512),
                       "tg128_tok_s": median(tg128), "load_s": loadSeconds, "peak_rss_mib": rss])
        } else {
            print("model \(path) threads \(threads)")
            for (name, v) in [("pp128", pp128), ("pp512", pp512), ("tg128", tg128)] {
                print(String(format: "%@  %8.1f tok/s  (min %.1f, max %.1f)", name, median(v), v.min()!, v.max()!))
            }
            print(String(format: "load %.2f s, peak RSS %.0f MiB", loadSeconds, rss))
        }
    }
}

func seconds(since t0: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - t0.uptimeNanoseconds) / 1e9
}

func median(_ v: [Double]) -> Double {
    let s = v.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Peak resident set size from /proc/self/status (VmHWM).
func peakRSSMiB() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(separator: " ").compactMap { Double($0) }.first ?? 0
        return kb / 1024
    }
    return 0
}
