// Typed access to tokenizer.json fields: every wrong type or missing field becomes one
// lmscope::Error line naming the file (`label`) and the JSON path of the field.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace lmscope::tok {

using Json = nlohmann::json;

/** The member `key` of object `obj`, or nullptr when it is absent or null. */
const Json* find_field(const Json& obj, const char* key);
/** The member `key`, which must be present and not null. */
const Json& need_field(const Json& obj, const char* key, const std::string& label, const std::string& path);
/** `obj` must be a JSON object. */
void need_object(const Json& obj, const std::string& label, const std::string& path);

bool bool_field(const Json& obj, const char* key, bool fallback, const std::string& label,
                const std::string& path);
std::string string_field(const Json& obj, const char* key, const std::string& label, const std::string& path);
/** Like string_field, but absent/null gives `fallback`. */
std::string opt_string_field(const Json& obj, const char* key, const std::string& fallback,
                             const std::string& label, const std::string& path);

/** `s` as a JSON string literal ("..." with escapes): user text in a one-line message. */
std::string json_quote(const std::string& s);

/** "an object", "a string", ... for messages. */
std::string json_kind(const Json& j);

}  // namespace lmscope::tok
