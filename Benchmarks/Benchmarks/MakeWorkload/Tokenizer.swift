import CairnFixtures

/// A Hugging Face `tokenizer.json` (BPE, byte fallback, SentencePiece "▁" word marker) with a
/// pseudo-random vocabulary: text that compresses like a real tokenizer's (a few hundred KB to 1.4 MB).
enum Tokenizer {
    /// The file's bytes for a vocabulary of `vocab` tokens: 3 special tokens, 256 byte tokens, then
    /// distinct random words of 2 to 10 letters and digits, 40% of them starting with "▁"; one merge
    /// ("left right", the word cut in half) for each of the first `vocab - 300` words.
    ///
    /// - Precondition: `vocab >= 300`.
    static func json(vocab: Int, seed: UInt64) -> [UInt8] {
        precondition(vocab >= 300, "the vocabulary needs at least 300 tokens")
        var rng = SplitMix64(seed: Sampling.seed(seed, Stream.tokenizer.rawValue))
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".unicodeScalars)
        let marker: Unicode.Scalar = "\u{2581}"
        var tokens = ["<unk>", "<s>", "</s>"]
        for byte in 0..<256 {
            let hex = String(byte, radix: 16, uppercase: true)
            tokens.append("<0x" + (hex.count == 1 ? "0" : "") + hex + ">")
        }
        var seen = Set(tokens)
        var words: [[Unicode.Scalar]] = []
        while tokens.count < vocab {
            var word: [Unicode.Scalar] = []
            if rng.next(below: 5) < 2 { word.append(marker) }
            for _ in 0..<(2 + rng.next(below: 9)) {
                word.append(alphabet[rng.next(below: alphabet.count)])
            }
            var token = ""
            token.unicodeScalars.append(contentsOf: word)
            if seen.insert(token).inserted {
                tokens.append(token)
                words.append(word)
            }
        }

        var out = """
            {
              "version": "1.0",
              "truncation": null,
              "padding": null,
              "added_tokens": [

            """
        for (id, token) in tokens.prefix(3).enumerated() {
            out += """
                    {
                      "id": \(id),
                      "content": "\(token)",
                      "single_word": false,
                      "lstrip": false,
                      "rstrip": false,
                      "normalized": false,
                      "special": true
                    }
                """
            out += id < 2 ? ",\n" : "\n"
        }
        out += """
              ],
              "normalizer": {
                "type": "Sequence",
                "normalizers": [
                  {
                    "type": "Prepend",
                    "prepend": "\(marker)"
                  },
                  {
                    "type": "Replace",
                    "pattern": {
                      "String": " "
                    },
                    "content": "\(marker)"
                  }
                ]
              },
              "pre_tokenizer": null,
              "post_processor": null,
              "decoder": {
                "type": "Sequence",
                "decoders": [
                  {
                    "type": "ByteFallback"
                  },
                  {
                    "type": "Fuse"
                  }
                ]
              },
              "model": {
                "type": "BPE",
                "dropout": null,
                "unk_token": "<unk>",
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": true,
                "byte_fallback": true,
                "vocab": {

            """
        for (id, token) in tokens.enumerated() {
            out += "      \"" + token + "\": \(id)" + (id + 1 < tokens.count ? ",\n" : "\n")
        }
        out += "    },\n    \"merges\": [\n"
        let merges = words.prefix(vocab - 300)
        for (i, word) in merges.enumerated() {
            let cut = max(1, word.count / 2)
            var merge = "      \""
            merge.unicodeScalars.append(contentsOf: word[..<cut])
            merge += " "
            merge.unicodeScalars.append(contentsOf: word[cut...])
            out += merge + (i + 1 < merges.count ? "\",\n" : "\"\n")
        }
        out += "    ]\n  }\n}\n"
        return Array(out.utf8)
    }
}
