#include "core/npy.h"

#include "core/file_io.h"

#include <regex>
#include <sstream>

namespace qeval {

namespace {

const char* npy_descr(DType t) {
  switch (t) {
    case DType::kFloat32: return "<f4";
    case DType::kInt8: return "|i1";
    case DType::kUInt8: return "|u1";
    case DType::kInt16: return "<i2";
    case DType::kInt32: return "<i4";
    case DType::kInt64: return "<i8";
  }
  return "?";
}

}  // namespace

std::string npy_bytes(const Tensor& t) {
  std::string shape = "(";
  for (size_t i = 0; i < t.shape().size(); ++i) {
    shape += std::to_string(t.shape()[i]);
    shape += (t.shape().size() == 1 || i + 1 < t.shape().size()) ? "," : "";
    if (i + 1 < t.shape().size()) shape += " ";
  }
  shape += ")";
  std::string header = std::string("{'descr': '") + npy_descr(t.dtype()) +
                       "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad with spaces so that magic(6) + version(2) + len(2) + header + '\n' is a multiple of 64.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back('\x01');
  out.push_back('\x00');
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>((header.size() >> 8) & 0xff));
  out += header;
  out.append(static_cast<const char*>(t.raw()), t.nbytes());
  return out;
}

Status write_npy(const std::string& path, const Tensor& t) {
  return write_file_atomic(path, npy_bytes(t));
}

Result<Tensor> parse_npy(const std::string& b, const std::string& source) {
  if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0) {
    return data_loss("{}: not a .npy file (bad magic)", source);
  }
  const int major = static_cast<uint8_t>(b[6]);
  size_t hlen = 0, hstart = 0;
  if (major == 1) {
    hlen = static_cast<uint8_t>(b[8]) | (static_cast<size_t>(static_cast<uint8_t>(b[9])) << 8);
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) return data_loss("{}: truncated .npy header", source);
    for (int i = 0; i < 4; ++i) hlen |= static_cast<size_t>(static_cast<uint8_t>(b[8 + i])) << (8 * i);
    hstart = 12;
  } else {
    return unsupported("{}: .npy format version {} is not supported", source, major);
  }
  if (hstart + hlen > b.size()) return data_loss("{}: truncated .npy header", source);
  const std::string header = b.substr(hstart, hlen);
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr':\\s*'([^']*)'"))) {
    return data_loss("{}: .npy header has no 'descr'", source);
  }
  const std::string descr = m[1];
  DType dt;
  if (descr == "<f4") dt = DType::kFloat32;
  else if (descr == "|i1" || descr == "<i1") dt = DType::kInt8;
  else if (descr == "|u1" || descr == "<u1") dt = DType::kUInt8;
  else if (descr == "<i2") dt = DType::kInt16;
  else if (descr == "<i4") dt = DType::kInt32;
  else if (descr == "<i8") dt = DType::kInt64;
  else return unsupported("{}: .npy dtype '{}' is not supported (float32, int8, uint8, int16, "
                          "int32, int64)", source, descr);
  if (std::regex_search(header, m, std::regex("'fortran_order':\\s*True"))) {
    return unsupported("{}: Fortran-ordered .npy arrays are not supported", source);
  }
  if (!std::regex_search(header, m, std::regex("'shape':\\s*\\(([^)]*)\\)"))) {
    return data_loss("{}: .npy header has no 'shape'", source);
  }
  Shape shape;
  std::stringstream ss(m[1].str());
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.find_first_not_of(" ") == std::string::npos) continue;
    try {
      shape.push_back(std::stoll(item));
    } catch (...) {
      return data_loss("{}: bad .npy shape '{}'", source, m[1].str());
    }
    if (shape.back() < 0) return data_loss("{}: negative dimension in .npy shape", source);
  }
  Tensor t(dt, shape);
  const size_t data_start = hstart + hlen;
  if (b.size() - data_start != t.nbytes()) {
    return data_loss("{}: .npy holds {} data bytes, shape {} {} needs {}", source,
                     b.size() - data_start, shape_str(shape), dtype_name(dt), t.nbytes());
  }
  if (t.nbytes()) std::memcpy(t.raw(), b.data() + data_start, t.nbytes());
  return t;
}

Result<Tensor> read_npy(const std::string& path) {
  QEVAL_ASSIGN_OR_RETURN(std::string bytes, read_file(path));
  return parse_npy(bytes, path);
}

}  // namespace qeval
