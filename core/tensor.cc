#include "core/tensor.h"

#include <limits>
#include <stdexcept>

namespace qeval {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32: return "float32";
    case DType::kInt8: return "int8";
    case DType::kUInt8: return "uint8";
    case DType::kInt16: return "int16";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
  }
  return "?";
}

Result<DType> dtype_from_name(const std::string& name) {
  for (DType t : {DType::kFloat32, DType::kInt8, DType::kUInt8, DType::kInt16, DType::kInt32,
                  DType::kInt64}) {
    if (name == dtype_name(t)) return t;
  }
  return invalid_argument("unknown dtype '{}' (allowed: float32, int8, uint8, int16, int32, int64)",
                          name);
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::kFloat32: return 4;
    case DType::kInt8: return 1;
    case DType::kUInt8: return 1;
    case DType::kInt16: return 2;
    case DType::kInt32: return 4;
    case DType::kInt64: return 8;
  }
  return 0;
}

bool is_integer(DType t) { return t != DType::kFloat32; }

int64_t dtype_min(DType t) {
  switch (t) {
    case DType::kInt8: return -128;
    case DType::kUInt8: return 0;
    case DType::kInt16: return std::numeric_limits<int16_t>::min();
    case DType::kInt32: return std::numeric_limits<int32_t>::min();
    case DType::kInt64: return std::numeric_limits<int64_t>::min();
    case DType::kFloat32: break;
  }
  return 0;
}

int64_t dtype_max(DType t) {
  switch (t) {
    case DType::kInt8: return 127;
    case DType::kUInt8: return 255;
    case DType::kInt16: return std::numeric_limits<int16_t>::max();
    case DType::kInt32: return std::numeric_limits<int32_t>::max();
    case DType::kInt64: return std::numeric_limits<int64_t>::max();
    case DType::kFloat32: break;
  }
  return 0;
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    // A corrupted file's dims can overflow int64 (found by fuzz_onnx): saturate, so
    // size checks downstream fail instead of wrapping around.
    if (__builtin_mul_overflow(n, d, &n)) return std::numeric_limits<int64_t>::max();
  }
  return n;
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

Tensor::Tensor(DType dtype, Shape shape)
    : dtype_(dtype), shape_(std::move(shape)), numel_(shape_numel(shape_)) {
  storage_ = std::make_shared<std::vector<uint8_t>>(nbytes(), 0);
}

void Tensor::throw_dtype_mismatch(DType wanted) const {
  // Reaching this is a programming error inside qeval (kernels check dtypes in prepare()).
  throw std::logic_error(std::string("tensor dtype is ") + dtype_name(dtype_) + ", accessed as " +
                         dtype_name(wanted));
}

Result<Tensor> Tensor::reshaped(Shape shape) const {
  if (shape_numel(shape) != numel_) {
    return invalid_argument("cannot reshape {} to {}", shape_str(shape_), shape_str(shape));
  }
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

double Tensor::get_double(int64_t i) const {
  return dispatch_dtype(dtype_, [&](auto tag) {
    using T = decltype(tag);
    return static_cast<double>(static_cast<const T*>(raw())[i]);
  });
}

int64_t Tensor::get_int(int64_t i) const {
  return dispatch_dtype(dtype_, [&](auto tag) {
    using T = decltype(tag);
    return static_cast<int64_t>(static_cast<const T*>(raw())[i]);
  });
}

void Tensor::set_int(int64_t i, int64_t v) {
  dispatch_dtype(dtype_, [&](auto tag) {
    using T = decltype(tag);
    static_cast<T*>(raw())[i] = static_cast<T>(v);
  });
}

Tensor Tensor::clone() const {
  Tensor t = *this;
  if (storage_) t.storage_ = std::make_shared<std::vector<uint8_t>>(*storage_);
  return t;
}

bool Tensor::equals(const Tensor& o) const {
  if (dtype_ != o.dtype_ || shape_ != o.shape_) return false;
  if (nbytes() == 0) return true;
  return std::memcmp(raw(), o.raw(), nbytes()) == 0;
}

}  // namespace qeval
