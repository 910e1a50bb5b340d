// Small text helpers shared by the CLIs, the runner and the report writers.
#pragma once

#include <string>
#include <vector>

namespace qeval {

// "7m12s" or "45s" (rounded to the second), as progress lines and tables print durations.
std::string format_duration(double seconds);

// ASCII upper case ("pass" -> "PASS").
std::string to_upper(std::string s);

// "Did you mean 'resize_dims'?" — the closest of `known` to `word` by edit
// distance (at most max(2, len/3) edits; ties: the first in `known`), else "".
std::string did_you_mean(const std::string& word, const std::vector<std::string>& known);

}  // namespace qeval
