// .npy I/O; see npy.h. Header grammar: magic "\x93NUMPY", version, header length, Python dict literal.
#include "npy.h"

#include <cstdio>
#include <cstring>

#include "errors.h"

namespace edgegen {
namespace {

// Value of `key` in the header dict literal, e.g. "'descr': '<f4'" -> "'<f4'" (up to the next ',' or '}' at depth 0).
std::string dict_value(const std::string& header, const std::string& key) {
  size_t k = header.find("'" + key + "'");
  if (k == std::string::npos) return "";
  size_t colon = header.find(':', k);
  if (colon == std::string::npos) return "";
  size_t i = colon + 1;
  while (i < header.size() && header[i] == ' ') ++i;
  int depth = 0;
  size_t start = i;
  for (; i < header.size(); ++i) {
    char c = header[i];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && (c == ',' || c == '}')) break;
  }
  return header.substr(start, i - start);
}

void write_npy(const std::string& path, const char* descr, const std::vector<int64_t>& shape, const void* data, size_t elem) {
  std::string dims;  // numpy spelling: "()", "(3,)", "(2, 3)"
  size_t count = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    dims += (i ? ", " : "") + std::to_string(shape[i]);
    count *= size_t(shape[i]);
  }
  if (shape.size() == 1) dims += ",";
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw RuntimeFailure("cannot create " + path + "; check the directory exists and is writable");
  const char magic[8] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
  uint16_t hlen = uint16_t(header.size());
  bool ok = std::fwrite(magic, 1, 8, f) == 8 && std::fwrite(&hlen, 2, 1, f) == 1 &&
            std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
            std::fwrite(data, elem, count, f) == count;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) throw RuntimeFailure("failed writing " + path + " (disk full?)");
}

}  // namespace

NpyArray read_npy_f32(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw InputError("noise file " + path + " does not exist or cannot be read");
  auto bad = [&](const std::string& why) {
    std::fclose(f);
    return InputError("noise file " + path + " " + why + "; save it with numpy.save(path, array.astype(numpy.float32))");
  };
  unsigned char pre[10];
  if (std::fread(pre, 1, 8, f) != 8 || std::memcmp(pre, "\x93NUMPY", 6) != 0) throw bad("is not a .npy file");
  size_t hlen;
  if (pre[6] == 1) {
    if (std::fread(pre, 1, 2, f) != 2) throw bad("has a truncated header");
    hlen = size_t(pre[0]) | (size_t(pre[1]) << 8);
  } else if (pre[6] == 2 || pre[6] == 3) {
    if (std::fread(pre, 1, 4, f) != 4) throw bad("has a truncated header");
    hlen = size_t(pre[0]) | (size_t(pre[1]) << 8) | (size_t(pre[2]) << 16) | (size_t(pre[3]) << 24);
  } else {
    throw bad("has an unknown .npy version");
  }
  std::string header(hlen, '\0');
  if (std::fread(&header[0], 1, hlen, f) != hlen) throw bad("has a truncated header");
  std::string descr = dict_value(header, "descr");
  if (descr != "'<f4'" && descr != "'float32'") throw bad("has dtype " + descr + ", expected float32 ('<f4')");
  if (dict_value(header, "fortran_order") != "False") throw bad("is in Fortran order, expected C order");
  std::string shape = dict_value(header, "shape");
  NpyArray arr;
  size_t count = 1;
  for (size_t i = 0; i < shape.size();) {
    if (shape[i] >= '0' && shape[i] <= '9') {
      size_t j = i;
      while (j < shape.size() && shape[j] >= '0' && shape[j] <= '9') ++j;
      arr.shape.push_back(std::stoll(shape.substr(i, j - i)));
      count *= size_t(arr.shape.back());
      i = j;
    } else {
      ++i;
    }
  }
  arr.data.resize(count);
  if (std::fread(arr.data.data(), sizeof(float), count, f) != count) throw bad("is truncated");
  std::fclose(f);
  return arr;
}

void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  write_npy(path, "<f4", shape, data, sizeof(float));
}

void write_npy_i32(const std::string& path, const std::vector<int64_t>& shape, const int32_t* data) {
  write_npy(path, "<i4", shape, data, sizeof(int32_t));
}

}  // namespace edgegen
