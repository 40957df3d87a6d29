// A small JSON reader (RFC 8259 subset: no \u surrogate pairs beyond the BMP) and writer helpers.
//
// Enough for manifest.json; parse_json throws InputError naming the byte offset of a syntax error.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace edgegen {

struct Json {
  enum class Type { Null, Bool, Number, String, Array, Object };
  Type type = Type::Null;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<Json> array;
  std::vector<std::pair<std::string, Json>> object;  // insertion order kept

  // Member `key` of an object, or nullptr when absent or when this is not an object.
  const Json* find(const std::string& key) const;
};

// Parses a whole document; `what` names the source in error messages (e.g. "manifest.json").
Json parse_json(const std::string& text, const std::string& what);

// `s` as a JSON string literal, quotes included.
std::string json_quote(const std::string& s);

// A double as a JSON number with full round-trip precision (17 significant digits).
std::string json_number(double v);

}  // namespace edgegen
