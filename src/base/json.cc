#include "specula/base/json.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_set>

#include "specula/base/mapped_file.h"

namespace specula {

namespace {

Result<Json> Parse(const std::string& text, const std::string& file,
                   const Json::parser_callback_t& callback) {
  if (JsonNestingDepth(text) > kMaxJsonDepth) {
    return Error(file + ": arrays and objects nested more than " + std::to_string(kMaxJsonDepth) +
                 " deep");
  }
  try {
    return Json::parse(text, callback);
  } catch (const Json::parse_error& e) {
    return Error(file + ": malformed JSON at byte " + std::to_string(e.byte));
  } catch (const Json::exception& e) {
    return Error(file + ": malformed JSON (" + std::string(e.what()) + ")");
  }
}

}  // namespace

size_t JsonNestingDepth(std::string_view text) {
  size_t depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (in_string) {
      if (ch == '\\') {
        ++i;  // the escaped character, whatever it is
      } else if (ch == '"') {
        in_string = false;
      }
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((ch == ']' || ch == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

std::string ShowJson(const Json& v, size_t max_chars) {
  std::string shown = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (shown.size() <= max_chars) return shown;
  size_t cut = max_chars > 3 ? max_chars - 3 : 0;  // on a character boundary: valid UTF-8
  while (cut > 0 && (static_cast<unsigned char>(shown[cut]) & 0xC0) == 0x80) --cut;
  return shown.substr(0, cut) + "...";
}

Result<Json> ParseJson(const std::string& text, const std::string& file) {
  return Parse(text, file, nullptr);
}

Result<Json> ParseJson(const std::string& text, const std::string& file,
                       std::optional<std::string>* duplicate) {
  duplicate->reset();
  std::unordered_set<std::string> seen;
  return Parse(text, file, [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (depth == 1 && event == Json::parse_event_t::key && !*duplicate &&
        !seen.insert(parsed.get<std::string>()).second) {
      *duplicate = parsed.get<std::string>();
    }
    return true;
  });
}

Result<Json> ReadJsonFile(const std::string& path) {
  Result<std::string> text = ReadTextFile(path);
  if (!text.ok()) return text.status();
  return ParseJson(*text, path);
}

FieldReader::FieldReader(const Json& obj, std::string file, std::string prefix)
    : obj_(obj), file_(std::move(file)), prefix_(std::move(prefix)) {
  if (!obj_.is_object())
    status_ = Error(file_ + ": " + (prefix_.empty() ? "top level" : prefix_) +
                    ": expected a JSON object");
}

std::string FieldReader::PathOf(const std::string& key) const {
  return prefix_.empty() ? key : prefix_ + "." + key;
}

const Json* FieldReader::Get(const std::string& key) const {
  if (!obj_.is_object()) return nullptr;
  auto it = obj_.find(key);
  if (it == obj_.end()) return nullptr;
  return &*it;
}

bool FieldReader::Has(const std::string& key) const { return Get(key) != nullptr; }
bool FieldReader::IsNull(const std::string& key) const {
  const Json* v = Get(key);
  return v == nullptr || v->is_null();
}

void FieldReader::Fail(const std::string& key, const std::string& problem) {
  if (!status_.ok()) return;
  std::string shown;
  // (Values from GGUF metadata are raw bytes, not validated UTF-8: ShowJson replaces them.)
  if (const Json* v = Get(key)) shown = " (got " + ShowJson(*v) + ")";
  status_ = Error(file_ + ": " + PathOf(key) + ": " + problem + shown);
}

int64_t FieldReader::Int(const std::string& key) {
  const Json* v = Get(key);
  if (v == nullptr || v->is_null()) {
    Fail(key, "required field is missing");
    return 0;
  }
  if (v->is_number_integer()) return v->get<int64_t>();
  if (v->is_number_float()) {
    const double d = v->get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15)
      return static_cast<int64_t>(d);
  }
  Fail(key, "expected an integer");
  return 0;
}

int64_t FieldReader::Int(const std::string& key, int64_t fallback) {
  return IsNull(key) ? fallback : Int(key);
}

int FieldReader::Int32(const std::string& key) {
  const int64_t v = Int(key);
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max()) {
    Fail(key, "must fit in 32 bits");
    return 0;
  }
  return static_cast<int>(v);
}

int FieldReader::Int32(const std::string& key, int fallback) {
  return IsNull(key) ? fallback : Int32(key);
}

double FieldReader::Float(const std::string& key) {
  const Json* v = Get(key);
  if (v == nullptr || v->is_null()) {
    Fail(key, "required field is missing");
    return 0;
  }
  if (!v->is_number()) {
    Fail(key, "expected a number");
    return 0;
  }
  const double d = v->get<double>();
  if (!std::isfinite(d)) Fail(key, "expected a finite number");
  return d;
}

double FieldReader::Float(const std::string& key, double fallback) {
  return IsNull(key) ? fallback : Float(key);
}

bool FieldReader::Bool(const std::string& key, bool fallback) {
  const Json* v = Get(key);
  if (v == nullptr || v->is_null()) return fallback;
  if (!v->is_boolean()) {
    Fail(key, "expected true or false");
    return fallback;
  }
  return v->get<bool>();
}

std::string FieldReader::String(const std::string& key) {
  const Json* v = Get(key);
  if (v == nullptr || v->is_null()) {
    Fail(key, "required field is missing");
    return "";
  }
  if (!v->is_string()) {
    Fail(key, "expected a string");
    return "";
  }
  return v->get<std::string>();
}

std::string FieldReader::String(const std::string& key, const std::string& fallback) {
  return IsNull(key) ? fallback : String(key);
}

std::vector<std::string> FieldReader::StringList(const std::string& key) {
  std::vector<std::string> out;
  const Json* v = Get(key);
  if (v == nullptr || v->is_null()) {
    Fail(key, "required field is missing");
    return out;
  }
  if (!v->is_array()) {
    Fail(key, "expected a list of strings");
    return out;
  }
  for (const Json& e : *v) {
    if (!e.is_string()) {
      Fail(key, "expected a list of strings");
      return {};
    }
    out.push_back(e.get<std::string>());
  }
  return out;
}

std::vector<int64_t> FieldReader::IntOrIntList(const std::string& key) {
  std::vector<int64_t> out;
  const Json* v = Get(key);
  if (v == nullptr || v->is_null()) return out;
  if (v->is_number_integer()) return {v->get<int64_t>()};
  if (!v->is_array()) {
    Fail(key, "expected an integer or a list of integers");
    return out;
  }
  for (const Json& e : *v) {
    if (!e.is_number_integer()) {
      Fail(key, "expected an integer or a list of integers");
      return {};
    }
    out.push_back(e.get<int64_t>());
  }
  return out;
}

const Json* FieldReader::Object(const std::string& key, bool required) {
  const Json* v = Get(key);
  if (v == nullptr || v->is_null()) {
    if (required) Fail(key, "required object is missing");
    return nullptr;
  }
  if (!v->is_object()) {
    Fail(key, "expected a JSON object");
    return nullptr;
  }
  return v;
}

}  // namespace specula
