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

Tokens Tokenizer::encode(const std::string& prompt) const {
  std::vector<int> pieces;
  auto status = sp_->Encode(prompt, &pieces);
  if (!status.ok()) throw RuntimeFailure("SentencePiece failed to encode the prompt: " + status.ToString());
  Tokens t;
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
