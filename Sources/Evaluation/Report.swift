import Foundation

/// The human-readable table of a FreshDocs result.
public enum FreshDocsReport {
    public static func markdown(_ result: [String: Any]) -> String {
        let systems = result["systems"] as? [[String: Any]] ?? []
        let corpus = result["corpus"] as? [String: Any] ?? [:]
        func value(_ s: [String: Any], _ task: String, _ key: String, digits: Int = 3) -> String {
            guard let t = s[task] as? [String: Any] else { return "–" }
            if t["supported"] as? Bool == false { return "n/a" }
            if t["run"] as? Bool == false { return "–" }
            // Numbers decoded from JSON also cast to Bool, so only the flags are read as such.
            if key == "equivalent", let b = t[key] as? Bool { return b ? "yes" : "no" }
            switch t[key] {
            case let d as Double: return String(format: "%.\(digits)f", d)
            case let i as Int: return String(i)
            case let a as [Double] where a.count == 2: return String(format: "%.2f–%.2f", a[0], a[1])
            default: return "–"
            }
        }
        var lines = [
            "FreshDocs on `\(corpus["name"] ?? "?")` (\(corpus["learned"] ?? 0) learned, \(corpus["heldout"] ?? 0) held-out documents, "
                + "\(corpus["items"] ?? 0) items), \(result["date"] ?? "")",
            "",
            "| system | T1 PPL (95% CI) | T2 PPL | T1 bits/byte | T3 acc_norm | T3 unknown | T4 acc_norm | T5 ΔPPL % | T5 KL | T5 top-1 | T6 | T8 rep-4 | T8 distinct-2 | scoring tok/s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in systems {
            lines.append("| \(s["id"] ?? "?") | \(value(s, "t1", "ppl", digits: 2)) (\(value(s, "t1", "ppl_ci"))) | \(value(s, "t2", "ppl", digits: 2)) "
                + "| \(value(s, "t1", "bits_per_byte")) | \(value(s, "t3", "acc_norm")) | \(value(s, "t3", "unknown_acc_norm")) "
                + "| \(value(s, "t4", "acc_norm")) | \(value(s, "t5", "dppl_pct", digits: 2)) | \(value(s, "t5", "kl", digits: 5)) "
                + "| \(value(s, "t5", "top1_agree")) | \(value(s, "t6", "equivalent")) | \(value(s, "t8", "repeated_4gram_rate")) | \(value(s, "t8", "distinct_2")) "
                + "| \(value(s, "t7", "scoring_tok_s", digits: 0)) |")
        }
        lines += ["", "T9, open answers (greedy, as a user asks): the gold is in the reply, in the evidence, and its document is cited (first).", "",
                  "| system | n | answer | evidence | no evidence | passage recall | cited | cited first | sources per answer |", "|---|---|---|---|---|---|---|---|---|"]
        for s in systems {
            lines.append("| \(s["id"] ?? "?") | \(value(s, "t9", "n", digits: 0)) | \(value(s, "t9", "answer_contains_gold")) "
                + "| \(value(s, "t9", "evidence_contains_gold")) | \(value(s, "t9", "no_evidence")) | \(value(s, "t9", "passage_recall")) "
                + "| \(value(s, "t9", "gold_document_cited")) "
                + "| \(value(s, "t9", "gold_document_first")) | \(value(s, "t9", "mean_sources", digits: 2)) |")
        }
        lines += ["", "T9 where the gold passage was put before the question, the reader's part, and questions the documents do not answer "
                  + "(\"silent\": the reply says the documents do not say).", "",
                  "| system | answer when recalled | wrong when recalled | reader stated | stated right | reader silent | best span holds gold | unanswerable | said silent |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for s in systems {
            lines.append("| \(s["id"] ?? "?") | \(value(s, "t9", "answer_when_recalled")) | \(value(s, "t9", "wrong_when_recalled")) "
                + "| \(value(s, "t9", "reader_stated")) | \(value(s, "t9", "reader_stated_right")) | \(value(s, "t9", "reader_silent")) "
                + "| \(value(s, "t9", "reader_span_contains_gold")) | \(value(s, "t9", "unanswerable", digits: 0)) "
                + "| \(value(s, "t9", "unanswerable_said_silent")) |")
        }
        if let pending = result["systems_pending"] as? [String], !pending.isEmpty {
            lines.append("")
            lines.append("Partial run: \(pending.joined(separator: ", ")) not done yet.")
        }
        lines.append("")
        lines.append("Chance for T3/T4 is 1/candidates; \"unknown\" = items the base gets wrong by acc_norm; n/a = the system does not support the task.")
        return lines.joined(separator: "\n") + "\n"
    }
}
