#pragma once
// What transformers 4.30's TokenClassificationPipeline makes of a token classifier's
// per-piece predictions (its aggregation_strategy and ignore_labels); infer/entities.h
// computes it. Here alone, without the model, so that a request's parameters parse anywhere.
//   none     one record per piece: entity (its argmax label), score, index, word, start, end
//   simple   neighbouring pieces grouped while the label's type stays the same and the next
//            one is not a B-; a group's score the mean of its pieces'
//   first    pieces first joined into words (a "##" piece continues the word before it), a
//            word's label and score its first piece's; then grouped as simple
//   average  ... a word's label the argmax of its pieces' mean probabilities, its score that mean
//   max      ... a word's label and score those of its piece with the highest score
#include <string>
#include <vector>

#include "util/enum_names.h"

namespace bertune::infer {

enum class Aggregation { None, Simple, First, Average, Max };
inline constexpr EnumNames<Aggregation, 5> kAggregationNames{{{{Aggregation::None, "none"},
                                                               {Aggregation::Simple, "simple"},
                                                               {Aggregation::First, "first"},
                                                               {Aggregation::Average, "average"},
                                                               {Aggregation::Max, "max"}}}};

struct EntityOptions {
  Aggregation aggregation = Aggregation::Simple;
  std::vector<std::string> ignore_labels{"O"};  // records (none) or groups with these labels left out
};

// The pipeline's spelling, any letter case ("SIMPLE" too, as it upper-cases the name);
// Error "'x' is not one of none|simple|first|average|max" otherwise.
inline Aggregation parse_aggregation(const std::string& name) {
  std::string lower = name;
  for (char& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  for (const auto& [value, spelling] : kAggregationNames.entries)
    if (lower == spelling) return value;
  throw Error("'" + name + "' is not one of " + kAggregationNames.choices());
}

}  // namespace bertune::infer
