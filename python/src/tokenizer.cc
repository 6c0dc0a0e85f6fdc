// text::Tokenizer for bertune.AutoTokenizer (python/bertune/tokenization.py): encoding
// here, padding and tensors in Python.
#include <string>
#include <vector>

#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include "native.h"
#include "text/tokenizer.h"
#include "util/error.h"

namespace bertune::python {

namespace {

using Ids = std::vector<int32_t>;

// Each text (with its pair) as HF's tok(text, text_pair, truncation=..., max_length=...)
// encodes it: (input_ids, token_type_ids). max_length 0: no truncation.
std::vector<std::pair<Ids, Ids>> encode(const text::Tokenizer& tok, const std::vector<std::string>& texts,
                                        const std::vector<std::string>& pairs, int max_length,
                                        bool add_special_tokens) {
  if (!pairs.empty() && pairs.size() != texts.size())
    throw Error("text_pair: " + std::to_string(pairs.size()) + " pairs for " + std::to_string(texts.size()) +
                " texts");
  if (max_length < 0) throw Error("max_length: must not be negative, got " + std::to_string(max_length));
  text::EncodeOptions options;
  options.add_special_tokens = add_special_tokens;
  options.max_length = max_length;
  options.return_token_type_ids = true;
  std::vector<text::Encoding> encodings = tok.encode_batch(texts, pairs, options);
  std::vector<std::pair<Ids, Ids>> out(encodings.size());
  for (size_t i = 0; i < encodings.size(); ++i) {
    out[i].first = std::move(encodings[i].ids);
    out[i].second = std::move(encodings[i].token_type_ids);
    out[i].second.resize(out[i].first.size(), 0);
  }
  return out;
}

}  // namespace

void bind_tokenizer(py::module_& m) {
  py::class_<text::Tokenizer>(m, "Tokenizer")
      .def_static(
          "load", [](const std::filesystem::path& dir) { return text::Tokenizer::load(dir); }, py::arg("dir"),
          py::call_guard<py::gil_scoped_release>())
      .def(
          "encode",
          [](const text::Tokenizer& tok, const std::vector<std::string>& texts, const std::vector<std::string>& pairs,
             int max_length, bool add_special_tokens) {
            return encode(tok, texts, pairs, max_length, add_special_tokens);
          },
          py::arg("texts"), py::arg("pairs"), py::arg("max_length"), py::arg("add_special_tokens"),
          py::call_guard<py::gil_scoped_release>())
      .def("tokenize", &text::Tokenizer::tokenize, py::arg("text"), py::call_guard<py::gil_scoped_release>())
      .def(
          "id_to_token",
          [](const text::Tokenizer& tok, int64_t id) {
            if (id < 0 || static_cast<size_t>(id) >= tok.vocab_size())
              throw py::index_error("token id " + std::to_string(id) + " is outside the vocabulary (size " +
                                    std::to_string(tok.vocab_size()) + ")");
            return tok.id_to_token(static_cast<int32_t>(id));
          },
          py::arg("id"))
      .def("token_to_id", [](const text::Tokenizer& tok, const std::string& t) { return tok.token_to_id(t); })
      .def_property_readonly("vocab_size", &text::Tokenizer::vocab_size)
      .def_property_readonly("pad_id", &text::Tokenizer::pad_id)
      .def_property_readonly("unk_id", &text::Tokenizer::unk_id)
      .def_property_readonly("cls_id", &text::Tokenizer::cls_id)
      .def_property_readonly("sep_id", &text::Tokenizer::sep_id)
      .def_property_readonly("mask_id", &text::Tokenizer::mask_id)
      .def_property_readonly("do_lower_case", [](const text::Tokenizer& tok) { return tok.basic().options().do_lower_case; });
  m.def("tokenizer_files", &text::tokenizer_files, py::arg("dir"),
        "The tokenizer files of a directory under Hugging Face's names (vocab.txt, tokenizer_config.json, ...).");
}

}  // namespace bertune::python
