// SentencePiece tokenization to the text encoder's fixed-length inputs.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace edgegen {

struct Tokens {
  std::vector<int32_t> ids;   // [max_length]: pieces (at most max_length-1), eos_id, then pad_id
  std::vector<int32_t> mask;  // [max_length]: 1 on pieces and EOS, 0 on padding
  int count = 0;              // tokens the prompt takes untruncated, EOS included (edgegen.tokenizer count)
  bool truncated = false;     // the prompt had more than max_length-1 pieces (count > max_length)
};

class Tokenizer {
 public:
  // Loads a SentencePiece model; throws InputError when it is missing or unreadable.
  Tokenizer(const std::string& model_path, int max_length, int eos_id, int pad_id);
  ~Tokenizer();

  // EncodeAsIds(prompt), truncate to max_length-1, append EOS, pad. Empty prompt -> EOS only.
  Tokens encode(const std::string& prompt) const;

  // Tokens `prompt` takes untruncated, EOS included. More than max_length: with `truncate` the caller accepts the
  // cut (encode keeps the first max_length-1 and EOS); without it, throws InputError with edgegen.tokenizer's
  // Tokenizer.fit message (one line naming both numbers).
  int fit(const std::string& prompt, bool truncate) const;

  int max_length() const { return max_length_; }

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  int max_length_, eos_id_, pad_id_;
};

}  // namespace edgegen
