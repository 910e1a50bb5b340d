// Status and Result<T>: the error currency of every qeval library.
//
// Library code never throws through an API or calls exit(); it returns a
// Status whose message says what went wrong and where (file, node, field), so
// the CLI can print one line and map the code to an exit status.
#pragma once

#include <fmt/format.h>

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace qeval {

// The first line of an exception's message (LibTorch's carry a C++ backtrace after it).
inline std::string first_line(const std::string& what) { return what.substr(0, what.find('\n')); }

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // bad user input: cfg value, shape, dtype, missing input
  kNotFound,         // a file or a named thing does not exist
  kUnsupported,      // a valid construct qeval does not implement (op, attribute)
  kDataLoss,         // a truncated or corrupted file
  kInternal,         // a bug in qeval
  kIo,               // the OS refused (permissions, disk full)
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return {}; }
  bool is_ok() const { return code_ == StatusCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string to_string() const;

  // Prefixes the message with context, e.g. the file being read:
  //   "model.onnx: node 'conv1' (Conv): unsupported attribute 'auto_pad'".
  Status with_context(const std::string& context) const {
    if (is_ok()) return *this;
    return {code_, context + ": " + message_};
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

template <typename... Args>
Status invalid_argument(fmt::format_string<Args...> f, Args&&... args) {
  return {StatusCode::kInvalidArgument, fmt::format(f, std::forward<Args>(args)...)};
}
template <typename... Args>
Status not_found(fmt::format_string<Args...> f, Args&&... args) {
  return {StatusCode::kNotFound, fmt::format(f, std::forward<Args>(args)...)};
}
template <typename... Args>
Status unsupported(fmt::format_string<Args...> f, Args&&... args) {
  return {StatusCode::kUnsupported, fmt::format(f, std::forward<Args>(args)...)};
}
template <typename... Args>
Status data_loss(fmt::format_string<Args...> f, Args&&... args) {
  return {StatusCode::kDataLoss, fmt::format(f, std::forward<Args>(args)...)};
}
template <typename... Args>
Status internal_error(fmt::format_string<Args...> f, Args&&... args) {
  return {StatusCode::kInternal, fmt::format(f, std::forward<Args>(args)...)};
}
template <typename... Args>
Status io_error(fmt::format_string<Args...> f, Args&&... args) {
  return {StatusCode::kIo, fmt::format(f, std::forward<Args>(args)...)};
}

// Result<T> holds either a value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    assert(!std::get<Status>(v_).is_ok() && "Result built from an ok Status");
  }

  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }
  const Status& status() const {
    static const Status kOk;
    return is_ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace qeval

#define QEVAL_CONCAT_INNER(a, b) a##b
#define QEVAL_CONCAT(a, b) QEVAL_CONCAT_INNER(a, b)

#define QEVAL_RETURN_IF_ERROR(expr)             \
  do {                                          \
    ::qeval::Status qeval_status_ = (expr);     \
    if (!qeval_status_.is_ok()) return qeval_status_; \
  } while (0)

#define QEVAL_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.is_ok()) return tmp.status();            \
  lhs = std::move(tmp).value()

#define QEVAL_ASSIGN_OR_RETURN(lhs, expr) \
  QEVAL_ASSIGN_OR_RETURN_IMPL(QEVAL_CONCAT(qeval_result_, __LINE__), lhs, expr)
