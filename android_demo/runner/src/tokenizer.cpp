// See tokenizer.h.
#include "tokenizer.h"

#include <sentencepiece_processor.h>

#include "errors.h"

namespace edgegen {

Tokenizer::Tokenizer(const std::string& model_path, int max_length, int eos_id, int pad_id)
    : sp_(new sentencepiece::SentencePieceProcessor()), max_length_(max_length), eos_id_(eos_id), pad_id_(pad_id) {
  auto status = sp_->Load(model_path);
  if (!status.ok()) {
    throw InputError("cannot load tokenizer " + model_path + " (" + status.ToString() + "); copy spiece.model from the export again");
  }
}

Tokenizer::~Tokenizer() = default;

namespace {

std::vector<int> pieces_of(const sentencepiece::SentencePieceProcessor& sp, const std::string& prompt) {
  std::vector<int> pieces;
  auto status = sp.Encode(prompt, &pieces);
  if (!status.ok()) throw RuntimeFailure("SentencePiece failed to encode the prompt: " + status.ToString());
  return pieces;
}

}  // namespace

int Tokenizer::fit(const std::string& prompt, bool truncate) const {
  const int n = int(pieces_of(*sp_, prompt).size()) + 1;
  if (n > max_length_ && !truncate) {
    throw InputError("the prompt is " + std::to_string(n) + " tokens and this model takes at most " + std::to_string(max_length_) +
                     " (EOS included); shorten it, or pass --truncate-prompt to keep its first " + std::to_string(max_length_ - 1) +
                     " tokens");
  }
  return n;
}

Tokens Tokenizer::encode(const std::string& prompt) const {
  std::vector<int> pieces = pieces_of(*sp_, prompt);
  Tokens t;
  t.count = int(pieces.size()) + 1;
  const size_t keep = size_t(max_length_ - 1);
  t.truncated = pieces.size() > keep;
  if (t.truncated) pieces.resize(keep);
  t.ids.assign(size_t(max_length_), pad_id_);
  t.mask.assign(size_t(max_length_), 0);
  for (size_t i = 0; i < pieces.size(); ++i) {
    t.ids[i] = pieces[i];
    t.mask[i] = 1;
  }
  t.ids[pieces.size()] = eos_id_;
  t.mask[pieces.size()] = 1;
  return t;
}

}  // namespace edgegen
