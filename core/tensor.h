// Tensor: a dense, contiguous, row-major array with a dtype and a shape.
// Storage is shared on copy (copy-on-write is not needed: kernels write only
// into tensors they allocated), so passing tensors around is cheap.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace qeval {

enum class DType : uint8_t { kFloat32, kInt8, kUInt8, kInt16, kInt32, kInt64 };

using Shape = std::vector<int64_t>;

const char* dtype_name(DType t);
Result<DType> dtype_from_name(const std::string& name);
size_t dtype_size(DType t);
bool is_integer(DType t);
// Representable range of an integer dtype, e.g. int8 -> [-128, 127].
int64_t dtype_min(DType t);
int64_t dtype_max(DType t);

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::kFloat32; }
template <> constexpr DType dtype_of<int8_t>() { return DType::kInt8; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::kUInt8; }
template <> constexpr DType dtype_of<int16_t>() { return DType::kInt16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::kInt32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::kInt64; }

int64_t shape_numel(const Shape& s);
std::string shape_str(const Shape& s);

class Tensor {
 public:
  Tensor() = default;
  Tensor(DType dtype, Shape shape);  // zero-filled

  template <typename T>
  static Tensor from_vector(Shape shape, const std::vector<T>& values) {
    Tensor t(dtype_of<T>(), std::move(shape));
    std::memcpy(t.raw(), values.data(), std::min(t.nbytes(), values.size() * sizeof(T)));
    return t;
  }
  template <typename T>
  static Tensor scalar(T v) { return from_vector<T>({}, {v}); }

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_[i < 0 ? shape_.size() + i : i]; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  bool empty() const { return storage_ == nullptr; }

  void* raw() { return storage_ ? storage_->data() : nullptr; }
  const void* raw() const { return storage_ ? storage_->data() : nullptr; }

  template <typename T> T* data() { check<T>(); return static_cast<T*>(raw()); }
  template <typename T> const T* data() const { check<T>(); return static_cast<const T*>(raw()); }
  template <typename T> std::span<T> span() { return {data<T>(), static_cast<size_t>(numel_)}; }
  template <typename T> std::span<const T> span() const {
    return {data<T>(), static_cast<size_t>(numel_)};
  }

  // Same storage, new shape with the same element count.
  Result<Tensor> reshaped(Shape shape) const;
  // Element i converted to double / int64 whatever the dtype.
  double get_double(int64_t i) const;
  int64_t get_int(int64_t i) const;
  // Stores v (already in range of the dtype) as element i.
  void set_int(int64_t i, int64_t v);
  Tensor clone() const;
  // Exact equality of dtype, shape and bytes.
  bool equals(const Tensor& other) const;

 private:
  template <typename T> void check() const {
    if (dtype_of<T>() != dtype_) throw_dtype_mismatch(dtype_of<T>());
  }
  [[noreturn]] void throw_dtype_mismatch(DType wanted) const;

  DType dtype_ = DType::kFloat32;
  Shape shape_;
  int64_t numel_ = 0;
  std::shared_ptr<std::vector<uint8_t>> storage_;
};

// Calls f(T{}) with T the C++ type of dtype.
template <typename F>
auto dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::kFloat32: return f(float{});
    case DType::kInt8: return f(int8_t{});
    case DType::kUInt8: return f(uint8_t{});
    case DType::kInt16: return f(int16_t{});
    case DType::kInt32: return f(int32_t{});
    case DType::kInt64: return f(int64_t{});
  }
  return f(float{});
}

}  // namespace qeval
